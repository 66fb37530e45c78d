//! The GAN page (GenDA): the source generator's samples, the one reference image (a target
//! domain's face, or any PNG/JPEG opened or dropped on the window), and the adapted samples on
//! the same latents, updating live while the adaptation runs; loss curves; truncation and
//! latent-interpolation sliders; the three methods side by side with their FD and
//! precision/recall. Jobs are `gan::adapt` and `gan::eval`, as in `alignscope gan`.

mod view;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::folder_cache::FolderCache;
use super::{Lab, LabCtx};
use crate::gan::adapt::{spawn_adapt, AdaptDone, AdaptRequest, AdaptStep, Adapted, Method, Target};
use crate::gan::eval::{genda_dir, load_results, GanEvalOutcome};
use crate::gan::faces::{Domain, SIZE};
use crate::gan::image_file::load_reference;
use crate::gan::pretrain::{latents, preview_latents, Gan};
use crate::jobs::{JobBoard, JobHandle};

/// Samples per grid.
pub const GRID: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GanTab {
    Adapt,
    Compare,
}

impl GanTab {
    pub const ALL: [GanTab; 2] = [GanTab::Adapt, GanTab::Compare];
    pub fn label(self) -> &'static str {
        match self {
            GanTab::Adapt => "One-shot adaptation",
            GanTab::Compare => "Compare methods",
        }
    }
}

/// Where the adapted grid's generator came from.
#[derive(Debug, Clone, PartialEq)]
pub enum AdaptedFrom {
    /// GenDA's shipped generator for the domain (`gan eval`).
    Shipped(Domain),
    /// A run on this page.
    Run {
        method: Method,
        target: String,
        steps: usize,
    },
}

/// A grid's images and whether its texture must be remade.
#[derive(Default)]
pub struct Grid {
    pub images: Vec<Vec<u8>>,
    dirty: bool,
    texture: Option<egui::TextureHandle>,
    /// `images[0]` is a whole picture of this size rather than tiles to lay out.
    side: Option<(usize, usize)>,
}

impl Grid {
    pub fn set(&mut self, images: Vec<Vec<u8>>) {
        self.images = images;
        self.dirty = true;
    }

    pub fn clear(&mut self) {
        self.set(Vec::new());
    }

    /// The grid as one texture (`columns` wide), remade when the images changed.
    pub fn texture(
        &mut self,
        ctx: &egui::Context,
        name: &str,
        columns: usize,
    ) -> Option<&egui::TextureHandle> {
        if self.images.is_empty() {
            return None;
        }
        if self.dirty || self.texture.is_none() {
            let (w, h, rgb) = match self.side {
                Some((w, h)) => (w, h, self.images[0].clone()),
                None => crate::gan::grid::tile(&self.images, SIZE, columns, 1),
            };
            let image = egui::ColorImage::from_rgb([w, h], &rgb);
            match &mut self.texture {
                Some(t) => t.set(image, egui::TextureOptions::NEAREST),
                None => {
                    self.texture =
                        Some(ctx.load_texture(name, image, egui::TextureOptions::NEAREST))
                }
            }
            self.dirty = false;
        }
        self.texture.as_ref()
    }
}

pub struct GanPanel {
    pub tab: GanTab,
    /// The target domain whose face is the reference (when no image file is open).
    pub domain: Domain,
    pub reference_index: u64,
    /// An opened image as the target instead of a domain's face.
    pub image: Option<PathBuf>,
    /// What was done to the opened image (grey → RGB, crop).
    pub image_notes: Vec<String>,
    pub request: AdaptRequest,
    /// Inference truncation ψ of both grids.
    pub psi: f64,
    /// Interpolation between the grid's latents and a second fixed set.
    pub blend: f64,
    pub reference: Grid,
    pub source_grid: Grid,
    pub adapted_grid: Grid,
    pub source: Option<Adapted>,
    pub adapted: Option<(AdaptedFrom, Adapted)>,
    job: Option<JobHandle<AdaptStep, AdaptDone>>,
    /// The running (or last) adaptation's steps (losses).
    pub history: Vec<AdaptStep>,
    pub compare_grids: HashMap<(Domain, String), Grid>,
    pub error: Option<String>,
    results: FolderCache<Option<GanEvalOutcome>>,
    /// Set when the grids need sampling again (sliders, a new generator).
    stale: bool,
}

impl Default for GanPanel {
    fn default() -> Self {
        let target = Target::domain(Domain::Sunglasses);
        Self {
            tab: GanTab::Adapt,
            domain: Domain::Sunglasses,
            reference_index: 0,
            image: None,
            image_notes: Vec::new(),
            request: AdaptRequest::new(Method::Genda, target),
            psi: 1.0,
            blend: 0.0,
            reference: Grid::default(),
            source_grid: Grid::default(),
            adapted_grid: Grid::default(),
            source: None,
            adapted: None,
            job: None,
            history: Vec::new(),
            compare_grids: HashMap::new(),
            error: None,
            results: FolderCache::new(|dir| load_results(dir).ok()),
            stale: true,
        }
    }
}

impl GanPanel {
    pub fn target(&self) -> Target {
        match &self.image {
            Some(path) => Target::Image { path: path.clone() },
            None => Target::Domain {
                domain: self.domain,
                index: self.reference_index,
            },
        }
    }

    /// Loads the source GAN and the target's reference, and GenDA's shipped generator for the
    /// domain, so the page shows an adaptation before anything runs.
    fn ensure_loaded(&mut self) {
        if self.source.is_some() || self.error.is_some() {
            return;
        }
        match Gan::load(&self.request.source, true) {
            Ok(gan) => self.source = Some(Adapted::source(gan)),
            Err(e) => {
                self.error = Some(format!("the source GAN: {e:#}"));
                return;
            }
        }
        self.set_target(self.target());
    }

    /// Makes `target` the reference; a domain's face also brings its shipped GenDA generator.
    pub fn set_target(&mut self, target: Target) {
        self.error = None;
        self.image_notes.clear();
        let reference = match &target {
            Target::Image { path } => load_reference(path).map(|r| {
                self.image_notes = r.conversions;
                r.rgb
            }),
            Target::Domain { .. } => target.reference(),
        };
        match reference {
            Ok(rgb) => self.reference.set(vec![rgb]),
            Err(e) => {
                self.error = Some(format!("{e:#}"));
                return;
            }
        }
        match &target {
            Target::Image { path } => {
                self.image = Some(path.clone());
                self.adapted = None;
            }
            Target::Domain { domain, index } => {
                self.image = None;
                self.domain = *domain;
                self.reference_index = *index;
                let shipped = genda_dir(&crate::gan::models_dir(), *domain);
                self.adapted = Adapted::load(&shipped)
                    .ok()
                    .map(|a| (AdaptedFrom::Shipped(*domain), a));
            }
        }
        self.history.clear();
        self.stale = true;
    }

    /// Opens an image file as the target; a bad file's message stays on the page.
    pub fn open_image(&mut self, path: &Path) {
        self.set_target(Target::Image {
            path: path.to_path_buf(),
        });
    }

    pub fn adapt(&mut self, board: &JobBoard) {
        self.error = None;
        self.history.clear();
        let mut r = self.request.clone();
        r.target = self.target();
        self.request.target = r.target.clone();
        self.job = Some(spawn_adapt(board, r));
    }

    pub fn job_id(&self) -> Option<crate::jobs::JobId> {
        self.job.as_ref().map(|j| j.id())
    }

    pub fn cancel(&mut self) {
        if let Some(j) = &self.job {
            j.cancel();
        }
    }

    pub fn running(&self) -> bool {
        self.job.is_some()
    }

    pub fn results(&mut self) -> Option<&GanEvalOutcome> {
        self.results.get(crate::gan::results_dir()).as_ref()
    }

    /// The grid latents: the preview set blended toward a second fixed set.
    fn grid_latents(&self, latent: usize) -> Result<Tensor> {
        let a = preview_latents(GRID, latent)?;
        if self.blend == 0.0 {
            return Ok(a);
        }
        let b = latents(&mut rand::SeedableRng::seed_from_u64(0xB1E2D), GRID, latent)?;
        Ok(((a * (1.0 - self.blend))? + (b * self.blend)?)?)
    }

    /// Samples both grids again from their generators.
    fn resample(&mut self) -> Result<()> {
        let Some(source) = &self.source else {
            return Ok(());
        };
        let z = self.grid_latents(source.gan.cfg.latent)?;
        self.source_grid.set(source.sample(&z, self.psi)?);
        match &self.adapted {
            Some((_, a)) => self.adapted_grid.set(a.sample(&z, self.psi)?),
            None => self.adapted_grid.clear(),
        }
        Ok(())
    }

    /// Marks the grids for sampling again (after a slider moved).
    pub fn touch(&mut self) {
        self.stale = true;
    }

    fn take_results(&mut self) {
        let Some(job) = &self.job else {
            return;
        };
        for mut step in job.drain() {
            if let Some(images) = step.preview.take() {
                self.adapted_grid.set(images);
            }
            self.history.push(step);
        }
        if let Some(r) = job.take_result() {
            self.job = None;
            match r {
                Ok(done) => {
                    let from = AdaptedFrom::Run {
                        method: done.outcome.method,
                        target: done.outcome.target.clone(),
                        steps: done.outcome.steps,
                    };
                    self.adapted = Some((from, done.adapted));
                    self.stale = true;
                }
                Err(e) => self.error = Some(format!("adaptation: {e:#}")),
            }
        }
    }

    /// The reference face of a target domain, for the Compare tab.
    pub fn compare_reference(&mut self, domain: Domain) -> &mut Grid {
        self.compare_grids
            .entry((domain, "reference".into()))
            .or_insert_with(|| {
                let mut grid = Grid::default();
                grid.set(vec![crate::gan::faces::Face::sample(domain, 0, 0).render()]);
                grid
            })
    }

    /// A Compare-tab grid from the evaluation's PNG, read once.
    pub fn compare_grid(&mut self, domain: Domain, model: &str) -> &mut Grid {
        self.compare_grids
            .entry((domain, model.to_string()))
            .or_insert_with(|| {
                let path = crate::gan::eval::grid_path(&crate::gan::results_dir(), domain, model);
                let mut grid = Grid::default();
                if let Ok(image) = image::open(&path) {
                    let rgb = image.to_rgb8();
                    grid.set(vec![rgb.into_raw()]);
                    grid.side = Some((image.width() as usize, image.height() as usize));
                }
                grid
            })
    }
}

impl Lab for GanPanel {
    fn id(&self) -> &'static str {
        "gan"
    }
    fn name(&self) -> &'static str {
        "GAN"
    }
    fn title(&self) -> &'static str {
        "GenDA: adapt a face GAN from one image"
    }
    fn description(&self) -> &'static str {
        "Yang et al.: a frozen GAN learns a target from one reference through an attribute \
         adaptor on its latent and an attribute classifier on its frozen discriminator. The \
         same faces before and after, live; against fine-tuning and FreezeD."
    }
    fn poll(&mut self, _ctx: &mut LabCtx) {
        self.take_results();
    }
    fn ui(&mut self, ui: &mut egui::Ui, ctx: &mut LabCtx) {
        self.ensure_loaded();
        if self.stale && !self.running() {
            self.stale = false;
            if let Err(e) = self.resample() {
                self.error = Some(format!("sampling: {e:#}"));
            }
        }
        view::ui(ui, self, ctx);
    }
    fn dropped(&mut self, path: &Path, _ctx: &mut LabCtx) -> bool {
        self.open_image(path);
        true
    }
    fn save(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({ "tab": self.tab, "domain": self.domain,
                                 "method": self.request.method }))
    }
    fn restore(&mut self, saved: serde_json::Value) {
        if let Ok(t) = serde_json::from_value(saved["tab"].clone()) {
            self.tab = t;
        }
        if let Ok(d) = serde_json::from_value(saved["domain"].clone()) {
            self.domain = d;
        }
        if let Ok(m) = serde_json::from_value::<Method>(saved["method"].clone()) {
            self.request = AdaptRequest::new(m, self.target());
        }
    }
}
