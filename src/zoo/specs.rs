//! What the zoo holds (recipes), how each model is scored, and the build that trains and
//! scores them in dependency order.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::decoder::{self, DecoderRecipe};
use super::encoder::{self, EncoderRecipe, SentimentSentences};
use super::manifest::{Manifest, ModelEntry};
use super::minilm::{self, MinilmRecipe};
use super::vision::{self, VitRecipe};
use crate::checkpoint::stats::{tensor_deltas, total, TensorStats};
use crate::data::classify::{class_data, ClassTask};
use crate::data::{Sources, TextTask, TextTasks};
use crate::eval::classifier::{bert_eval, eval_scenes, retrieval_eval, vit_eval, zero_shot_eval};
use crate::eval::decoder::{exact_match_eval, perplexity_eval};
use crate::lm::LanguageModel;
use crate::train::{Pull, StepReport};

/// Held-out scenes per ViT evaluation.
const VIT_EVAL_SCENES: usize = 600;
/// Mixture rows for the base decoder's perplexity.
const PERPLEXITY_ROWS: usize = 200;
/// Loss-curve points kept in the manifest per model.
const CURVE_POINTS: usize = 100;
pub const BASE_DECODER: &str = "tiny-base";
pub const MINILM: &str = "minilm";

#[derive(Debug, Clone)]
pub enum Recipe {
    Decoder(DecoderRecipe),
    Vit(VitRecipe),
    Minilm(MinilmRecipe),
    Encoder(EncoderRecipe),
    /// Shipped as downloaded (the pretrained MiniLM).
    Pretrained,
}

#[derive(Debug, Clone)]
pub struct ZooSpec {
    pub name: &'static str,
    pub base: Option<&'static str>,
    pub recipe: Recipe,
    /// Committed to the repository (false: built on first use, too big to commit).
    pub shipped: bool,
}

impl ZooSpec {
    pub fn architecture(&self) -> &'static str {
        match self.recipe {
            Recipe::Decoder(_) => "llama",
            Recipe::Vit(_) => "vit",
            Recipe::Minilm(_) | Recipe::Encoder(_) | Recipe::Pretrained => "bert",
        }
    }

    /// The folder, relative to the assets folder.
    pub fn rel_path(&self) -> String {
        match self.recipe {
            Recipe::Pretrained => "models/all-MiniLM-L6-v2".into(),
            _ => format!("zoo/{}", self.name),
        }
    }

    pub fn path(&self) -> PathBuf {
        crate::assets::dir().join(self.rel_path())
    }

    fn recipe_json(&self) -> serde_json::Value {
        match &self.recipe {
            Recipe::Decoder(r) => serde_json::to_value(r),
            Recipe::Vit(r) => serde_json::to_value(r),
            Recipe::Minilm(r) => serde_json::to_value(r),
            Recipe::Encoder(r) => serde_json::to_value(r),
            Recipe::Pretrained => Ok(serde_json::json!("sentence-transformers/all-MiniLM-L6-v2")),
        }
        .unwrap_or_default()
    }
}

/// AdamR's λ. The pull per step is λ·lr/√mean(v̂); at our learning rate (3e-3) and gradient
/// scale (√mean(v̂) ≈ 1e-3) λ = 1e-3 gives a time constant of a few hundred steps, shorter than
/// the run: deltas shrink but the task is still learned. λ = 0.1 (tried first) pulled 30% of
/// the delta back every step and the add fine-tune stayed at 3%.
pub const ADAMR_LAMBDA: f64 = 1e-3;

fn finetune(tasks: Vec<TextTask>, steps: usize, pull: Pull, seed: u64) -> Recipe {
    Recipe::Decoder(DecoderRecipe {
        tasks,
        steps,
        batch: 32,
        peak_lr: 3e-3,
        pull,
        seed,
    })
}

/// Pre-training of a base decoder on the mixture.
fn pretrain(seed: u64) -> Recipe {
    Recipe::Decoder(DecoderRecipe {
        tasks: vec![],
        steps: 1000,
        batch: 32,
        peak_lr: 3e-3,
        pull: Pull::None,
        seed,
    })
}

fn vit(hidden: usize, seed: u64) -> Recipe {
    vit_steps(hidden, 2000, seed)
}

fn vit_steps(hidden: usize, steps: usize, seed: u64) -> Recipe {
    Recipe::Vit(VitRecipe {
        shape: vision::shape(hidden),
        steps,
        batch: 64,
        peak_lr: 2e-3,
        weight_decay: 0.05,
        seed,
    })
}

/// A BERT-style encoder trained from scratch on the sentiment-strength sentences.
fn encoder(seed: u64) -> Recipe {
    Recipe::Encoder(EncoderRecipe {
        hidden: 64,
        layers: 4,
        heads: 4,
        steps: 3000,
        batch: 32,
        peak_lr: 1e-3,
        weight_decay: 0.01,
        seed,
    })
}

fn minilm_ft(task: ClassTask, steps: usize, seed: u64) -> Recipe {
    Recipe::Minilm(MinilmRecipe {
        task,
        steps,
        batch: 32,
        peak_lr: 5e-5,
        pull: Pull::None,
        seed,
    })
}

/// Every zoo model, bases before the models built on them.
pub fn specs() -> Vec<ZooSpec> {
    use TextTask::*;
    let adamr = Pull::TowardPretrained {
        lambda: ADAMR_LAMBDA,
    };
    let d = |name, recipe| ZooSpec {
        name,
        base: Some(BASE_DECODER),
        recipe,
        shipped: true,
    };
    // MiniLM fine-tunes are 90 MB each: built on first use, not shipped.
    let m = |name, recipe| ZooSpec {
        name,
        base: Some(MINILM),
        recipe,
        shipped: false,
    };
    vec![
        ZooSpec {
            name: BASE_DECODER,
            base: None,
            recipe: pretrain(1),
            shipped: true,
        },
        // The same recipe from another seed (initialisation and data order): the second parent
        // of a decoder fusion, trained independently of tiny-base.
        ZooSpec {
            name: "tiny-base-b",
            base: None,
            recipe: pretrain(21),
            shipped: true,
        },
        d("tiny-add", finetune(vec![Add], 1000, Pull::None, 2)),
        d("tiny-reverse", finetune(vec![Reverse], 800, Pull::None, 3)),
        d(
            "tiny-sentiment",
            finetune(vec![Sentiment], 400, Pull::None, 4),
        ),
        d("tiny-kgqa", finetune(vec![KgQa], 600, Pull::None, 5)),
        d("tiny-add-adamr", finetune(vec![Add], 1000, adamr, 2)),
        d(
            "tiny-sentiment-adamr",
            finetune(vec![Sentiment], 400, adamr, 4),
        ),
        d(
            "tiny-multi",
            finetune(TextTask::ALL.to_vec(), 1000, Pull::None, 6),
        ),
        ZooSpec {
            name: MINILM,
            base: None,
            recipe: Recipe::Pretrained,
            shipped: true,
        },
        m("minilm-sentiment", minilm_ft(ClassTask::Sentiment, 150, 7)),
        m("minilm-continent", minilm_ft(ClassTask::Continent, 150, 8)),
        m("minilm-intensity", minilm_ft(ClassTask::Intensity, 150, 12)),
        m("minilm-size", minilm_ft(ClassTask::Size, 150, 13)),
        m("minilm-all", minilm_ft(ClassTask::All, 300, 14)),
        ZooSpec {
            name: "vit-a",
            base: None,
            recipe: vit(64, 9),
            shipped: true,
        },
        ZooSpec {
            name: "vit-b",
            base: None,
            recipe: vit(64, 10),
            shipped: true,
        },
        ZooSpec {
            name: "vit-narrow",
            base: None,
            recipe: vit(48, 11),
            shipped: true,
        },
        // A third ViT of width 64: fusion of more than two models.
        ZooSpec {
            name: "vit-c",
            base: None,
            recipe: vit(64, 12),
            shipped: true,
        },
        // vit-a's and vit-b's recipes trained four times longer: does the one-shot gap between
        // OT and vanilla fusion appear once the neurons have specialised?
        ZooSpec {
            name: "vit-long-a",
            base: None,
            recipe: vit_steps(64, 8000, 9),
            shipped: true,
        },
        ZooSpec {
            name: "vit-long-b",
            base: None,
            recipe: vit_steps(64, 8000, 10),
            shipped: true,
        },
        // Two BERT-style encoders from scratch, one recipe, two seeds: the encoder fusion pair.
        ZooSpec {
            name: "bert-a",
            base: None,
            recipe: encoder(15),
            shipped: true,
        },
        ZooSpec {
            name: "bert-b",
            base: None,
            recipe: encoder(16),
            shipped: true,
        },
    ]
}

pub fn spec(name: &str) -> Result<ZooSpec> {
    specs()
        .into_iter()
        .find(|s| s.name == name)
        .with_context(|| {
            let names: Vec<&str> = specs().iter().map(|s| s.name).collect();
            format!(
                "no zoo model named {name:?}; the zoo has {}",
                names.join(", ")
            )
        })
}

/// Data and base-model scores shared by the evaluations of one run.
pub struct EvalContext {
    pub sources: Sources,
    tasks: Option<Arc<TextTasks>>,
    base_scores: HashMap<(String, String), f64>,
}

impl EvalContext {
    pub fn new() -> Result<Self> {
        Ok(Self {
            sources: Sources::load(&super::dir().join("data"))?,
            tasks: None,
            base_scores: HashMap::new(),
        })
    }

    pub fn text_tasks(&mut self) -> Arc<TextTasks> {
        self.tasks
            .get_or_insert_with(|| Arc::new(TextTasks::new(self.sources.clone())))
            .clone()
    }

    /// Mixture rows for perplexity, from a generator the training never uses.
    fn perplexity_texts(&mut self) -> Vec<String> {
        decoder::mixture_texts(&self.text_tasks(), decoder::HELD_OUT_SEED, PERPLEXITY_ROWS)
    }
}

/// What a model scored.
#[derive(Debug, Clone)]
pub struct Scores {
    pub task: String,
    pub metric: String,
    pub score: f64,
    pub higher_is_better: bool,
    pub details: BTreeMap<String, f64>,
}

fn load_decoder(dir: &Path) -> Result<Arc<LanguageModel>> {
    Ok(Arc::new(LanguageModel::load(dir)?))
}

/// Exact match on each task, with the answer budget of the task.
fn decoder_task_scores(
    model: &Arc<LanguageModel>,
    tasks: &TextTasks,
    which: &[TextTask],
) -> Result<Vec<f64>> {
    which
        .iter()
        .map(|&t| Ok(exact_match_eval(model, tasks.eval_set(t), t.max_answer_bytes() + 2)?.0))
        .collect()
}

fn task_label(tasks: &[TextTask]) -> String {
    tasks.iter().map(|t| t.name()).collect::<Vec<_>>().join("+")
}

/// Scores the model of `spec` found at `dir` on its task.
pub fn evaluate(spec: &ZooSpec, dir: &Path, ctx: &mut EvalContext) -> Result<Scores> {
    let mut details = BTreeMap::new();
    let scores = match &spec.recipe {
        Recipe::Decoder(r) if r.tasks.is_empty() => {
            let model = load_decoder(dir)?;
            let texts = ctx.perplexity_texts();
            Scores {
                task: "mixture".into(),
                metric: "perplexity".into(),
                score: perplexity_eval(&model, &texts)?,
                higher_is_better: false,
                details,
            }
        }
        Recipe::Decoder(r) => {
            let model = load_decoder(dir)?;
            let tasks = ctx.text_tasks();
            let per_task = decoder_task_scores(&model, &tasks, &r.tasks)?;
            for (t, s) in r.tasks.iter().zip(&per_task) {
                details.insert(format!("exact_match/{}", t.name()), *s);
            }
            Scores {
                task: task_label(&r.tasks),
                metric: if r.tasks.len() > 1 {
                    "mean exact match"
                } else {
                    "exact match"
                }
                .into(),
                score: per_task.iter().sum::<f64>() / per_task.len() as f64,
                higher_is_better: true,
                details,
            }
        }
        Recipe::Vit(_) => {
            let s = vit_eval(dir, &eval_scenes(VIT_EVAL_SCENES))?;
            details.insert("ece".into(), s.ece);
            details.insert("loss".into(), s.loss);
            Scores {
                task: "shapes".into(),
                metric: "accuracy".into(),
                score: s.accuracy,
                higher_is_better: true,
                details,
            }
        }
        Recipe::Minilm(r) => {
            let data = class_data(r.task, &ctx.sources);
            let s = bert_eval(dir, &data.eval)?;
            details.insert("ece".into(), s.ece);
            details.insert("loss".into(), s.loss);
            Scores {
                task: r.task.name().into(),
                metric: "accuracy".into(),
                score: s.accuracy,
                higher_is_better: true,
                details,
            }
        }
        Recipe::Encoder(_) => {
            let s = bert_eval(dir, SentimentSentences::new(&ctx.sources).eval())?;
            details.insert("ece".into(), s.ece);
            details.insert("loss".into(), s.loss);
            Scores {
                task: encoder::TASK.into(),
                metric: "accuracy".into(),
                score: s.accuracy,
                higher_is_better: true,
                details,
            }
        }
        Recipe::Pretrained => {
            let embedder = crate::embed::SentenceEmbedder::load(dir)?;
            let (queries, docs) = capital_retrieval(&ctx.sources);
            Scores {
                task: "capital-retrieval".into(),
                metric: "precision@1".into(),
                score: retrieval_eval(&embedder, &queries, &docs)?,
                higher_is_better: true,
                details,
            }
        }
    };
    Ok(scores)
}

/// Queries "the capital of Peru" against documents "Lima" (one per country).
fn capital_retrieval(sources: &Sources) -> (Vec<String>, Vec<String>) {
    sources
        .countries
        .iter()
        .map(|c| (format!("the capital city of {}", c.name), c.capital.clone()))
        .unzip()
}

/// The base model's score on `spec`'s task, with the same metric (cached per run).
fn base_score(spec: &ZooSpec, ctx: &mut EvalContext) -> Result<Option<f64>> {
    let Some(base_name) = spec.base else {
        return Ok(None);
    };
    let key = (base_name.to_string(), spec.name.to_string());
    if let Some(s) = ctx.base_scores.get(&key) {
        return Ok(Some(*s));
    }
    let base = super::specs::spec(base_name)?;
    let score = match &spec.recipe {
        Recipe::Decoder(r) => {
            let model = load_decoder(&base.path())?;
            let tasks = ctx.text_tasks();
            let s = decoder_task_scores(&model, &tasks, &r.tasks)?;
            s.iter().sum::<f64>() / s.len() as f64
        }
        Recipe::Minilm(r) => {
            let embedder = crate::embed::SentenceEmbedder::load(&base.path())?;
            zero_shot_eval(&embedder, &class_data(r.task, &ctx.sources))?.accuracy
        }
        _ => bail!("{}: no base comparison for this kind of model", spec.name),
    };
    ctx.base_scores.insert(key, score);
    Ok(Some(score))
}

/// What a build reports as it goes.
#[derive(Debug, Clone)]
pub enum BuildEvent {
    Started { name: String, steps: usize },
    Step { name: String, report: StepReport },
    Evaluated { entry: Box<ModelEntry> },
}

impl BuildEvent {
    /// The event as a job's progress line: fraction of the model's steps and what is going on.
    pub fn progress(&self) -> (Option<f32>, String) {
        match self {
            BuildEvent::Started { name, steps } => {
                (Some(0.0), format!("training {name} ({steps} steps)"))
            }
            BuildEvent::Step { name, report } => (
                Some(report.step as f32 / report.total.max(1) as f32),
                format!(
                    "training {name}: step {}/{} loss {:.3}",
                    report.step, report.total, report.loss
                ),
            ),
            BuildEvent::Evaluated { entry } => (
                Some(1.0),
                format!("{}: {} {:.3}", entry.name, entry.metric, entry.score),
            ),
        }
    }
}

fn curve(losses: &[f32]) -> Vec<f32> {
    let every = losses.len().div_ceil(CURVE_POINTS).max(1);
    losses
        .chunks(every)
        .map(|c| c.iter().sum::<f32>() / c.len() as f32)
        .collect()
}

fn parameters(dir: &Path) -> Result<usize> {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).with_context(|| format!("{}: cannot read", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .with_context(|| format!("{}: not a safetensors file", path.display()))?;
    Ok(st
        .tensors()
        .iter()
        .filter(|(name, _)| !name.ends_with("position_ids"))
        .map(|(_, v)| v.shape().iter().product::<usize>())
        .sum())
}

/// Trains `spec` (unless pretrained) and scores it and its base.
pub fn build_one(
    spec: &ZooSpec,
    ctx: &mut EvalContext,
    on: &mut dyn FnMut(BuildEvent) -> Result<()>,
) -> Result<ModelEntry> {
    let out = spec.path();
    let base_dir = spec
        .base
        .map(|b| super::specs::spec(b).map(|s| s.path()))
        .transpose()?;
    let steps = match &spec.recipe {
        Recipe::Decoder(r) => r.steps,
        Recipe::Vit(r) => r.steps,
        Recipe::Minilm(r) => r.steps,
        Recipe::Encoder(r) => r.steps,
        Recipe::Pretrained => 0,
    };
    on(BuildEvent::Started {
        name: spec.name.into(),
        steps,
    })?;
    let name = spec.name.to_string();
    let mut on_step = |report: StepReport| {
        on(BuildEvent::Step {
            name: name.clone(),
            report,
        })
    };
    let started = Instant::now();
    let losses = match &spec.recipe {
        Recipe::Decoder(r) => {
            let tasks = ctx.text_tasks();
            decoder::train(r, &tasks, base_dir.as_deref(), &out, &mut on_step)?
        }
        Recipe::Vit(r) => vision::train(r, &out, &mut on_step)?,
        Recipe::Minilm(r) => {
            let data = class_data(r.task, &ctx.sources);
            let base = base_dir
                .as_deref()
                .context("a MiniLM fine-tune needs its base")?;
            minilm::train(r, &data, base, &out, &mut on_step)?
        }
        Recipe::Encoder(r) => encoder::train(
            r,
            &SentimentSentences::new(&ctx.sources),
            &out,
            &mut on_step,
        )?,
        Recipe::Pretrained => Vec::new(),
    };
    let train_seconds = started.elapsed().as_secs_f64();
    let entry = score_entry(spec, ctx, train_seconds, curve(&losses))?;
    on(BuildEvent::Evaluated {
        entry: Box::new(entry.clone()),
    })?;
    Ok(entry)
}

/// δ of a zoo fine-tune against its zoo base, per tensor.
pub fn deltas(s: &ZooSpec) -> Result<Vec<TensorStats>> {
    let base = s
        .base
        .with_context(|| format!("{} has no base model: it was trained from scratch", s.name))?;
    // The classifiers hold the bare encoder under `bert.`.
    let prefix = if matches!(s.recipe, Recipe::Minilm(_)) {
        "bert."
    } else {
        ""
    };
    tensor_deltas(&spec(base)?.path(), &s.path(), prefix)
}

/// Evaluates the model of `spec` where it lies and fills its manifest entry.
pub fn score_entry(
    spec: &ZooSpec,
    ctx: &mut EvalContext,
    train_seconds: f64,
    loss_curve: Vec<f32>,
) -> Result<ModelEntry> {
    let dir = spec.path();
    let started = Instant::now();
    let mut scores = evaluate(spec, &dir, ctx)?;
    let eval_seconds = started.elapsed().as_secs_f64();
    if spec.base.is_some() {
        let all = total(&deltas(spec)?);
        scores
            .details
            .insert("delta/mean_abs".into(), all.mean_abs_before());
        if let Some(r) = all.rel_norm_before() {
            scores.details.insert("delta/rel_norm".into(), r);
        }
    }
    Ok(ModelEntry {
        name: spec.name.into(),
        path: spec.rel_path(),
        architecture: spec.architecture().into(),
        base: spec.base.map(String::from),
        task: scores.task,
        metric: scores.metric,
        score: scores.score,
        base_score: base_score(spec, ctx)?,
        higher_is_better: scores.higher_is_better,
        parameters: parameters(&dir)?,
        shipped: spec.shipped,
        recipe: spec.recipe_json(),
        train_seconds,
        eval_seconds,
        details: scores.details,
        loss_curve,
    })
}

/// Builds the named models (all when `only` is empty) and updates the manifest after each.
pub fn build(only: &[String], on: &mut dyn FnMut(BuildEvent) -> Result<()>) -> Result<Manifest> {
    let all = specs();
    for name in only {
        spec(name)?;
    }
    let path = super::manifest_path();
    let load = || -> Result<Manifest> {
        let mut manifest = if path.exists() {
            Manifest::load(&path)?
        } else {
            Manifest::default()
        };
        manifest.version = 1;
        manifest.threads = rayon::current_num_threads();
        Ok(manifest)
    };
    let mut manifest = load()?;
    let order: Vec<&str> = all.iter().map(|s| s.name).collect();
    let mut ctx = EvalContext::new()?;
    for spec in all
        .iter()
        .filter(|s| only.is_empty() || only.iter().any(|o| o == s.name))
    {
        let entry = build_one(spec, &mut ctx, on)?;
        // Read again: another build may have recorded its models meanwhile.
        manifest = load()?;
        manifest.upsert(entry, &order);
        manifest.save(&path)?;
    }
    Ok(manifest)
}

/// The folder of zoo model `name`, building it first when it is not there (the MiniLM
/// fine-tunes are too big to commit and are built on first use).
pub fn ensure_built(name: &str, on: &mut dyn FnMut(BuildEvent) -> Result<()>) -> Result<PathBuf> {
    let spec = spec(name)?;
    let dir = spec.path();
    if !dir.join("model.safetensors").exists() && !matches!(spec.recipe, Recipe::Pretrained) {
        build(&[name.to_string()], on)?;
    }
    Ok(dir)
}

/// A zoo model's name becomes its folder (built first if needed, reporting to `on`); an
/// existing path stays a path.
pub fn resolve(
    name_or_path: &str,
    on: &mut dyn FnMut(BuildEvent) -> Result<()>,
) -> Result<PathBuf> {
    let p = PathBuf::from(name_or_path);
    if p.exists() {
        return Ok(p);
    }
    match spec(name_or_path) {
        Ok(s) => ensure_built(s.name, on),
        Err(_) => bail!("{name_or_path}: no such file or folder, and no zoo model of that name"),
    }
}
