//! The Delta lab's long operations as jobs — prune (also the page's preview and export), the
//! metric-vs-drop-rate sweep, and merges — called by the Delta page and the CLI alike. The
//! defaults live in the request types.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::json;

use super::darex::QSearch;
use super::lab::{decoder_task_scores, sweep, zoo_pairs, Point, QChoice, ZooProbe};
use super::prune::{prune_checkpoint, Engine, Method, Output, Progress, PruneSpec, RunSummary};
use super::MergeConfig;
use crate::checkpoint::Checkpoint;
use crate::fs::ScratchDir;
use crate::gpu::DeviceChoice;
use crate::jobs::{JobBoard, JobCtx, JobHandle, JobSpec, Report};
use crate::zoo::specs::Recipe;
use crate::zoo::tasks::build_progress;
use crate::zoo::BuildEvent;

/// The drop rates of the metric-vs-drop-rate curves (dense near 1, where the methods part).
pub const CURVE_RATES: [f64; 9] = [0.0, 0.5, 0.7, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999];
/// The methods drawn side by side.
pub const CURVE_METHODS: [Method; 3] = [Method::Dare, Method::DarexQ, Method::Magnitude];

/// What is pruned: a zoo fine-tune (its task scores it) or any two checkpoints (statistics).
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

    /// `base` and `finetuned` are folders, `.safetensors` files or zoo names. A zoo fine-tune
    /// over its own zoo base is a zoo subject, whichever way it was named (nothing is built
    /// here: a zoo fine-tune missing on disk is built by the job, with progress).
    pub fn resolve(base: &str, finetuned: &str) -> Result<Self> {
        let ft_path = Path::new(finetuned);
        let zoo_name = if ft_path.exists() {
            zoo_name_of(ft_path)
        } else {
            zoo_pairs()
                .into_iter()
                .find(|s| s.name == finetuned)
                .map(|s| s.name)
        };
        if let Some(name) = zoo_name {
            let zoo_base = crate::zoo::specs::spec(name)?.base.unwrap_or_default();
            let base_dir = crate::zoo::specs::spec(zoo_base)?.path();
            if base == zoo_base || same_path(&base_dir, Path::new(base)) {
                return Ok(Subject::Zoo(name.to_string()));
            }
        }
        let mut quiet = |_: BuildEvent| Ok(());
        Ok(Subject::Folders {
            base: crate::zoo::resolve(base, &mut quiet)?,
            finetuned: crate::zoo::resolve(finetuned, &mut quiet)?,
        })
    }

    /// The base and fine-tune folders (a zoo fine-tune is built first if missing).
    pub fn dirs(&self, on: &mut dyn FnMut(BuildEvent) -> Result<()>) -> Result<(PathBuf, PathBuf)> {
        Ok(match self {
            Subject::Zoo(name) => {
                let spec = crate::zoo::specs::spec(name)?;
                let base = spec
                    .base
                    .with_context(|| format!("{name} has no base model in the zoo"))?;
                (
                    crate::zoo::specs::ensure_built(base, on)?,
                    crate::zoo::specs::ensure_built(name, on)?,
                )
            }
            Subject::Folders { base, finetuned } => (base.clone(), finetuned.clone()),
        })
    }
}

fn same_path(a: &Path, b: &Path) -> bool {
    match (a.canonicalize().ok(), b.canonicalize().ok()) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// The zoo fine-tune at `path`, if it is one.
pub fn zoo_name_of(path: &Path) -> Option<&'static str> {
    let canon = path.canonicalize().ok()?;
    zoo_pairs()
        .into_iter()
        .find(|s| s.path().canonicalize().ok().as_ref() == Some(&canon))
        .map(|s| s.name)
}

/// One pruning run: where it writes, whether it is scored, how DAREx-q's q is chosen.
#[derive(Debug, Clone, Serialize)]
pub struct PruneRequest {
    #[serde(serialize_with = "subject_label")]
    pub subject: Subject,
    pub spec: PruneSpec,
    /// How DAREx-q's q is chosen (other methods ignore it).
    pub q: QChoice,
    /// Score the result on the zoo fine-tune's held-out task.
    pub eval: bool,
    /// Histogram log10|δ| before and after (the page's preview).
    pub histograms: bool,
    /// Write the pruned checkpoint here; without it the run writes to a scratch folder that is
    /// removed afterwards (statistics and score only).
    pub out: Option<PathBuf>,
    pub device: DeviceChoice,
}

fn subject_label<S: serde::Serializer>(s: &Subject, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(&s.label())
}

impl PruneRequest {
    /// `method` at `drop_rate`, seed 0, every tensor, q = 1 − p, scored when the subject is a
    /// zoo fine-tune, on a hardware GPU if there is one.
    pub fn new(subject: Subject, method: Method, drop_rate: f64) -> Self {
        Self {
            eval: matches!(subject, Subject::Zoo(_)),
            subject,
            spec: PruneSpec::new(method, drop_rate),
            q: QChoice::Fixed(1.0 - drop_rate),
            histograms: false,
            out: None,
            device: DeviceChoice::Auto,
        }
    }

    /// Scoring, a q search and activation-aware pruning need the zoo task's data.
    fn needs_zoo(&self) -> bool {
        self.eval
            || self.spec.method == Method::ActivationAware
            || (self.spec.method == Method::DarexQ && !matches!(self.q, QChoice::Fixed(_)))
    }
}

/// The zoo's recorded scores of the fine-tune and its base, for comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Reference {
    pub finetuned_score: f64,
    pub base_score: Option<f64>,
    pub metric: String,
}

/// What a pruning run did.
#[derive(Debug, Clone, Serialize)]
pub struct PruneOutcome {
    /// The setting as run (q filled in by the search).
    pub spec: PruneSpec,
    pub q_search: Option<QSearch>,
    pub summary: RunSummary,
    pub score: Option<f64>,
    pub reference: Option<Reference>,
    pub out: Option<PathBuf>,
}

impl PruneOutcome {
    /// The flat report `alignscope prune --json` prints.
    pub fn to_json(&self) -> serde_json::Value {
        let s = &self.spec;
        let mut report = json!({
            "method": s.method.name(),
            "drop_rate": s.drop_rate,
            "keep_rate": s.keep_rate(),
            "seed": s.seed,
            "tensors": s.filter.name(),
            "kept_fraction": self.summary.kept_fraction(),
            "run": summary_json(&self.summary),
        });
        if s.method == Method::DarexQ {
            report["q"] = json!(s.q);
            report["per_matrix_q"] = json!(s.tensor_q.len());
        }
        if let Some(search) = &self.q_search {
            report["q_search"] = json!(search);
        }
        if let Some(out) = &self.out {
            report["out"] = json!(out.display().to_string());
        }
        if let Some(score) = self.score {
            report["score"] = json!(score);
        }
        if let Some(r) = &self.reference {
            report["finetuned_score"] = json!(r.finetuned_score);
            report["base_score"] = json!(r.base_score);
            report["metric"] = json!(r.metric);
        }
        report
    }
}

impl Report for PruneOutcome {
    fn metrics(&self) -> serde_json::Value {
        json!({
            "score": self.score,
            "kept_fraction": self.summary.kept_fraction(),
            "q": self.spec.q,
            "seconds": self.summary.seconds,
        })
    }
    fn outputs(&self) -> serde_json::Value {
        json!({ "out": self.out })
    }
}

fn summary_json(s: &RunSummary) -> serde_json::Value {
    json!({
        "kept_fraction": s.kept_fraction(),
        "tensors_pruned": s.tensors.len(),
        "tensors_carried": s.carried.len(),
        "bytes_written": s.bytes_written,
        "seconds": s.seconds,
        "device": s.device,
    })
}

/// Runs `request`; `progress` hears of every tensor written, `on_build` of zoo models built
/// on first use.
pub fn prune(
    request: &PruneRequest,
    progress: &mut Progress,
    on_build: &mut dyn FnMut(BuildEvent) -> Result<()>,
) -> Result<PruneOutcome> {
    request.spec.validate()?;
    let (base_dir, ft_dir) = request.subject.dirs(on_build)?;
    let mut probe = match (&request.subject, request.needs_zoo()) {
        (_, false) => None,
        (Subject::Zoo(name), true) => Some(ZooProbe::new(name)?),
        (Subject::Folders { finetuned, .. }, true) => bail!(
            "{}: scoring, a q search and activation-aware pruning need a zoo fine-tune (its \
             task data); this folder is not one",
            finetuned.display()
        ),
    };
    let gpu = request.device.open()?;
    let mut engine = Engine {
        gpu: gpu.as_ref(),
        histograms: request.histograms,
        ..Default::default()
    };
    let mut spec = request.spec.clone();
    let mut q_search = None;
    let inputs;
    match probe.as_mut() {
        Some(p) => {
            if spec.method == Method::DarexQ {
                q_search = p.choose_q(&mut spec, request.q, &engine)?;
            }
            if spec.method == Method::ActivationAware {
                inputs = p.input_stats()?;
                engine.inputs = Some(&inputs);
            }
        }
        None => {
            if let QChoice::Fixed(q) = request.q {
                spec.q = q;
            }
        }
    }
    spec.validate()?;
    let scratch;
    let dir = match &request.out {
        Some(out) => out.clone(),
        None => {
            scratch = ScratchDir::new()?;
            scratch.path().join("model")
        }
    };
    let summary = prune_checkpoint(
        &Checkpoint::open(&base_dir)?,
        &Checkpoint::open(&ft_dir)?,
        &spec,
        &engine,
        &Output::new(&dir),
        progress,
    )?;
    let (mut score, mut reference) = (None, None);
    if let (true, Some(p)) = (request.eval, probe.as_mut()) {
        score = Some(p.test_score(&dir)?);
        let manifest = crate::zoo::Manifest::load(&crate::zoo::manifest_path())?;
        reference = manifest.get(p.spec.name).map(|e| Reference {
            finetuned_score: e.score,
            base_score: e.base_score,
            metric: e.metric.clone(),
        });
    }
    Ok(PruneOutcome {
        spec,
        q_search,
        summary,
        score,
        reference,
        out: request.out.clone(),
    })
}

/// Reports tensors written and zoo models built as the job's progress.
fn job_progress<P>(ctx: &JobCtx<P>) -> impl FnMut(u64, u64, &str) -> Result<()> + '_ {
    |done, total, name| {
        ctx.check()?;
        ctx.progress(Some(done as f32 / total.max(1) as f32), name.to_string());
        Ok(())
    }
}

pub fn spawn_prune(board: &JobBoard, request: PruneRequest) -> JobHandle<(), PruneOutcome> {
    let s = &request.spec;
    let spec = JobSpec {
        kind: "prune".into(),
        title: format!(
            "prune {} {} p={}",
            request.subject.label(),
            s.method.name(),
            s.drop_rate
        ),
        inputs: serde_json::to_value(&request).unwrap_or_default(),
        seed: Some(s.seed),
    };
    board.spawn(spec, move |ctx| {
        ctx.progress(None, format!("pruning {}", request.subject.label()));
        prune(&request, &mut job_progress(ctx), &mut build_progress(ctx))
    })
}

/// Metric against drop rate on a zoo fine-tune, for several methods.
#[derive(Debug, Clone, Serialize)]
pub struct SweepRequest {
    pub model: String,
    /// Seed and tensor filter of every point (method and rate are set per point).
    pub template: PruneSpec,
    pub methods: Vec<Method>,
    pub rates: Vec<f64>,
    /// How DAREx-q's q is chosen at each rate.
    pub q: QChoice,
}

impl SweepRequest {
    /// DARE, DAREx-q (q by validation search) and magnitude at [`CURVE_RATES`].
    pub fn new(model: &str) -> Self {
        Self {
            model: model.to_string(),
            template: PruneSpec::new(Method::Dare, 0.0),
            methods: CURVE_METHODS.to_vec(),
            rates: CURVE_RATES.to_vec(),
            q: QChoice::Validation,
        }
    }
}

/// The points of one sweep.
pub struct Curves(pub Vec<Point>);

impl Report for Curves {
    fn metrics(&self) -> serde_json::Value {
        json!({ "points": self.0 })
    }
}

/// Every point arrives as a partial result.
pub fn spawn_sweep(board: &JobBoard, request: SweepRequest) -> JobHandle<Point, Curves> {
    let spec = JobSpec {
        kind: "prune-sweep".into(),
        title: format!("{}: metric vs drop rate", request.model),
        inputs: serde_json::to_value(&request).unwrap_or_default(),
        seed: Some(request.template.seed),
    };
    board.spawn(spec, move |ctx| {
        ctx.progress(None, format!("loading {}", request.model));
        let mut probe = ZooProbe::new(&request.model)?;
        let total = (request.rates.len() * request.methods.len()).max(1) as f32;
        let mut done = 0.0;
        let points = sweep(
            &mut probe,
            &request.template,
            &request.methods,
            &request.rates,
            request.q,
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
    })
}

/// A merge: where it goes and whether it is scored.
#[derive(Debug, Clone)]
pub struct MergeRequest {
    pub config: MergeConfig,
    /// Write the merged checkpoint here (and `merge.yml` beside it); without it the merge goes
    /// to a scratch folder that is removed afterwards.
    pub out: Option<PathBuf>,
    /// Score the merge on the task of every zoo decoder fine-tune in it.
    pub eval: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct MergeOutcome {
    pub method: String,
    pub models: Vec<PathBuf>,
    pub out: Option<PathBuf>,
    pub summary: RunSummary,
    /// (task, score) per task of the merged fine-tunes.
    pub scores: Vec<(String, f64)>,
}

impl MergeOutcome {
    /// The flat report `alignscope merge --json` prints.
    pub fn to_json(&self) -> serde_json::Value {
        let mut report = json!({
            "merge_method": self.method,
            "models": self.models.iter().map(|m| m.display().to_string()).collect::<Vec<_>>(),
            "out": self.out.as_ref().map(|o| o.display().to_string()),
            "run": summary_json(&self.summary),
        });
        if !self.scores.is_empty() {
            report["scores"] = self
                .scores
                .iter()
                .map(|(t, s)| (t.clone(), json!(s)))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        report
    }
}

impl Report for MergeOutcome {
    fn metrics(&self) -> serde_json::Value {
        self.to_json()["scores"].clone()
    }
    fn outputs(&self) -> serde_json::Value {
        json!({ "out": self.out })
    }
}

/// The decoder tasks of the zoo fine-tunes among `models`, in order.
fn merged_tasks(models: &[PathBuf]) -> Result<Vec<crate::data::TextTask>> {
    let mut tasks = Vec::new();
    for m in models {
        let recipe = zoo_name_of(m)
            .and_then(|n| crate::zoo::specs::spec(n).ok())
            .map(|s| s.recipe);
        let Some(Recipe::Decoder(r)) = recipe else {
            bail!(
                "{}: not a zoo decoder fine-tune; merges are scored on the zoo's decoder tasks",
                m.display()
            );
        };
        for t in r.tasks {
            if !tasks.contains(&t) {
                tasks.push(t);
            }
        }
    }
    Ok(tasks)
}

pub fn merge(request: &MergeRequest, progress: &mut Progress) -> Result<MergeOutcome> {
    let config = &request.config;
    let tasks = if request.eval {
        merged_tasks(&config.models)?
    } else {
        Vec::new()
    };
    let scratch;
    let dir = match &request.out {
        Some(out) => out.clone(),
        None => {
            scratch = ScratchDir::new()?;
            scratch.path().join("merged")
        }
    };
    let summary = config.run(&dir, progress)?;
    if request.out.is_some() {
        crate::fs::write_atomic(&dir.join("merge.yml"), config.to_yaml()?.as_bytes())?;
    }
    let scores = if tasks.is_empty() {
        Vec::new()
    } else {
        decoder_task_scores(&dir, &tasks)?
            .into_iter()
            .map(|(t, s)| (t.name().to_string(), s))
            .collect()
    };
    Ok(MergeOutcome {
        method: config.spec.method.name().to_string(),
        models: config.models.clone(),
        out: request.out.clone(),
        summary,
        scores,
    })
}

pub fn spawn_merge(board: &JobBoard, request: MergeRequest) -> JobHandle<(), MergeOutcome> {
    let config = &request.config;
    let names: Vec<String> = config
        .models
        .iter()
        .map(|m| {
            m.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect();
    let spec = JobSpec {
        kind: "merge".into(),
        title: format!("{} of {}", config.spec.method.name(), names.join(", ")),
        inputs: json!({
            "base_model": config.base_model,
            "models": config.models,
            "spec": config.spec,
            "out": request.out,
            "eval": request.eval,
        }),
        seed: Some(config.spec.seed),
    };
    board.spawn(spec, move |ctx| {
        ctx.progress(None, "merging");
        merge(&request, &mut job_progress(ctx))
    })
}
