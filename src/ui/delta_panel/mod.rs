//! The Delta page: prune a fine-tune's deltas with a drop-rate slider and see the |δ| histogram,
//! per-layer statistics and the task metric update (a preview job per setting), metric against
//! drop rate for DARE, DAREx-q and magnitude filled in by a background sweep, merges of zoo
//! fine-tunes, and export of pruned or merged checkpoints (with `merge.yml`). Every job is one
//! of `delta::tasks`, as in the CLI.

mod view;

use std::path::PathBuf;

use super::{Lab, LabCtx};
use crate::delta::lab::{Point, QChoice, ZooMerge};
use crate::delta::tasks::{
    spawn_merge, spawn_prune, spawn_sweep, Curves, MergeOutcome, MergeRequest, PruneOutcome,
    PruneRequest, Subject, SweepRequest,
};
use crate::delta::{MergeInput, MergeMethod, MergeSpec, Method, PruneSpec, TensorFilter};
use crate::jobs::{JobBoard, JobHandle};

/// The pair the page opens on: the AdamR sentiment decoder, where the methods part most at the
/// default p = 0.9 (DARE 0.375, DAREx-q 0.710, magnitude 0.025; docs/delta.md).
const OPENING_PAIR: &str = "tiny-sentiment-adamr";

/// One row of the merge view.
#[derive(Debug, Clone)]
pub struct MergeRow {
    pub model: String,
    pub on: bool,
    pub weight: f64,
    pub density: f64,
}

/// A finished merge and what was merged.
pub struct MergeScores {
    pub merge: ZooMerge,
    pub scores: Vec<(String, f64)>,
}

pub struct MergeView {
    pub method: MergeMethod,
    pub rows: Vec<MergeRow>,
    job: Option<(ZooMerge, JobHandle<(), MergeOutcome>)>,
    pub result: Option<Result<MergeScores, String>>,
}

impl Default for MergeView {
    fn default() -> Self {
        let rows = ["tiny-add", "tiny-reverse", "tiny-sentiment", "tiny-kgqa"]
            .into_iter()
            .map(|m| MergeRow {
                model: m.into(),
                on: true,
                weight: 1.0,
                density: 0.5,
            })
            .collect();
        Self {
            method: MergeMethod::Ties,
            rows,
            job: None,
            result: None,
        }
    }
}

impl MergeView {
    pub fn merge(&self) -> ZooMerge {
        let on: Vec<&MergeRow> = self.rows.iter().filter(|r| r.on).collect();
        ZooMerge {
            models: on.iter().map(|r| r.model.clone()).collect(),
            spec: MergeSpec::new(
                self.method,
                on.iter()
                    .map(|r| MergeInput {
                        weight: r.weight,
                        density: r.density,
                    })
                    .collect(),
            ),
        }
    }

    pub fn is_running(&self) -> bool {
        self.job.is_some()
    }

    /// Merges the chosen fine-tunes into a scratch folder and scores each of their tasks.
    pub fn start(&mut self, board: &JobBoard) {
        let merge = self.merge();
        self.result = None;
        match merge.config() {
            Ok(config) => {
                let request = MergeRequest {
                    config,
                    out: None,
                    eval: true,
                };
                self.job = Some((merge, spawn_merge(board, request)));
            }
            Err(e) => self.result = Some(Err(format!("{e:#}"))),
        }
    }

    fn take_results(&mut self) {
        let Some((_, job)) = &self.job else { return };
        let Some(r) = job.take_result() else { return };
        let Some((merge, _)) = self.job.take() else {
            return;
        };
        self.result = Some(r.map(|o| MergeScores {
            merge,
            scores: o.scores,
        }));
    }
}

/// What the page keeps between starts.
#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    zoo_model: Option<String>,
    spec: PruneSpec,
    q_auto: bool,
}

pub struct DeltaPanel {
    pub subject: Subject,
    pub spec: PruneSpec,
    /// DAREx-q's q from the validation search instead of the slider.
    pub q_auto: bool,
    preview_job: Option<JobHandle<(), PruneOutcome>>,
    /// The setting changed while a preview ran: run again when it ends.
    preview_stale: bool,
    pub preview: Option<PruneOutcome>,
    pub preview_error: Option<String>,
    sweep_job: Option<JobHandle<Point, Curves>>,
    /// The subject, tensor filter and seed the curves belong to.
    curves_for: Option<(Subject, TensorFilter, u64)>,
    pub curves: Vec<Point>,
    pub curves_error: Option<String>,
    export_job: Option<JobHandle<(), PruneOutcome>>,
    merge_export_job: Option<JobHandle<(), MergeOutcome>>,
    pub export_status: Option<Result<String, String>>,
    pub merge: MergeView,
}

impl Default for DeltaPanel {
    fn default() -> Self {
        Self {
            subject: Subject::Zoo(OPENING_PAIR.into()),
            spec: PruneSpec::new(Method::Dare, 0.9),
            q_auto: false,
            preview_job: None,
            preview_stale: false,
            preview: None,
            preview_error: None,
            sweep_job: None,
            curves_for: None,
            curves: Vec::new(),
            curves_error: None,
            export_job: None,
            merge_export_job: None,
            export_status: None,
            merge: MergeView::default(),
        }
    }
}

impl DeltaPanel {
    pub fn is_previewing(&self) -> bool {
        self.preview_job.is_some()
    }

    pub fn is_sweeping(&self) -> bool {
        self.sweep_job.is_some()
    }

    pub fn is_exporting(&self) -> bool {
        self.export_job.is_some() || self.merge_export_job.is_some()
    }

    /// The page's setting as a prune request (q from the search or the slider).
    fn request(&self) -> PruneRequest {
        let mut request =
            PruneRequest::new(self.subject.clone(), self.spec.method, self.spec.drop_rate);
        request.spec = self.spec.clone();
        // The page's previews are small and many: the CPU, as before (no device per job).
        request.device = crate::gpu::DeviceChoice::Cpu;
        request.q = if self.q_auto {
            QChoice::Validation
        } else {
            QChoice::Fixed(self.spec.q)
        };
        request
    }

    /// The setting changed: preview it now, or as soon as the running preview ends.
    pub fn request_preview(&mut self, board: &JobBoard) {
        if self.preview_job.is_some() {
            self.preview_stale = true;
            return;
        }
        self.preview_stale = false;
        let mut request = self.request();
        request.histograms = true;
        self.preview_job = Some(spawn_prune(board, request));
    }

    /// Starts the metric-vs-drop-rate sweep for the current subject unless it is drawn already.
    pub fn ensure_curves(&mut self, board: &JobBoard) {
        let key = (self.subject.clone(), self.spec.filter, self.spec.seed);
        if self.curves_for.as_ref() == Some(&key) {
            return;
        }
        if let Some(job) = self.sweep_job.take() {
            board.cancel(job.id());
        }
        self.curves.clear();
        self.curves_error = None;
        self.curves_for = Some(key);
        // Folders have no task to score: no curves.
        let Subject::Zoo(name) = &self.subject else {
            return;
        };
        let mut request = SweepRequest::new(name);
        request.template.seed = self.spec.seed;
        request.template.filter = self.spec.filter;
        self.sweep_job = Some(spawn_sweep(board, request));
    }

    /// Writes the current pruning setting's checkpoint to `out` as a job.
    pub fn export_pruned(&mut self, board: &JobBoard, out: PathBuf) {
        let mut request = self.request();
        if let Some(p) = &self.preview {
            if p.spec.drop_rate == request.spec.drop_rate && p.spec.method == request.spec.method {
                // Keep the q a search found rather than searching again.
                request.q = QChoice::Fixed(p.spec.q);
                request.spec.tensor_q = p.spec.tensor_q.clone();
            }
        }
        request.eval = false;
        request.out = Some(out);
        self.export_status = None;
        self.export_job = Some(spawn_prune(board, request));
    }

    /// Writes the merge view's merged checkpoint and its `merge.yml` to `out` as a job.
    pub fn export_merged(&mut self, board: &JobBoard, out: PathBuf) {
        self.export_status = None;
        match self.merge.merge().config() {
            Ok(config) => {
                let request = MergeRequest {
                    config,
                    out: Some(out),
                    eval: false,
                };
                self.merge_export_job = Some(spawn_merge(board, request));
            }
            Err(e) => self.export_status = Some(Err(format!("{e:#}"))),
        }
    }

    /// Takes finished jobs' results; restarts a preview whose setting went stale.
    fn take_results(&mut self, board: &JobBoard) {
        if let Some(r) = self.preview_job.as_ref().and_then(|j| j.take_result()) {
            self.preview_job = None;
            match r {
                Ok(p) => {
                    self.preview = Some(p);
                    self.preview_error = None;
                }
                Err(e) => self.preview_error = Some(e),
            }
            if self.preview_stale {
                self.request_preview(board);
            }
        }
        if let Some(job) = &self.sweep_job {
            self.curves.extend(job.drain());
            if let Some(r) = job.take_result() {
                if let Err(e) = r {
                    self.curves_error = Some(e);
                }
                self.sweep_job = None;
            }
        }
        if let Some(r) = self.export_job.as_ref().and_then(|j| j.take_result()) {
            self.export_job = None;
            self.export_status = Some(r.map(|o| wrote(&o.out, &o.summary)));
        }
        if let Some(r) = self.merge_export_job.as_ref().and_then(|j| j.take_result()) {
            self.merge_export_job = None;
            self.export_status = Some(r.map(|o| wrote(&o.out, &o.summary)));
        }
        self.merge.take_results();
    }
}

fn wrote(out: &Option<PathBuf>, summary: &crate::delta::RunSummary) -> String {
    format!(
        "wrote {} ({:.1} MB in {:.1} s)",
        out.as_ref()
            .map(|o| o.display().to_string())
            .unwrap_or_default(),
        summary.bytes_written as f64 / 1e6,
        summary.seconds
    )
}

impl Lab for DeltaPanel {
    fn id(&self) -> &'static str {
        "delta"
    }
    fn name(&self) -> &'static str {
        "Delta"
    }
    fn title(&self) -> &'static str {
        "Delta lab"
    }
    fn description(&self) -> &'static str {
        "What fine-tuning changed, δ = θ_ft − θ_base, pruned: DARE drops at random and rescales \
         by 1/(1−p), DAREx-q by 1/q, magnitude keeps the largest |δ|; merges with TIES and task \
         arithmetic."
    }
    fn poll(&mut self, ctx: &mut LabCtx) {
        self.take_results(ctx.board);
    }
    fn ui(&mut self, ui: &mut egui::Ui, ctx: &mut LabCtx) {
        view::ui(ui, self, ctx.board, ctx.picker);
    }
    fn save(&self) -> Option<serde_json::Value> {
        let zoo_model = match &self.subject {
            Subject::Zoo(name) => Some(name.clone()),
            Subject::Folders { .. } => None,
        };
        serde_json::to_value(Saved {
            zoo_model,
            spec: self.spec.clone(),
            q_auto: self.q_auto,
        })
        .ok()
    }
    fn restore(&mut self, saved: serde_json::Value) {
        if let Ok(s) = serde_json::from_value::<Saved>(saved) {
            if let Some(name) = s.zoo_model {
                self.subject = Subject::Zoo(name);
            }
            self.spec = s.spec;
            self.q_auto = s.q_auto;
        }
    }
}
