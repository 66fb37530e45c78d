//! The Caption page (DiscriTune): a gallery of test scenes with the base and the DiscriTuned
//! captions side by side; the retrieval game (a caption over 16 candidates, the retriever's
//! pick, the target, and the user's guess); DiscriTune as a job with P@1 and reward live; the
//! results table. Jobs are `caption::gallery`, `caption::discritune` and the results
//! `caption::eval`'s, as in `alignscope caption`.

mod view;

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::folder_cache::FolderCache;
use super::{Lab, LabCtx};
use crate::caption::captioner::Decoding;
use crate::caption::discritune::{spawn_discritune, DiscriOutcome, DiscriStep, DiscriTuneRequest};
use crate::caption::eval::{read_results, CaptionScores};
use crate::caption::gallery::{spawn_gallery, spawn_round, Gallery, Round};
use crate::caption::scenes::Domain;
use crate::jobs::{JobBoard, JobHandle};

/// Scenes in the gallery.
pub const GALLERY_SIZE: usize = 12;

type ResultsTable = (Vec<CaptionScores>, Vec<String>);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CaptionTab {
    Gallery,
    Game,
    Tune,
    Results,
}

impl CaptionTab {
    pub const ALL: [CaptionTab; 4] = [
        CaptionTab::Gallery,
        CaptionTab::Game,
        CaptionTab::Tune,
        CaptionTab::Results,
    ];
    pub fn label(self) -> &'static str {
        match self {
            CaptionTab::Gallery => "Gallery",
            CaptionTab::Game => "Retrieval game",
            CaptionTab::Tune => "DiscriTune",
            CaptionTab::Results => "Results",
        }
    }
}

/// The game's state: the round, which caption is shown, the user's guess, and whether the
/// answer is shown.
#[derive(Default)]
pub struct Game {
    pub number: u64,
    pub round: Option<Round>,
    pub shown: usize,
    pub guess: Option<usize>,
    pub revealed: bool,
}

pub struct CaptionPanel {
    pub tab: CaptionTab,
    pub domain: Domain,
    pub decoding: Decoding,
    /// The first test scene of the gallery.
    pub first: u64,
    pub gallery: Option<Gallery>,
    gallery_job: Option<JobHandle<(), Gallery>>,
    pub game: Game,
    round_job: Option<JobHandle<(), Round>>,
    pub request: DiscriTuneRequest,
    tune_job: Option<JobHandle<DiscriStep, DiscriOutcome>>,
    /// The running (or last) DiscriTune run's steps.
    pub history: Vec<DiscriStep>,
    pub error: Option<String>,
    textures: HashMap<(Domain, u64), egui::TextureHandle>,
    results: FolderCache<ResultsTable>,
}

impl Default for CaptionPanel {
    fn default() -> Self {
        Self {
            tab: CaptionTab::Gallery,
            domain: Domain::Source,
            decoding: Decoding::Beam,
            first: 0,
            gallery: None,
            gallery_job: None,
            game: Game::default(),
            round_job: None,
            request: DiscriTuneRequest::default(),
            tune_job: None,
            history: Vec::new(),
            error: None,
            textures: HashMap::new(),
            results: FolderCache::new(read_results),
        }
    }
}

impl CaptionPanel {
    /// Captions the gallery's scenes (for the current domain and decoding) as a job.
    pub fn caption_gallery(&mut self, board: &JobBoard) {
        self.error = None;
        self.gallery_job = Some(spawn_gallery(
            board,
            self.domain,
            self.decoding,
            self.first,
            GALLERY_SIZE,
        ));
    }

    /// Deals round `number` of the game.
    pub fn deal(&mut self, board: &JobBoard, number: u64) {
        self.error = None;
        self.game = Game {
            number,
            ..Game::default()
        };
        self.round_job = Some(spawn_round(board, self.domain, number, self.decoding));
    }

    pub fn tune(&mut self, board: &JobBoard) {
        self.error = None;
        self.history.clear();
        let mut r = self.request.clone();
        r.domain = self.domain;
        self.tune_job = Some(spawn_discritune(board, r));
    }

    pub fn busy(&self) -> bool {
        self.gallery_job.is_some() || self.round_job.is_some()
    }

    pub fn tune_job_id(&self) -> Option<crate::jobs::JobId> {
        self.tune_job.as_ref().map(|j| j.id())
    }

    pub fn cancel_tune(&mut self) {
        if let Some(j) = &self.tune_job {
            j.cancel();
        }
    }

    pub fn results(&mut self) -> &ResultsTable {
        self.results.get(crate::caption::results_dir())
    }

    /// The texture of a test scene (made once).
    pub fn texture(&mut self, ctx: &egui::Context, index: u64, rgb: &[u8]) -> egui::TextureId {
        let size = crate::caption::scenes::SIZE;
        let domain = self.domain;
        self.textures
            .entry((domain, index))
            .or_insert_with(|| {
                ctx.load_texture(
                    format!("caption-{domain}-{index}"),
                    egui::ColorImage::from_rgb([size, size], rgb),
                    egui::TextureOptions::NEAREST,
                )
            })
            .id()
    }

    fn take_results(&mut self) {
        let mut failed = Vec::new();
        if let Some(r) = self.gallery_job.as_ref().and_then(|j| j.take_result()) {
            self.gallery_job = None;
            match r {
                Ok(g) => self.gallery = Some(g),
                Err(e) => failed.push(format!("captioning: {e}")),
            }
        }
        if let Some(r) = self.round_job.as_ref().and_then(|j| j.take_result()) {
            self.round_job = None;
            match r {
                Ok(round) => self.game.round = Some(round),
                Err(e) => failed.push(format!("the game: {e}")),
            }
        }
        if let Some(job) = &self.tune_job {
            self.history.extend(job.drain());
            if let Some(r) = job.take_result() {
                self.tune_job = None;
                match r {
                    // New captions for the gallery and the game from the tuned captioner.
                    Ok(_) => {
                        self.gallery = None;
                        self.game.round = None;
                        self.results.clear();
                    }
                    Err(e) => failed.push(format!("DiscriTune: {e}")),
                }
            }
        }
        if let Some(e) = failed.pop() {
            self.error = Some(e);
        }
    }
}

impl Lab for CaptionPanel {
    fn id(&self) -> &'static str {
        "caption"
    }
    fn name(&self) -> &'static str {
        "Captions"
    }
    fn title(&self) -> &'static str {
        "DiscriTune: captions that single out their image"
    }
    fn description(&self) -> &'static str {
        "Dessì et al.: fine-tune a ClipCap-style captioner with REINFORCE, rewarded by a frozen \
         retriever's log-probability of the right image among the batch. Base and tuned \
         captions, the retrieval game, P@1 by the reward's retriever and a held-out one."
    }
    fn poll(&mut self, _ctx: &mut LabCtx) {
        self.take_results();
    }
    fn ui(&mut self, ui: &mut egui::Ui, ctx: &mut LabCtx) {
        // A demo shows something on the first look: caption the gallery, deal a round.
        if self.error.is_none() && !self.busy() {
            match self.tab {
                CaptionTab::Gallery if self.gallery.is_none() => self.caption_gallery(ctx.board),
                CaptionTab::Game if self.game.round.is_none() => {
                    self.deal(ctx.board, self.game.number)
                }
                _ => {}
            }
        }
        view::ui(ui, self, ctx);
    }
    fn save(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({ "tab": self.tab, "domain": self.domain,
                                 "decoding": self.decoding }))
    }
    fn restore(&mut self, saved: serde_json::Value) {
        if let Ok(t) = serde_json::from_value(saved["tab"].clone()) {
            self.tab = t;
        }
        if let Ok(d) = serde_json::from_value(saved["domain"].clone()) {
            self.domain = d;
        }
        if let Ok(d) = serde_json::from_value(saved["decoding"].clone()) {
            self.decoding = d;
        }
    }
}
