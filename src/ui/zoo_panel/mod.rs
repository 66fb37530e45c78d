//! The Zoo page: the shipped small models with their tasks and scores against their bases, each
//! model's recipe and loss curve, and rebuilding (training) a model as a job with a live loss
//! curve, progress and cancel.

mod view;

use super::{Lab, LabCtx};
use crate::jobs::{JobBoard, JobHandle};
use crate::zoo::tasks::spawn_build;
use crate::zoo::{self, BuildEvent, Manifest};

/// A live build: which model, how far, and its losses so far.
#[derive(Debug, Clone, Default)]
pub struct LiveBuild {
    pub model: String,
    pub step: usize,
    pub total: usize,
    pub losses: Vec<f32>,
}

#[derive(Default)]
pub struct ZooPanel {
    /// The manifest as last read (or why it could not be read).
    manifest: Option<Result<Manifest, String>>,
    pub selected: Option<String>,
    job: Option<JobHandle<BuildEvent, Manifest>>,
    pub live: Option<LiveBuild>,
    pub error: Option<String>,
}

impl ZooPanel {
    pub fn manifest(&mut self) -> Option<&Result<Manifest, String>> {
        if self.manifest.is_none() {
            self.reload();
        }
        self.manifest.as_ref()
    }

    pub fn reload(&mut self) {
        self.manifest = Some(Manifest::load(&zoo::manifest_path()).map_err(|e| format!("{e:#}")));
    }

    pub fn is_building(&self) -> bool {
        self.job.is_some()
    }

    /// Trains `names` (bases must exist) as a job; the manifest updates after each model.
    pub fn start_build(&mut self, board: &JobBoard, names: Vec<String>) {
        if self.is_building() {
            return;
        }
        self.error = None;
        self.live = None;
        self.job = Some(spawn_build(board, names));
    }

    pub fn cancel(&self, board: &JobBoard) {
        if let Some(job) = &self.job {
            board.cancel(job.id());
        }
    }

    /// Takes the build's events into the live curve; reloads the manifest as models finish.
    pub fn take_results(&mut self) {
        let Some(job) = &self.job else { return };
        let mut reload = false;
        for event in job.drain() {
            match event {
                BuildEvent::Started { name, steps } => {
                    self.live = Some(LiveBuild {
                        model: name,
                        total: steps,
                        ..Default::default()
                    })
                }
                BuildEvent::Step { report, .. } => {
                    if let Some(live) = &mut self.live {
                        live.step = report.step;
                        live.losses.push(report.loss);
                    }
                }
                BuildEvent::Evaluated { .. } => reload = true,
            }
        }
        if let Some(result) = job.take_result() {
            match result {
                Ok(_) => {}
                Err(e) if e == "cancelled" => {
                    self.error = Some("build cancelled; the previous model is kept".into())
                }
                Err(e) => self.error = Some(e),
            }
            self.job = None;
            reload = true;
        }
        if reload {
            self.reload();
        }
    }
}

impl Lab for ZooPanel {
    fn id(&self) -> &'static str {
        "zoo"
    }
    fn name(&self) -> &'static str {
        "Model zoo"
    }
    fn title(&self) -> &'static str {
        "The model zoo"
    }
    fn description(&self) -> &'static str {
        "Small models trained by alignscope on real data; every lab measures on them. Scores \
         are on held-out sets; base = the pretrained model on the same task."
    }
    fn poll(&mut self, _ctx: &mut LabCtx) {
        self.take_results();
    }
    fn ui(&mut self, ui: &mut egui::Ui, ctx: &mut LabCtx) {
        view::ui(ui, self, ctx.board);
    }
}
