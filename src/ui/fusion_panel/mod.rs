//! The Fusion page: pick two ViTs or two decoders (a zoo pair or two folders) and the fusion
//! options, run the
//! experiment as a job (maps arrive layer by layer), inspect each transport map beside its
//! cost matrix, compare parents, vanilla average, hard and soft OT fusion and their fine-tunes,
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

/// The zoo's pairs: ViTs of the same width, ViTs 64 → 48 (fusion as compression), and the two
/// base decoders trained from different seeds.
pub const ZOO_PAIRS: [(&str, &str); 4] = [
    ("vit-a", "vit-b"),
    ("vit-a", "vit-narrow"),
    ("vit-b", "vit-narrow"),
    ("tiny-base", "tiny-base-b"),
];

/// The two parents.
#[derive(Debug, Clone, PartialEq)]
pub enum Parents {
    Zoo(&'static str, &'static str),
    Folders(PathBuf, PathBuf),
}

impl Parents {
    pub fn label(&self) -> String {
        match self {
            Parents::Zoo(a, b) => format!("{a} + {b}"),
            Parents::Folders(a, b) => format!("{} + {}", a.display(), b.display()),
        }
    }

    /// The page's fine-tune default for this pair: fewer steps for decoders, whose steps cost
    /// far more.
    pub fn finetune_steps(&self) -> usize {
        let decoder = match self {
            Parents::Zoo(a, _) => {
                crate::zoo::specs::spec(a).is_ok_and(|s| s.architecture() == "llama")
            }
            Parents::Folders(a, _) => crate::fusion::decoder_weights::is_decoder(a),
        };
        if decoder {
            DECODER_FINETUNE_STEPS
        } else {
            DEFAULT_FINETUNE_STEPS
        }
    }

    /// The two models as the fusion job names them (zoo names or folders).
    fn names(&self) -> (String, String) {
        match self {
            Parents::Zoo(a, b) => (a.to_string(), b.to_string()),
            Parents::Folders(a, b) => (a.display().to_string(), b.display().to_string()),
        }
    }
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
    /// Which result an export writes: `(run, fine-tuned)`.
    pub export_choice: (usize, bool),
    pub export_status: Option<Result<String, String>>,
}

impl Default for FusionPanel {
    fn default() -> Self {
        let options = LabOptions::default();
        Self {
            parents: Parents::Zoo(ZOO_PAIRS[0].0, ZOO_PAIRS[0].1),
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
            export_choice: (1, false),
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
        let (a, b) = self.parents.names();
        let mut request = FuseRequest::new(&a, &b);
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

    /// The models an export can write, with their labels: `((run, fine-tuned), label)`.
    pub fn exportable(&self) -> Vec<((usize, bool), String)> {
        let Some(report) = &self.report else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, r) in report.runs.iter().enumerate() {
            out.push(((i, false), r.solver.label()));
            if r.finetuned.is_some() {
                out.push(((i, true), format!("{} + fine-tune", r.solver.label())));
            }
        }
        out
    }

    fn chosen(&self) -> Option<&Model> {
        let run = self.report.as_ref()?.runs.get(self.export_choice.0)?;
        if self.export_choice.1 {
            run.finetuned.as_ref()
        } else {
            Some(&run.weights)
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
        "Optimal-transport fusion (Imfeld et al.) of two ViTs or two decoders: B is the anchor. \
         A's neurons are transported onto B's layer by layer (exact OT gives hard maps, Sinkhorn \
         soft ones), then the two are averaged. Fusing into a narrower B compresses A."
    }
    fn poll(&mut self, _ctx: &mut LabCtx) {
        self.take_results();
    }
    fn ui(&mut self, ui: &mut egui::Ui, ctx: &mut LabCtx) {
        view::ui(ui, self, ctx.board, ctx.picker);
    }
}
