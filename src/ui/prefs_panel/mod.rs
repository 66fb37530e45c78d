//! The Preferences page (KnowPAT): a question's style and knowledge preference sets, ranked,
//! with each answer's score `S_i` and margin weight before and after training; the same test
//! question answered by every trained model beside its triples; training as a job with the
//! SFT and alignment losses live; the results table and chart. Jobs are `prefs::train` and
//! the results `prefs::eval`'s, as in `alignscope prefs`.

mod view;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::folder_cache::FolderCache;
use super::{Lab, LabCtx};
use crate::jobs::{JobBoard, JobHandle};
use crate::prefs::eval::{read_results, PrefEvalOutcome};
use crate::prefs::sets::{read_sets, PrefQuestion};
use crate::prefs::train::{spawn_train, PrefMethod, PrefOutcome, PrefStep, PrefTrainRequest};

/// The evaluated models, and the result files that could not be read.
type ResultsTable = (Vec<PrefEvalOutcome>, Vec<String>);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PrefsTab {
    Sets,
    Compare,
    Training,
    Results,
}

impl PrefsTab {
    pub const ALL: [PrefsTab; 4] = [
        PrefsTab::Sets,
        PrefsTab::Compare,
        PrefsTab::Training,
        PrefsTab::Results,
    ];
    pub fn label(self) -> &'static str {
        match self {
            PrefsTab::Sets => "Preference sets",
            PrefsTab::Compare => "Side by side",
            PrefsTab::Training => "Training",
            PrefsTab::Results => "Results",
        }
    }
}

pub struct PrefsPanel {
    pub tab: PrefsTab,
    /// Where the sets, results and trained models are read and written (the shipped folder).
    pub root: PathBuf,
    sets: Option<Result<Vec<PrefQuestion>, String>>,
    /// The question shown (its id); the first ranked test question until one is picked.
    pub selected: Option<String>,
    pub filter: String,
    /// The trained model whose scores are shown as "after".
    pub after: PrefMethod,
    pub request: PrefTrainRequest,
    train_job: Option<JobHandle<PrefStep, PrefOutcome>>,
    /// The running (or last) run's steps here.
    pub history: Vec<PrefStep>,
    pub error: Option<String>,
    results: FolderCache<ResultsTable>,
}

impl Default for PrefsPanel {
    fn default() -> Self {
        Self::at(crate::prefs::dir())
    }
}

impl PrefsPanel {
    /// The page over the lab folder `root`.
    pub fn at(root: PathBuf) -> Self {
        Self {
            tab: PrefsTab::Sets,
            sets: None,
            selected: None,
            filter: String::new(),
            after: PrefMethod::Knowpat,
            request: PrefTrainRequest::new(PrefMethod::Knowpat),
            train_job: None,
            history: Vec::new(),
            error: None,
            results: FolderCache::new(read_results),
            root,
        }
    }

    pub fn train_job_id(&self) -> Option<crate::jobs::JobId> {
        self.train_job.as_ref().map(|j| j.id())
    }

    /// Trains `request.method` into this folder's `models/METHOD` as a job.
    pub fn train(&mut self, board: &JobBoard) {
        let mut r = self.request.clone();
        r.sets = self.root.join("sets.jsonl");
        r.out = self.root.join("models").join(r.method.name());
        self.history.clear();
        self.error = None;
        self.train_job = Some(spawn_train(board, r));
    }

    /// The preference sets, read on first use.
    pub fn sets(&mut self) -> Result<&[PrefQuestion], &String> {
        let path = self.root.join("sets.jsonl");
        self.sets
            .get_or_insert_with(|| read_sets(&path).map_err(|e| format!("{e:#}")))
            .as_ref()
            .map(Vec::as_slice)
    }

    /// The results table (read again when the folder changes).
    pub fn results(&mut self) -> &ResultsTable {
        self.results.get(self.root.join("results"))
    }

    pub fn reload(&mut self) {
        self.results.clear();
        self.sets = None;
    }

    /// The question shown: the picked one, else the first test question the results rank.
    pub fn selected_id(&mut self) -> Option<String> {
        if self.selected.is_none() {
            let first = self
                .results()
                .0
                .iter()
                .find_map(|r| r.rankings.first().map(|x| x.id.clone()));
            self.selected = first;
        }
        self.selected.clone()
    }

    fn take_results(&mut self) {
        if let Some(job) = &self.train_job {
            self.history.extend(job.drain());
            if let Some(r) = job.take_result() {
                self.train_job = None;
                if let Err(e) = r {
                    self.error = Some(format!("training: {e}"));
                }
            }
        }
    }
}

impl Lab for PrefsPanel {
    fn id(&self) -> &'static str {
        "prefs"
    }
    fn name(&self) -> &'static str {
        "Preferences"
    }
    fn title(&self) -> &'static str {
        "KnowPAT: style and knowledge preferences"
    }
    fn description(&self) -> &'static str {
        "Zhang et al.: rank the gold answer above weaker models' answers (style) and above \
         answers with worse knowledge (top triples > none > misleading), and train SmolLM2 with \
         SFT plus a margin-weighted ranking loss; against SFT, DPO and two ablations."
    }
    fn poll(&mut self, _ctx: &mut LabCtx) {
        self.take_results();
    }
    fn ui(&mut self, ui: &mut egui::Ui, ctx: &mut LabCtx) {
        view::ui(ui, self, ctx);
    }
    fn save(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({ "tab": self.tab, "selected": self.selected, "after": self.after }))
    }
    fn restore(&mut self, saved: serde_json::Value) {
        if let Ok(t) = serde_json::from_value(saved["tab"].clone()) {
            self.tab = t;
        }
        if let Ok(s) = serde_json::from_value(saved["selected"].clone()) {
            self.selected = s;
        }
        if let Ok(a) = serde_json::from_value(saved["after"].clone()) {
            self.after = a;
        }
    }
}
