//! The Delta page: prune a fine-tune's deltas with a drop-rate slider and see the |δ| histogram,
//! per-layer statistics and the task metric update (a preview job per setting), metric against
//! drop rate for DARE, DAREx-q and magnitude filled in by a background sweep, merges of zoo
//! fine-tunes, and export of pruned or merged checkpoints and of mergekit YAML.

mod view;

use std::path::PathBuf;

use crate::delta::lab::{preview_folders, sweep, QChoice, ZooMerge, ZooProbe};
use crate::delta::{Engine, MergeInput, MergeMethod, MergeSpec, Method, PruneSpec, RunSummary};
use crate::jobs::{JobBoard, JobHandle, JobSpec, Report};

pub use view::ui;

/// The drop rates of the background curves (dense near 1, where the methods part ways).
pub const CURVE_RATES: [f64; 9] = [0.0, 0.5, 0.7, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999];
/// The methods drawn side by side.
pub const CURVE_METHODS: [Method; 3] = [Method::Dare, Method::DarexQ, Method::Magnitude];

/// Which pair is pruned: a zoo fine-tune (with its task) or any two folders (statistics only).
#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    Zoo(String),
    Folders { base: PathBuf, finetuned: PathBuf },
}

impl Subject {
    pub fn label(&self) -> String {
        match self {
            Subject::Zoo(name) => name.clone(),
            Subject::Folders { finetuned, .. } => finetuned.display().to_string(),
        }
    }
}

/// One finished preview: the setting, what pruning did, and the task score.
#[derive(Debug, Clone)]
pub struct Preview {
    pub spec: PruneSpec,
    pub summary: RunSummary,
    pub score: Option<f64>,
}

impl Report for Preview {
    fn metrics(&self) -> serde_json::Value {
        serde_json::json!({"score": self.score, "kept_fraction": self.summary.kept_fraction()})
    }
}

/// The curve points of one sweep.
pub struct Curves(pub Vec<crate::delta::lab::Point>);

impl Report for Curves {
    fn metrics(&self) -> serde_json::Value {
        serde_json::json!({"points": self.0.len()})
    }
}

/// Where an export went.
pub struct Exported(pub String);

impl Report for Exported {
    fn metrics(&self) -> serde_json::Value {
        serde_json::json!({"out": self.0})
    }
}

/// One row of the merge view.
#[derive(Debug, Clone)]
pub struct MergeRow {
    pub model: String,
    pub on: bool,
    pub weight: f64,
    pub density: f64,
}

pub struct MergeScores {
    pub merge: ZooMerge,
    pub scores: Vec<(String, f64)>,
}

impl Report for MergeScores {
    fn metrics(&self) -> serde_json::Value {
        self.scores
            .iter()
            .map(|(t, s)| (t.clone(), serde_json::json!(s)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}

pub struct MergeView {
    pub method: MergeMethod,
    pub rows: Vec<MergeRow>,
    job: Option<JobHandle<(), MergeScores>>,
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

    pub fn start(&mut self, board: &JobBoard) {
        let merge = self.merge();
        self.result = None;
        let spec = JobSpec {
            kind: "merge".into(),
            title: format!(
                "{} of {}",
                merge.spec.method.name(),
                merge.models.join(", ")
            ),
            inputs: serde_json::json!({"models": merge.models, "spec": merge.spec}),
            seed: Some(merge.spec.seed),
        };
        self.job = Some(board.spawn(spec, move |ctx| {
            ctx.progress(None, "merging and scoring");
            let scores = merge
                .score()?
                .into_iter()
                .map(|(t, s)| (t.name().to_string(), s))
                .collect();
            Ok(MergeScores { merge, scores })
        }));
    }

    fn poll(&mut self) {
        if let Some(r) = self.job.as_ref().and_then(|j| j.take_result()) {
            self.result = Some(r);
            self.job = None;
        }
    }
}

pub struct DeltaPanel {
    pub subject: Subject,
    pub spec: PruneSpec,
    /// DAREx-q's q from the validation search instead of the slider.
    pub q_auto: bool,
    preview_job: Option<JobHandle<(), Preview>>,
    /// The setting changed while a preview ran: run again when it ends.
    preview_stale: bool,
    pub preview: Option<Preview>,
    pub preview_error: Option<String>,
    sweep_job: Option<JobHandle<crate::delta::lab::Point, Curves>>,
    /// The subject and tensor filter the curves belong to.
    curves_for: Option<(Subject, crate::delta::TensorFilter, u64)>,
    pub curves: Vec<crate::delta::lab::Point>,
    pub curves_error: Option<String>,
    export_job: Option<JobHandle<(), Exported>>,
    pub export_status: Option<Result<String, String>>,
    pub merge: MergeView,
}

impl Default for DeltaPanel {
    fn default() -> Self {
        Self {
            subject: Subject::Zoo("tiny-sentiment".into()),
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
        self.export_job.is_some()
    }

    /// The setting changed: preview it now, or as soon as the running preview ends.
    pub fn request_preview(&mut self, board: &JobBoard) {
        if self.preview_job.is_some() {
            self.preview_stale = true;
            return;
        }
        self.preview_stale = false;
        let (subject, spec, q_auto) = (self.subject.clone(), self.spec.clone(), self.q_auto);
        let job = JobSpec {
            kind: "delta-preview".into(),
            title: format!(
                "{} {} p={}",
                subject.label(),
                spec.method.name(),
                spec.drop_rate
            ),
            inputs: serde_json::to_value(&spec).unwrap_or_default(),
            seed: Some(spec.seed),
        };
        self.preview_job = Some(board.spawn(job, move |ctx| {
            let engine = Engine {
                histograms: true,
                ..Default::default()
            };
            match subject {
                Subject::Zoo(name) => {
                    ctx.progress(None, format!("pruning {name}"));
                    let mut probe = ZooProbe::new(&name)?;
                    let how = if q_auto {
                        QChoice::Validation
                    } else {
                        QChoice::Fixed(spec.q)
                    };
                    let (point, summary) = probe.point(&spec, how, &engine)?;
                    let mut spec = spec;
                    if let Some(q) = point.q {
                        spec.q = q;
                    }
                    Ok(Preview {
                        spec,
                        summary,
                        score: Some(point.score),
                    })
                }
                Subject::Folders { base, finetuned } => Ok(Preview {
                    summary: preview_folders(&base, &finetuned, &spec, &engine)?,
                    spec,
                    score: None,
                }),
            }
        }));
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
        let name = name.clone();
        let template = self.spec.clone();
        let job = JobSpec {
            kind: "delta-sweep".into(),
            title: format!("{name}: metric vs drop rate"),
            inputs: serde_json::json!({"model": name, "rates": CURVE_RATES}),
            seed: Some(template.seed),
        };
        self.sweep_job = Some(board.spawn(job, move |ctx| {
            let mut probe = ZooProbe::new(&name)?;
            let total = (CURVE_RATES.len() * CURVE_METHODS.len()) as f32;
            let mut done = 0.0;
            let points = sweep(
                &mut probe,
                &template,
                &CURVE_METHODS,
                &CURVE_RATES,
                QChoice::Validation,
                &Engine::default(),
                &mut |p| {
                    ctx.check()?;
                    done += 1.0;
                    ctx.progress(
                        Some(done / total),
                        format!("{} p={}", p.method.name(), p.drop_rate),
                    );
                    ctx.send(p.clone());
                    Ok(())
                },
            )?;
            Ok(Curves(points))
        }));
    }

    /// Writes the current pruning setting's checkpoint to `out` as a job.
    pub fn export_pruned(&mut self, board: &JobBoard, out: PathBuf) {
        let (subject, mut spec) = (self.subject.clone(), self.spec.clone());
        if let Some(p) = &self.preview {
            if p.spec.drop_rate == spec.drop_rate && p.spec.method == spec.method {
                spec.q = p.spec.q; // keep the q a search found
            }
        }
        self.start_export(board, out, "export pruned", move |out, progress| {
            let (base, finetuned) = match subject {
                Subject::Zoo(name) => {
                    let s = crate::zoo::specs::spec(&name)?;
                    let base = crate::zoo::specs::spec(s.base.unwrap_or_default())?.path();
                    (base, s.path())
                }
                Subject::Folders { base, finetuned } => (base, finetuned),
            };
            crate::delta::prune_checkpoint(
                &crate::delta::Checkpoint::open(&base)?,
                &crate::delta::Checkpoint::open(&finetuned)?,
                &spec,
                &Engine::default(),
                &crate::delta::Output::new(out),
                progress,
            )
        });
    }

    /// Writes the merge view's merged checkpoint and its mergekit YAML (`merge.yml`) to `out`.
    pub fn export_merged(&mut self, board: &JobBoard, out: PathBuf) {
        let merge = self.merge.merge();
        self.start_export(board, out, "export merge", move |out, progress| {
            let summary = merge.write(out, progress)?;
            std::fs::write(out.join("merge.yml"), merge.config()?.to_yaml()?)?;
            Ok(summary)
        });
    }

    fn start_export(
        &mut self,
        board: &JobBoard,
        out: PathBuf,
        what: &str,
        work: impl FnOnce(
                &std::path::Path,
                &mut crate::delta::prune::Progress,
            ) -> anyhow::Result<RunSummary>
            + Send
            + 'static,
    ) {
        self.export_status = None;
        let job = JobSpec {
            kind: "delta-export".into(),
            title: format!("{what} to {}", out.display()),
            inputs: serde_json::json!({"out": out}),
            seed: None,
        };
        self.export_job = Some(board.spawn(job, move |ctx| {
            let summary = work(&out, &mut |done, total, name| {
                ctx.check()?;
                ctx.progress(Some(done as f32 / total.max(1) as f32), name.to_string());
                Ok(())
            })?;
            Ok(Exported(format!(
                "wrote {} ({:.1} MB in {:.1} s)",
                out.display(),
                summary.bytes_written as f64 / 1e6,
                summary.seconds
            )))
        }));
    }

    /// Takes finished jobs' results; restarts a preview whose setting went stale.
    pub fn poll(&mut self, board: &JobBoard) {
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
            self.export_status = Some(r.map(|e| e.0));
        }
        self.merge.poll();
    }
}
