//! Grafting as jobs, called by the Graft page and `alignscope graft` alike: for one fine-tune
//! and task, masks by each method at each sparsity, scored as they are made; the overlap of
//! several runs' masks. The defaults live in [`GraftRequest::new`] and [`LearnOptions`].

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::decoder::DecoderGraft;
use super::encoder::EncoderGraft;
use super::learn::{learn_mask, LearnOptions, LearnStep};
use super::mask::{Density, Mask};
use super::model::{Graftable, SetScore};
use super::select::{dare, kept_count, random_k, top_k};
use crate::data::classify::{class_data, multi_task_view, ClassTask};
use crate::data::sources::Sources;
use crate::data::{Example, TextTask};
use crate::jobs::{JobBoard, JobCtx, JobHandle, JobSpec, Report};
use crate::zoo::tasks::build_progress;

crate::named_enum! {
    "method";
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum GraftMethod {
        /// The published mask search, started from top-k.
        Learned = "learned",
        /// The k largest |δ| (the learned mask's initialisation).
        Topk = "topk",
        /// k parameters at random.
        Random = "random",
        /// DARE at the same keep rate: random, survivors rescaled by 1/keep.
        Dare = "dare",
    }
}

/// The sparsities of the paper's range (kept fraction of the eligible parameters).
pub const SPARSITIES: [f64; 4] = [1e-5, 1e-4, 1e-3, 1e-2];
/// Training rows held out for choosing the learned mask.
const VAL_ROWS: usize = 100;
const SPLIT_SEED: u64 = 0x6EAF7;

/// One fine-tune and what to graft from it.
#[derive(Debug, Clone, Serialize)]
pub struct GraftRequest {
    /// A zoo name (built first if missing; MiniLM classifiers and single-task decoders) or a
    /// BERT classifier folder.
    pub finetuned: String,
    /// The pretrained model; by default the zoo base of a zoo fine-tune.
    pub base: Option<String>,
    /// The task; by default the one the fine-tune's config names. A multi-task model needs it.
    pub task: Option<ClassTask>,
    pub methods: Vec<GraftMethod>,
    pub sparsities: Vec<f64>,
    pub learn: LearnOptions,
    /// Also score the test and out-of-distribution sets with calibration (otherwise the
    /// validation accuracy only).
    pub eval: bool,
    /// Write each mask and its grafted model under this folder.
    pub out: Option<PathBuf>,
}

impl GraftRequest {
    pub fn new(finetuned: &str) -> Self {
        Self {
            finetuned: finetuned.to_string(),
            base: None,
            task: None,
            methods: vec![GraftMethod::Learned],
            sparsities: vec![1e-4],
            learn: LearnOptions::default(),
            eval: true,
            out: None,
        }
    }
}

/// Scores of one model (fine-tune, pretrained blocks, or a graft).
#[derive(Debug, Clone, Serialize)]
pub struct GraftRow {
    /// `fine-tuned`, `no graft` (pretrained blocks) or the method.
    pub label: String,
    pub method: Option<GraftMethod>,
    pub sparsity: f64,
    pub kept: usize,
    pub val_accuracy: f64,
    pub test: Option<SetScore>,
    pub ood: Option<SetScore>,
    pub seconds: f64,
    /// Kept parameters per layer and module (grafts only).
    pub densities: Vec<Density>,
    /// Where the mask and grafted model were written.
    pub out: Option<PathBuf>,
}

/// What the job sends while it runs.
pub enum GraftUpdate {
    Row(GraftRow),
    Step {
        sparsity: f64,
        step: LearnStep,
    },
    /// A finished mask, with the row it belongs to (its index among the rows).
    Mask(usize, Mask),
}

pub struct GraftOutcome {
    pub finetuned: PathBuf,
    pub base: PathBuf,
    pub task: String,
    pub eligible: usize,
    pub rows: Vec<GraftRow>,
    pub steps: Vec<(f64, LearnStep)>,
}

impl GraftOutcome {
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "finetuned": self.finetuned,
            "base": self.base,
            "task": self.task,
            "eligible_parameters": self.eligible,
            "rows": self.rows,
            "steps": self.steps.iter().map(|(s, st)| json!({"sparsity": s, "step": st})).collect::<Vec<_>>(),
        })
    }
}

impl Report for GraftOutcome {
    fn metrics(&self) -> serde_json::Value {
        serde_json::to_value(
            self.rows
                .iter()
                .map(|r| {
                    json!({
                        "label": r.label, "sparsity": r.sparsity, "kept": r.kept,
                        "val_accuracy": r.val_accuracy,
                        "test_accuracy": r.test.as_ref().map(|t| t.accuracy),
                        "test_ece": r.test.as_ref().map(|t| t.ece),
                        "ood_accuracy": r.ood.as_ref().map(|t| t.accuracy),
                    })
                })
                .collect::<Vec<_>>(),
        )
        .unwrap_or_default()
    }
    fn outputs(&self) -> serde_json::Value {
        json!(self
            .rows
            .iter()
            .filter_map(|r| r.out.clone())
            .collect::<Vec<_>>())
    }
}

/// The task a fine-tune was trained on, from its config's `finetuning_task`.
fn task_of(dir: &Path) -> Result<ClassTask> {
    let (_, raw): (serde_json::Value, _) = crate::eval::classifier::read_config(dir)?;
    let name = raw["finetuning_task"].as_str().with_context(|| {
        format!(
            "{}: config.json names no finetuning_task; pass the task",
            dir.display()
        )
    })?;
    ClassTask::ALL
        .iter()
        .copied()
        .find(|t| t.name() == name)
        .with_context(|| format!("{}: unknown task {name:?}", dir.display()))
}

/// Train rows for gradients, validation rows, test and shifted rows of one task.
pub struct TaskRows<R> {
    pub task: String,
    pub train: Vec<R>,
    pub val: Vec<R>,
    pub test: Vec<R>,
    pub ood: Vec<R>,
}

/// The rows of `task` for a model trained on `trained_on` and the task's labels in the model
/// (the multi-task model sees prefixed texts and a slice of its joint labels).
pub fn task_rows(
    trained_on: ClassTask,
    task: Option<ClassTask>,
) -> Result<(ClassRows, std::ops::Range<usize>)> {
    let sources = Sources::load(&crate::zoo::dir().join("data"))?;
    let (task, (data, labels)) = match (trained_on, task) {
        (ClassTask::All, None | Some(ClassTask::All)) => bail!(
            "a multi-task model is grafted one task at a time: pass one of {}",
            ClassTask::SINGLE.map(|t| t.name()).join(", ")
        ),
        (ClassTask::All, Some(t)) => (t, multi_task_view(t, &sources)),
        (t, Some(asked)) if asked != t => {
            bail!(
                "the model was fine-tuned on {}, not {}",
                t.name(),
                asked.name()
            )
        }
        (t, _) => {
            let d = class_data(t, &sources);
            let n = d.labels.len();
            (t, (d, 0..n))
        }
    };
    let mut train = data.train;
    train.shuffle(&mut StdRng::seed_from_u64(SPLIT_SEED));
    let val = train.split_off(train.len().saturating_sub(VAL_ROWS));
    let rows = TaskRows {
        task: task.name().to_string(),
        train,
        val,
        test: data.eval,
        ood: data.ood,
    };
    Ok((rows, labels))
}

/// The rows of a classification task.
pub type ClassRows = TaskRows<(String, usize)>;
/// Each (sparsity, search step) of the learned masks of a run.
type Steps = Vec<(f64, LearnStep)>;

/// Training rows a decoder task draws (fresh examples from the task's generators).
const DECODER_TRAIN_ROWS: usize = 2000;

/// The rows of a decoder text task: drawn training examples (validation among them, from a
/// seed no zoo recipe uses) and the zoo's held-out set. No shifted set.
pub fn decoder_rows(task: TextTask) -> Result<TaskRows<Example>> {
    let mut ctx = crate::zoo::specs::EvalContext::new()?;
    let tasks = ctx.text_tasks();
    let mut rng = StdRng::seed_from_u64(SPLIT_SEED);
    let mut train: Vec<Example> = (0..DECODER_TRAIN_ROWS + VAL_ROWS)
        .map(|_| tasks.sample_train(task, &mut rng))
        .collect();
    let val = train.split_off(DECODER_TRAIN_ROWS);
    Ok(TaskRows {
        task: task.name().to_string(),
        train,
        val,
        test: tasks.eval_set(task).to_vec(),
        ood: Vec::new(),
    })
}

/// A sparsity as a short percentage (`0.01%`).
pub fn percent(sparsity: f64) -> String {
    let p = sparsity * 100.0;
    if p == 0.0 {
        "0%".to_string()
    } else if p >= 1.0 {
        format!("{p:.0}%")
    } else {
        format!("{}%", format!("{p:.5}").trim_end_matches('0'))
    }
}

/// `row` with the scores of the model as it is set now, and the time since `started`.
fn scored<M: Graftable>(
    model: &M,
    rows: &TaskRows<M::Row>,
    eval: bool,
    row: GraftRow,
    started: Instant,
) -> Result<GraftRow> {
    let score = |set: &[M::Row]| -> Result<Option<SetScore>> {
        Ok(if eval && !set.is_empty() {
            Some(model.score(set)?)
        } else {
            None
        })
    };
    Ok(GraftRow {
        val_accuracy: model.accuracy(&rows.val)?,
        test: score(&rows.test)?,
        ood: score(&rows.ood)?,
        seconds: started.elapsed().as_secs_f64(),
        ..row
    })
}

impl GraftRow {
    /// A row before scoring.
    fn new(label: &str, method: Option<GraftMethod>, sparsity: f64, kept: usize) -> Self {
        Self {
            label: label.to_string(),
            method,
            sparsity,
            kept,
            val_accuracy: 0.0,
            test: None,
            ood: None,
            seconds: 0.0,
            densities: Vec::new(),
            out: None,
        }
    }
}

/// A fine-tune ready to graft, of either family, with its task rows.
enum Family {
    Encoder(Box<EncoderGraft>, ClassRows),
    Decoder(Box<DecoderGraft>, TaskRows<Example>),
}

struct Loaded {
    finetuned: PathBuf,
    base: PathBuf,
    family: Family,
}

fn load(
    request: &GraftRequest,
    on_build: &mut dyn FnMut(crate::zoo::BuildEvent) -> Result<()>,
) -> Result<Loaded> {
    let finetuned = crate::zoo::resolve(&request.finetuned, on_build)?;
    let spec = crate::zoo::specs::spec(&request.finetuned).ok();
    let base_name = match &request.base {
        Some(b) => b.clone(),
        None => spec
            .as_ref()
            .and_then(|s| s.base)
            .map(String::from)
            .with_context(|| {
                format!(
                    "{}: give the pretrained model it was fine-tuned from",
                    request.finetuned
                )
            })?,
    };
    let base = crate::zoo::resolve(&base_name, on_build)?;
    let family = match spec.map(|s| s.recipe) {
        Some(crate::zoo::specs::Recipe::Decoder(r)) => {
            let [task] = r.tasks[..] else {
                bail!(
                    "{}: grafting takes single-task decoders (this one has {} tasks)",
                    request.finetuned,
                    r.tasks.len()
                );
            };
            let model = DecoderGraft::load(&base, &finetuned, task)?;
            Family::Decoder(Box::new(model), decoder_rows(task)?)
        }
        _ => {
            let (rows, labels) = task_rows(task_of(&finetuned)?, request.task)?;
            let model = EncoderGraft::load(&base, &finetuned, Some(labels))?;
            Family::Encoder(Box::new(model), rows)
        }
    };
    Ok(Loaded {
        finetuned,
        base,
        family,
    })
}

/// Sets the model to the graft of `mask` (DARE's survivors rescaled by 1/keep).
fn apply<M: Graftable>(model: &M, mask: &Mask, method: GraftMethod, sparsity: f64) -> Result<()> {
    if method == GraftMethod::Dare {
        let scale = 1.0 / sparsity as f32;
        model.set(&|t, i| if mask.tensors[t].get(i) { scale } else { 0.0 })
    } else {
        model.set_mask(mask)
    }
}

/// Writes `mask.safetensors` and the grafted model (`grafted/`, the model as it is set) into
/// `dir`, each atomically.
fn write_graft<M: Graftable>(model: &M, mask: &Mask, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    mask.save(&dir.join("mask.safetensors"))?;
    model.save(&dir.join("grafted"))
}

/// Runs the request: reference rows first (fine-tune, pretrained blocks), then one graft per
/// (sparsity, method). `on` sees every update and stops the run by returning an error.
pub fn run(
    request: &GraftRequest,
    on_build: &mut dyn FnMut(crate::zoo::BuildEvent) -> Result<()>,
    on: &mut dyn FnMut(GraftUpdate) -> Result<()>,
) -> Result<GraftOutcome> {
    let Loaded {
        finetuned,
        base,
        family,
    } = load(request, on_build)?;
    let provenance = [
        ("finetuned".to_string(), finetuned.display().to_string()),
        ("base".to_string(), base.display().to_string()),
    ];
    let (task, eligible, (rows, steps)) = match &family {
        Family::Encoder(m, rows) => (
            rows.task.clone(),
            m.numel(),
            graft_all(&**m, rows, request, &provenance, on)?,
        ),
        Family::Decoder(m, rows) => (
            rows.task.clone(),
            m.numel(),
            graft_all(&**m, rows, request, &provenance, on)?,
        ),
    };
    Ok(GraftOutcome {
        finetuned,
        base,
        task,
        eligible,
        rows,
        steps,
    })
}

/// The rows of one request on a loaded model: references, then each (sparsity, method).
fn graft_all<M: Graftable>(
    model: &M,
    rows: &TaskRows<M::Row>,
    request: &GraftRequest,
    provenance: &[(String, String)],
    on: &mut dyn FnMut(GraftUpdate) -> Result<()>,
) -> Result<(Vec<GraftRow>, Steps)> {
    let numel = model.numel();
    let mut out_rows = Vec::new();
    let mut steps = Vec::new();
    let emit = |row: GraftRow,
                out_rows: &mut Vec<GraftRow>,
                on: &mut dyn FnMut(GraftUpdate) -> Result<()>| {
        out_rows.push(row.clone());
        on(GraftUpdate::Row(row))
    };

    let t = Instant::now();
    model.set(&|_, _| 1.0)?;
    let row = GraftRow::new("fine-tuned", None, 1.0, numel);
    let row = scored(model, rows, request.eval, row, t)?;
    emit(row, &mut out_rows, on)?;
    let t = Instant::now();
    model.set(&|_, _| 0.0)?;
    let row = GraftRow::new("no graft", None, 0.0, 0);
    let row = scored(model, rows, request.eval, row, t)?;
    emit(row, &mut out_rows, on)?;

    let names = model.shapes();
    for &sparsity in &request.sparsities {
        anyhow::ensure!(
            sparsity > 0.0 && sparsity <= 1.0,
            "sparsity {sparsity}: a kept fraction in (0, 1]"
        );
        let k = kept_count(sparsity, numel);
        for &method in &request.methods {
            let t = Instant::now();
            let seed = request.learn.seed;
            let mut mask = match method {
                GraftMethod::Learned => learn_mask(
                    model,
                    &rows.train,
                    &rows.val,
                    sparsity,
                    &request.learn,
                    &mut |step| {
                        steps.push((sparsity, *step));
                        on(GraftUpdate::Step {
                            sparsity,
                            step: *step,
                        })
                    },
                )?,
                GraftMethod::Topk => {
                    let deltas: Vec<&[f32]> = model
                        .eligible()
                        .iter()
                        .map(|e| e.delta.as_slice())
                        .collect();
                    top_k(&names, &deltas, k)
                }
                GraftMethod::Random => random_k(&names, k, seed),
                GraftMethod::Dare => dare(&names, sparsity, seed),
            };
            apply(model, &mask, method, sparsity)?;
            let row = GraftRow::new(method.name(), Some(method), sparsity, mask.count());
            let mut row = scored(model, rows, request.eval, row, t)?;
            row.densities = mask.densities(|n| model.place(n));
            mask.meta.extend(provenance.iter().cloned());
            mask.meta.extend([
                ("task".to_string(), rows.task.clone()),
                ("method".to_string(), method.name().to_string()),
                ("sparsity".to_string(), sparsity.to_string()),
            ]);
            if let Some(dir) = &request.out {
                let dir = dir.join(format!("{}-{}", method.name(), percent(sparsity)));
                write_graft(model, &mask, &dir)?;
                row.out = Some(dir);
            }
            let index = out_rows.len();
            emit(row, &mut out_rows, on)?;
            on(GraftUpdate::Mask(index, mask))?;
        }
    }
    Ok((out_rows, steps))
}

fn forward_updates(ctx: &JobCtx<GraftUpdate>, update: GraftUpdate) -> Result<()> {
    ctx.check()?;
    match &update {
        GraftUpdate::Row(r) => ctx.log(format!(
            "{} {}: validation accuracy {:.3}",
            r.label,
            percent(r.sparsity),
            r.val_accuracy
        )),
        GraftUpdate::Step { sparsity, step } => ctx.progress(
            Some(step.step as f32 / step.total as f32),
            format!(
                "{}: step {}/{} · loss {:.3} · validation {:.3}",
                percent(*sparsity),
                step.step,
                step.total,
                step.loss,
                step.val_accuracy
            ),
        ),
        GraftUpdate::Mask(..) => {}
    }
    ctx.send(update);
    Ok(())
}

pub fn spawn_graft(
    board: &JobBoard,
    request: GraftRequest,
) -> JobHandle<GraftUpdate, GraftOutcome> {
    let spec = JobSpec {
        kind: "graft".into(),
        title: format!("graft {}", request.finetuned),
        inputs: serde_json::to_value(&request).unwrap_or_default(),
        seed: Some(request.learn.seed),
    };
    board.spawn(spec, move |ctx| {
        let mut on_build = build_progress(ctx);
        run(&request, &mut on_build, &mut |u| forward_updates(ctx, u))
    })
}

/// Writes a mask made earlier (`row` says by which method, at which sparsity) and its grafted
/// model into `out`; a mask over another model's tensors is refused.
pub fn export(
    request: &GraftRequest,
    mask: &Mask,
    row: &GraftRow,
    out: &Path,
    on_build: &mut dyn FnMut(crate::zoo::BuildEvent) -> Result<()>,
) -> Result<()> {
    let method = row.method.context("only grafts can be exported")?;
    fn write<M: Graftable>(
        m: &M,
        mask: &Mask,
        method: GraftMethod,
        s: f64,
        out: &Path,
    ) -> Result<()> {
        mask.check_shapes(&m.shapes(), out)?;
        apply(m, mask, method, s)?;
        write_graft(m, mask, out)
    }
    match &load(request, on_build)?.family {
        Family::Encoder(m, _) => write(&**m, mask, method, row.sparsity, out),
        Family::Decoder(m, _) => write(&**m, mask, method, row.sparsity, out),
    }
}

pub fn spawn_export(
    board: &JobBoard,
    request: GraftRequest,
    mask: Mask,
    row: GraftRow,
    out: PathBuf,
) -> JobHandle<(), PathBuf> {
    let spec = JobSpec {
        kind: "graft-export".into(),
        title: format!("export graft of {} to {}", request.finetuned, out.display()),
        inputs: serde_json::to_value(&request).unwrap_or_default(),
        seed: None,
    };
    board.spawn(spec, move |ctx| {
        let mut on_build = build_progress(ctx);
        export(&request, &mask, &row, &out, &mut on_build)?;
        Ok(out)
    })
}

/// `overlap[i][j] = |γi ∩ γj| / |γj|` of masks over one model.
pub fn overlap_matrix(masks: &[&Mask]) -> Result<Vec<Vec<f64>>> {
    masks
        .iter()
        .map(|a| masks.iter().map(|b| a.overlap(b)).collect())
        .collect()
}
