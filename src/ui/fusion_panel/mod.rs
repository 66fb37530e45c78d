//! The Fusion page: pick two ViTs (a zoo pair or two folders) and the fusion options, run the
//! experiment as a job (maps arrive layer by layer), inspect each transport map beside its
//! cost matrix, compare parents, vanilla average, hard and soft OT fusion and their fine-tunes,
//! and export a fused model.

mod view;

use std::path::PathBuf;

use crate::fusion::lab::{run, LabEvent, LabOptions, LabReport, ScoreRow};
use crate::fusion::transport::{Solver, TransportMap};
use crate::fusion::vit_fusion::{CostKind, FuseOptions};
use crate::fusion::vit_weights::VitWeights;
use crate::jobs::{JobBoard, JobHandle, JobSpec, Report};

pub use view::ui;

/// The zoo's ViT pairs: same width, and 64 → 48 (fusion as compression).
pub const ZOO_PAIRS: [(&str, &str); 3] = [
    ("vit-a", "vit-b"),
    ("vit-a", "vit-narrow"),
    ("vit-b", "vit-narrow"),
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

    fn dirs(&self) -> anyhow::Result<(PathBuf, PathBuf)> {
        Ok(match self {
            Parents::Zoo(a, b) => (
                crate::zoo::specs::spec(a)?.path(),
                crate::zoo::specs::spec(b)?.path(),
            ),
            Parents::Folders(a, b) => (a.clone(), b.clone()),
        })
    }
}

/// What the job sends while it runs.
pub enum Update {
    Row(ScoreRow),
    Map(usize, TransportMap),
}

pub struct Outcome(pub LabReport);

impl Report for Outcome {
    fn metrics(&self) -> serde_json::Value {
        serde_json::to_value(&self.0.rows).unwrap_or_default()
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
    job: Option<JobHandle<Update, Outcome>>,
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
        let mut options = LabOptions::new(CostKind::Acts, Vec::new());
        options.finetune_steps = 200;
        Self {
            parents: Parents::Zoo(ZOO_PAIRS[0].0, ZOO_PAIRS[0].1),
            options,
            reg: FuseOptions::default_reg(CostKind::Acts),
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
        let mut options = self.options.clone();
        options.solvers = self.solvers().to_vec();
        let parents = self.parents.clone();
        let spec = JobSpec {
            kind: "fusion".into(),
            title: format!("fuse {}", parents.label()),
            inputs: serde_json::json!({"parents": parents.label(), "options": options}),
            seed: None,
        };
        self.job = Some(board.spawn(spec, move |ctx| {
            let (a, b) = parents.dirs()?;
            let report = run(&a, &b, &options, &mut |event| {
                ctx.check()?;
                match event {
                    LabEvent::Stage(s) => ctx.progress(None, s),
                    LabEvent::Map {
                        run,
                        map,
                        done,
                        total,
                    } => {
                        ctx.progress(
                            Some(done as f32 / total as f32),
                            format!("map {done}/{total}: {}", map.name),
                        );
                        ctx.send(Update::Map(run, map.clone()));
                    }
                    LabEvent::Row(row) => ctx.send(Update::Row(row.clone())),
                    LabEvent::Step(s) => ctx.progress(
                        Some(s.step as f32 / s.total as f32),
                        format!("fine-tune step {}/{} · loss {:.3}", s.step, s.total, s.loss),
                    ),
                }
                Ok(())
            })?;
            Ok(Outcome(report))
        }));
    }

    pub fn cancel(&mut self, board: &JobBoard) {
        if let Some(job) = &self.job {
            board.cancel(job.id());
        }
    }

    pub fn poll(&mut self) {
        let Some(job) = &self.job else { return };
        for update in job.drain() {
            match update {
                Update::Row(r) => self.rows.push(r),
                Update::Map(run, m) => {
                    if let Some(maps) = self.maps.get_mut(run) {
                        maps.push(m);
                    }
                }
            }
        }
        if let Some(result) = job.take_result() {
            self.job = None;
            match result {
                Ok(Outcome(report)) => {
                    self.rows = report.rows.clone();
                    self.report = Some(report);
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

    fn chosen(&self) -> Option<&VitWeights> {
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
