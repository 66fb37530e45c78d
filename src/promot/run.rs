//! The three methods as one job, shared by the CLI and the page:
//! - **fine-tune**: every weight on the task (the paper's standard fine-tuning);
//! - **prompt**: a soft prompt alone, the model frozen;
//! - **ProMoT**: that prompt first, then every weight with the prompt prepended and frozen.
//!
//! Each run writes its folder: the training data, the soft prompt, the tuned model (large, not
//! shipped) and `result.json`, the target accuracy and the in-context suite as scored by our
//! runtime. The task is asked with the soft prompt; the suite without it, as the paper does.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::icl::{self, IclReport, IclTask, DEFAULT_SHOTS};
use super::tasks::{write_jsonl, Labelled, PromotTask};
use crate::data::Sources;
use crate::jobs::{JobBoard, JobCtx, JobHandle, JobSpec, Report};
use crate::lm::chat::Message;
use crate::lm::soft_prompt::FILE as PROMPT_FILE;
use crate::lm::{LanguageModel, SoftPrompt};
use crate::train::finetune::{finetune, gguf_beside, FinetuneRequest, FinetuneStep, Method};
use crate::train::pretrained::{write_gguf, GgufType, Pretrained};

crate::named_enum! {
    "ProMoT method";
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum PromotMethod {
        /// No training: the base model as shipped (dequantised as the others are).
        Base = "base",
        /// Standard fine-tuning of every weight.
        Finetune = "finetune",
        /// Prompt tuning: a soft prompt, the model frozen.
        Prompt = "prompt",
        /// ProMoT: the soft prompt first, then every weight with the prompt frozen in front.
        Promot = "promot",
    }
}

impl PromotMethod {
    /// Whether the method trains a soft prompt (its first stage).
    pub fn tunes_prompt(self) -> bool {
        matches!(self, PromotMethod::Prompt | PromotMethod::Promot)
    }

    /// Whether the method trains the model's weights.
    pub fn tunes_model(self) -> bool {
        matches!(self, PromotMethod::Finetune | PromotMethod::Promot)
    }
}

/// The tuned model's folder inside a run's folder.
const MODEL_DIR: &str = "model";

/// A run's scores, in its folder.
pub const RESULT_FILE: &str = "result.json";

/// Where the shipped results live: `assets/promot/`.
pub fn dir() -> PathBuf {
    crate::assets::dir().join("promot")
}

/// A run's folder under `root` (the shipped results: [`dir`]).
pub fn run_dir(root: &Path, task: PromotTask, method: PromotMethod) -> PathBuf {
    root.join(task.name()).join(method.name())
}

/// The in-context tasks every run is scored on.
pub fn suite() -> Vec<IclTask> {
    IclTask::ALL.to_vec()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PromotRequest {
    /// GGUF or Hugging Face folder of the base model (default: the shipped SmolLM2).
    pub model: PathBuf,
    pub task: PromotTask,
    pub method: PromotMethod,
    /// Model-tuning steps (fine-tune, ProMoT's second stage).
    pub steps: usize,
    /// Prompt-tuning steps (prompt, ProMoT's first stage).
    pub prompt_steps: usize,
    pub prompt_len: usize,
    pub model_lr: f64,
    pub prompt_lr: f64,
    pub batch: usize,
    /// Shots per in-context question.
    pub shots: usize,
    /// The run's folder.
    pub out: PathBuf,
    pub seed: u64,
}

impl PromotRequest {
    /// The paper's schedule scaled to 2 CPU cores: prompt steps to model steps 2 : 1 (the
    /// paper's 5000 : 1000 at a tenth of a run's budget), a prompt of 20 vectors (the paper's
    /// 100 would triple the cost of a step here); batch 8; Adam at
    /// 3e-2 for the prompt and 5e-5 for the model (the paper's Adafactor rates, 0.2 and 1e-3,
    /// are relative step sizes that Adam does not share).
    pub fn new(task: PromotTask, method: PromotMethod) -> Self {
        Self {
            model: crate::assets::default_model(),
            task,
            method,
            steps: 40,
            prompt_steps: 80,
            prompt_len: 20,
            model_lr: 5e-5,
            prompt_lr: 3e-2,
            batch: 8,
            shots: DEFAULT_SHOTS,
            out: run_dir(&dir(), task, method),
            seed: 0,
        }
    }
}

impl PromotRequest {
    /// The fine-tuner's request for one stage (`Prompt` or `Full`) on `data`: that stage's
    /// steps and rate, this run's batch and seed, one checkpoint at the end.
    fn stage(&self, data: &Path, method: Method) -> FinetuneRequest {
        let (steps, lr) = match method {
            Method::Prompt => (self.prompt_steps, self.prompt_lr),
            _ => (self.steps, self.model_lr),
        };
        let mut r = FinetuneRequest::new(self.model.clone(), data.to_path_buf(), method);
        (r.steps, r.lr, r.batch, r.seed, r.save_every) = (steps, lr, self.batch, self.seed, steps);
        r
    }
}

/// The tuned weights of a run's folder as they are scored and chatted with: the Q8_0 export
/// of a GGUF base, else the Hugging Face folder; `None` when neither was built.
pub fn tuned_model(run: &Path) -> Option<PathBuf> {
    let folder = run.join(MODEL_DIR);
    [gguf_beside(&folder, GgufType::Q8_0), folder]
        .into_iter()
        .find(|p| p.exists())
}

/// One training step of a stage.
#[derive(Debug, Clone)]
pub struct PromotStep {
    /// `prompt` (prompt tuning) or `model` (model tuning).
    pub stage: Stage,
    pub step: FinetuneStep,
}

crate::named_enum! {
    "stage";
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum Stage {
        /// Prompt tuning, the model frozen.
        Prompt = "prompt",
        /// Model tuning.
        Model = "model",
    }
}

/// The target task's held-out accuracy and the answers given.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetScore {
    pub accuracy: f64,
    pub answers: Vec<(Labelled, String)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PromotOutcome {
    pub request: PromotRequest,
    pub prompt_losses: Vec<f32>,
    pub model_losses: Vec<f32>,
    /// Seconds per training step of each stage run.
    pub prompt_step_seconds: Option<f64>,
    pub model_step_seconds: Option<f64>,
    pub seconds: f64,
    pub target: TargetScore,
    /// The in-context suite, asked without the soft prompt.
    pub icl: IclReport,
}

impl Report for PromotOutcome {
    fn metrics(&self) -> serde_json::Value {
        json!({
            "target_accuracy": self.target.accuracy,
            "icl_mean": self.icl.mean,
            "specialised": self.icl.specialised,
            "seconds": self.seconds,
        })
    }
    fn outputs(&self) -> serde_json::Value {
        json!({ "out": self.request.out })
    }
}

impl PromotOutcome {
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: not a ProMoT result", path.display()))
    }
}

/// The held-out questions of the task answered by `model` (after `prompt`, if any).
pub fn target_score(
    model: &Arc<LanguageModel>,
    prompt: Option<&Arc<SoftPrompt>>,
    eval: &[Labelled],
) -> Result<TargetScore> {
    let prompts = eval
        .iter()
        .map(|r| model.chat_prompt(&[Message::new("user", &r.input)]))
        .collect::<Result<Vec<_>, _>>()?;
    let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let got = crate::eval::decoder::greedy_answers(model, prompt, &refs, icl::MAX_NEW)?;
    let hits = eval
        .iter()
        .zip(&got)
        .filter(|(r, g)| icl::correct(g, &r.label))
        .count();
    Ok(TargetScore {
        accuracy: hits as f64 / eval.len().max(1) as f64,
        answers: eval.iter().cloned().zip(got).collect(),
    })
}

fn sources() -> Result<Sources> {
    Sources::load(&crate::zoo::dir().join("data"))
}

/// Trains one stage through the fine-tuner, reporting its steps as `stage`.
fn stage(
    request: &FinetuneRequest,
    stage: Stage,
    on_stage: &mut dyn FnMut(&str) -> Result<()>,
    on_step: &mut dyn FnMut(PromotStep) -> Result<()>,
) -> Result<(Vec<f32>, f64)> {
    let outcome = finetune(request, on_stage, &mut |step| {
        on_step(PromotStep { stage, step })
    })?;
    let per_step = outcome.seconds / outcome.losses.len().max(1) as f64;
    Ok((outcome.losses, per_step))
}

/// Runs the method, scores it and writes `result.json` in the run's folder.
pub fn promot(
    request: &PromotRequest,
    on_stage: &mut dyn FnMut(&str) -> Result<()>,
    on_step: &mut dyn FnMut(PromotStep) -> Result<()>,
) -> Result<PromotOutcome> {
    let started = Instant::now();
    let sources = sources()?;
    let data = request.task.data(&sources);
    std::fs::create_dir_all(&request.out)
        .with_context(|| format!("{}: cannot create", request.out.display()))?;
    let train_file = request.out.join("train.jsonl");
    if request.method != PromotMethod::Base {
        write_jsonl(&data.train, &train_file)?;
    }
    let prompt_file = request.out.join(PROMPT_FILE);
    let model_dir = request.out.join(MODEL_DIR);
    let from_gguf = request.model.is_file();
    let scratch = crate::fs::ScratchDir::new()?;
    let mut prompt_losses = Vec::new();
    let mut prompt_seconds = None;
    if request.method.tunes_prompt() {
        if let Some(done) = same_prompt_stage(request) {
            on_stage("reusing the soft prompt of the prompt-tuning run")?;
            crate::fs::write_atomic(
                &prompt_file,
                &std::fs::read(done.request.out.join(PROMPT_FILE))?,
            )?;
            prompt_losses = done.prompt_losses;
            prompt_seconds = done.prompt_step_seconds;
        } else {
            let mut r = request.stage(&train_file, Method::Prompt);
            r.prompt_len = request.prompt_len;
            let folder = scratch.path().join("prompt");
            r.out = Some(folder.clone());
            let (losses, per_step) = stage(&r, Stage::Prompt, on_stage, on_step)?;
            crate::fs::write_atomic(&prompt_file, &std::fs::read(folder.join(PROMPT_FILE))?)?;
            prompt_losses = losses;
            prompt_seconds = Some(per_step);
        }
    }
    let mut model_losses = Vec::new();
    let mut model_seconds = None;
    let tuned = if request.method.tunes_model() {
        let mut r = request.stage(&train_file, Method::Full);
        r.soft_prompt = request.method.tunes_prompt().then(|| prompt_file.clone());
        r.out = Some(model_dir.clone());
        r.gguf = from_gguf.then_some(GgufType::Q8_0);
        let (losses, per_step) = stage(&r, Stage::Model, on_stage, on_step)?;
        model_losses = losses;
        model_seconds = Some(per_step);
        tuned_model(&request.out).context("the tuned model was not written")?
    } else {
        base_for_eval(&request.model, on_stage)?
    };
    on_stage("loading the tuned model")?;
    let lm = Arc::new(LanguageModel::load(&tuned)?);
    let prompt = if request.method.tunes_prompt() {
        Some(Arc::new(SoftPrompt::load(&prompt_file)?))
    } else {
        None
    };
    on_stage("asking the target task")?;
    let target = target_score(&lm, prompt.as_ref(), &data.eval)?;
    let icl = icl::evaluate(
        &lm,
        None,
        &sources,
        &suite(),
        request.shots,
        Some(&data.labels),
        &mut |t| on_stage(&format!("in-context suite: {t}")),
    )?;
    let outcome = PromotOutcome {
        request: request.clone(),
        prompt_losses,
        model_losses,
        prompt_step_seconds: prompt_seconds,
        model_step_seconds: model_seconds,
        seconds: started.elapsed().as_secs_f64(),
        target,
        icl,
    };
    crate::fs::write_atomic(
        &request.out.join(RESULT_FILE),
        serde_json::to_string_pretty(&outcome)?.as_bytes(),
    )?;
    Ok(outcome)
}

/// The finished prompt-tuning run beside this one (`../prompt/`) whose soft prompt ProMoT's
/// first stage would train again (same model, data, prompt schedule and seed), if there is one.
fn same_prompt_stage(request: &PromotRequest) -> Option<PromotOutcome> {
    let sibling = request.out.with_file_name(PromotMethod::Prompt.name());
    let done = PromotOutcome::read(&sibling.join(RESULT_FILE)).ok()?;
    let d = &done.request;
    let same = d.method == PromotMethod::Prompt
        && d.model == request.model
        && d.task == request.task
        && d.prompt_steps == request.prompt_steps
        && d.prompt_len == request.prompt_len
        && d.prompt_lr == request.prompt_lr
        && d.batch == request.batch
        && d.seed == request.seed
        && d.out == sibling
        && d.out.join(PROMPT_FILE).exists();
    same.then_some(done)
}

/// The base model as the tuned ones are scored: a GGUF base is dequantised and written again
/// as Q8_0 (once, `assets/promot/<stem>-q8_0.gguf`), as every tuned model is exported, so the
/// suite compares weights, not quantisations. A folder is used as it is.
pub fn base_for_eval(
    model: &Path,
    on_stage: &mut dyn FnMut(&str) -> Result<()>,
) -> Result<PathBuf> {
    if model.is_dir() {
        return Ok(model.to_path_buf());
    }
    let stem = model.file_stem().unwrap_or_default().to_string_lossy();
    let out = dir().join(format!("{stem}-q8_0.gguf"));
    if !out.exists() {
        on_stage("writing the base model as Q8_0")?;
        let frozen = Pretrained::load(model)?.frozen_model()?;
        write_gguf(&out, &frozen, model, GgufType::Q8_0)?;
    }
    Ok(out)
}

/// What `icl-eval` asks: a model, maybe a soft prompt, and the task whose labels count as
/// format specialisation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IclRequest {
    pub model: PathBuf,
    pub soft_prompt: Option<PathBuf>,
    pub shots: usize,
    pub tasks: Vec<IclTask>,
    pub labels_of: Option<PromotTask>,
}

impl Report for IclReport {
    fn metrics(&self) -> serde_json::Value {
        json!({ "mean": self.mean, "specialised": self.specialised })
    }
    fn outputs(&self) -> serde_json::Value {
        json!({ "tasks": self.tasks })
    }
}

/// Scores a model on the in-context suite.
pub fn icl_eval(
    request: &IclRequest,
    on_stage: &mut dyn FnMut(&str) -> Result<()>,
) -> Result<IclReport> {
    let sources = sources()?;
    on_stage("loading the model")?;
    let lm = Arc::new(LanguageModel::load(&request.model)?);
    let prompt = match &request.soft_prompt {
        Some(p) => Some(Arc::new(SoftPrompt::load(p)?)),
        None => None,
    };
    let labels = request.labels_of.map(|t| t.data(&sources).labels);
    icl::evaluate(
        &lm,
        prompt.as_ref(),
        &sources,
        &request.tasks,
        request.shots,
        labels.as_deref(),
        &mut |t| on_stage(&format!("in-context suite: {t}")),
    )
}

pub fn spawn_icl_eval(board: &JobBoard, request: IclRequest) -> JobHandle<(), IclReport> {
    let spec = JobSpec {
        kind: "icl-eval".into(),
        title: format!(
            "in-context suite of {}",
            request
                .model
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ),
        inputs: serde_json::to_value(&request).unwrap_or_default(),
        seed: None,
    };
    board.spawn(spec, move |ctx: &JobCtx<()>| {
        icl_eval(&request, &mut |s| ctx.stage(s))
    })
}

/// Every training step arrives as a partial result.
pub fn spawn_promot(
    board: &JobBoard,
    request: PromotRequest,
) -> JobHandle<PromotStep, PromotOutcome> {
    let spec = JobSpec {
        kind: "promot".into(),
        title: format!("{} on {}", request.method, request.task),
        inputs: serde_json::to_value(&request).unwrap_or_default(),
        seed: Some(request.seed),
    };
    board.spawn(spec, move |ctx: &JobCtx<PromotStep>| {
        let mut on_stage = |s: &str| ctx.stage(s);
        promot(&request, &mut on_stage, &mut |s| {
            ctx.check()?;
            let r = &s.step.report;
            ctx.progress(
                Some(r.step as f32 / r.total as f32),
                format!(
                    "{} step {}/{} · loss {:.3} · {:.0} tok/s",
                    s.stage, r.step, r.total, r.loss, s.step.tokens_per_second
                ),
            );
            ctx.send(s);
            Ok(())
        })
    })
}
