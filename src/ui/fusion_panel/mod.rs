//! The Fusion page: pick two ViTs, two BERT encoders or two decoders (a zoo pair or two
//! folders) and the fusion options, run the experiment as a job (maps arrive layer by layer),
//! inspect each transport map beside its cost matrix, compare parents, vanilla average, hard and soft OT fusion and their fine-tunes,
//! and export a fused model. The run is `fusion::tasks::spawn_fuse`, as in the CLI.

mod view;

use std::path::PathBuf;

use super::{Lab, LabCtx};
use crate::fusion::lab::{
    LabOptions, LabReport, Model, ScoreRow, DECODER_FINETUNE_STEPS, DEFAULT_FINETUNE_STEPS,
};
use crate::fusion::options::FuseOptions;
use crate::fusion::tasks::{spawn_fuse, FuseRequest, FusionOutcome, FusionUpdate};
use crate::fusion::transport::{Solver, TransportMap};
use crate::jobs::{JobBoard, JobHandle};

/// The zoo's sets, A then B (the anchor) then any further parents: the long-trained ViTs (first:
/// there the plain average collapses and OT fusion does not, so the first run shows the
/// method's effect), the short-trained ones, ViTs 64 → 48 (fusion as compression), three ViTs
/// into one, the two BERT encoders and the two base decoders, all trained from different seeds.
pub const ZOO_SETS: [&[&str]; 7] = [
    &["vit-long-a", "vit-long-b"],
    &["vit-a", "vit-b"],
    &["vit-a", "vit-narrow"],
    &["vit-b", "vit-narrow"],
    &["vit-a", "vit-b", "vit-c"],
    &["bert-a", "bert-b"],
    &["tiny-base", "tiny-base-b"],
];

/// The parents: a zoo set (A, B, further parents) or two folders.
#[derive(Debug, Clone, PartialEq)]
pub enum Parents {
    Zoo(&'static [&'static str]),
    Folders(PathBuf, PathBuf),
}

impl Parents {
    pub fn label(&self) -> String {
        match self {
            Parents::Zoo(names) => names.join(" + "),
            Parents::Folders(a, b) => format!("{} + {}", a.display(), b.display()),
        }
    }

    /// The page's fine-tune default for this pair: fewer steps for decoders, whose steps cost
    /// far more.
    pub fn finetune_steps(&self) -> usize {
        let decoder = match self {
            Parents::Zoo(names) => {
                crate::zoo::specs::spec(names[0]).is_ok_and(|s| s.architecture() == "llama")
            }
            Parents::Folders(a, _) => crate::fusion::decoder_weights::is_decoder(a),
        };
        if decoder {
            DECODER_FINETUNE_STEPS
        } else {
            DEFAULT_FINETUNE_STEPS
        }
    }

    /// The models as the fusion job names them (zoo names or folders), A first, B second.
    fn names(&self) -> Vec<String> {
        match self {
            Parents::Zoo(names) => names.iter().map(|n| n.to_string()).collect(),
            Parents::Folders(a, b) => vec![a.display().to_string(), b.display().to_string()],
        }
    }
}

/// Which of a run's models an export writes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Variant {
    /// The pair's one-shot fusion.
    OneShot,
    FineTuned,
    /// Every parent fused into the anchor (a set of three or more).
    AllModels,
}

/// The map on show: which solver's run and which map in it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shown {
    pub run: usize,
    pub map: usize,
    /// Columns in matched order (hard maps show as diagonals) instead of B's own order.
    pub matched: bool,
}

pub struct FusionPanel {
    pub parents: Parents,
    pub options: LabOptions,
    /// Sinkhorn's regulariser (the soft run).
    pub reg: f64,
    job: Option<JobHandle<FusionUpdate, FusionOutcome>>,
    pub rows: Vec<ScoreRow>,
    /// Maps so far, per run (hard, soft).
    pub maps: Vec<Vec<TransportMap>>,
    pub report: Option<LabReport>,
    pub error: Option<String>,
    pub shown: Shown,
    /// Which result an export writes: a run and which of its models.
    pub export_choice: (usize, Variant),
    pub export_status: Option<Result<String, String>>,
}

impl Default for FusionPanel {
    fn default() -> Self {
        let options = LabOptions::default();
        Self {
            parents: Parents::Zoo(ZOO_SETS[0]),
            reg: FuseOptions::default_reg(options.cost),
            options,
            job: None,
            rows: Vec::new(),
            maps: Vec::new(),
            report: None,
            error: None,
            shown: Shown {
                run: 0,
                map: 0,
                matched: true,
            },
            export_choice: (1, Variant::OneShot),
            export_status: None,
        }
    }
}

impl FusionPanel {
    pub fn is_running(&self) -> bool {
        self.job.is_some()
    }

    /// The job's id, for its progress line.
    pub fn job_id(&self) -> Option<crate::jobs::JobId> {
        self.job.as_ref().map(|j| j.id())
    }

    /// Hard then soft, so the table has both rows.
    pub fn solvers(&self) -> [Solver; 2] {
        [Solver::Emd, Solver::Sinkhorn { reg: self.reg }]
    }

    pub fn start(&mut self, board: &JobBoard) {
        if let Some(job) = self.job.take() {
            board.cancel(job.id());
        }
        self.rows.clear();
        self.maps = vec![Vec::new(); 2];
        self.report = None;
        self.error = None;
        self.export_status = None;
        self.shown.map = 0;
        let names = self.parents.names();
        let mut request = FuseRequest::new(&names[0], &names[1]);
        request.more = names[2..].to_vec();
        request.options = self.options.clone();
        request.options.solvers = self.solvers().to_vec();
        self.job = Some(spawn_fuse(board, request));
    }

    pub fn cancel(&mut self, board: &JobBoard) {
        if let Some(job) = &self.job {
            board.cancel(job.id());
        }
    }

    fn take_results(&mut self) {
        let Some(job) = &self.job else { return };
        for update in job.drain() {
            match update {
                FusionUpdate::Row(r) => self.rows.push(r),
                FusionUpdate::Map(run, m) => {
                    if let Some(maps) = self.maps.get_mut(run) {
                        maps.push(m);
                    }
                }
            }
        }
        if let Some(result) = job.take_result() {
            self.job = None;
            match result {
                Ok(outcome) => {
                    self.rows = outcome.report.rows.clone();
                    self.report = Some(outcome.report);
                }
                Err(e) => self.error = Some(e),
            }
        }
    }

    /// The models an export can write, with their labels: `((run, variant), label)`.
    pub fn exportable(&self) -> Vec<((usize, Variant), String)> {
        let Some(report) = &self.report else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, r) in report.runs.iter().enumerate() {
            out.push(((i, Variant::OneShot), r.solver.label()));
            if r.finetuned.is_some() {
                out.push((
                    (i, Variant::FineTuned),
                    format!("{} + fine-tune", r.solver.label()),
                ));
            }
            if r.all.is_some() {
                let n = self.parents.names().len();
                out.push((
                    (i, Variant::AllModels),
                    format!("{} · {n} models", r.solver.label()),
                ));
            }
        }
        out
    }

    fn chosen(&self) -> Option<&Model> {
        let run = self.report.as_ref()?.runs.get(self.export_choice.0)?;
        match self.export_choice.1 {
            Variant::OneShot => Some(&run.weights),
            Variant::FineTuned => run.finetuned.as_ref(),
            Variant::AllModels => run.all.as_ref(),
        }
    }

    /// Writes the chosen fused model to `out` (config.json + model.safetensors, atomically).
    pub fn export(&mut self, out: PathBuf) {
        self.export_status = Some(match self.chosen() {
            None => Err("nothing to export: run a fusion first".into()),
            Some(w) => w
                .save(&out)
                .map(|()| format!("wrote {}", out.display()))
                .map_err(|e| format!("{e:#}")),
        });
    }
}

impl Lab for FusionPanel {
    fn id(&self) -> &'static str {
        "fusion"
    }
    fn name(&self) -> &'static str {
        "Fusion"
    }
    fn title(&self) -> &'static str {
        "Fusion lab"
    }
    fn description(&self) -> &'static str {
        "Optimal-transport fusion (Imfeld et al.) of ViTs, BERT encoders or decoders: B is the \
         anchor. A's neurons are transported onto B's layer by layer (exact OT gives hard maps, \
         Sinkhorn soft ones), then the two are averaged; a third parent is aligned the same way. \
         Fusing into a narrower B compresses A."
    }
    fn poll(&mut self, _ctx: &mut LabCtx) {
        self.take_results();
    }
    fn ui(&mut self, ui: &mut egui::Ui, ctx: &mut LabCtx) {
        view::ui(ui, self, ctx.board, ctx.picker);
    }
}
