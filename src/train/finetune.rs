//! Fine-tuning a language model on chat data as a job: full fine-tuning, LoRA or a soft
//! prompt, SFT loss on the answers, checkpoints written as Hugging Face folders (adapters
//! merged) that the runtime loads. The defaults live in [`FinetuneRequest::new`].

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use candle_core::Tensor;
use candle_nn::VarMap;
use serde::Serialize;
use serde_json::json;

use super::llama::{LoraConfig, TrainLlama};
use super::pretrained::{write_gguf, write_hf_folder, GgufType, Pretrained};
use super::sft::{length_batches, read_jsonl, sft_loss, tokenize, tokenize_raw, Batch, Tokenized};
use super::{Adam, AdamConfig, StepReport};
use crate::jobs::{JobBoard, JobCtx, JobHandle, JobSpec, Report};
use crate::lm::{LanguageModel, SoftPrompt};

crate::named_enum! {
    "method";
    /// What a fine-tune trains.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum Method {
        /// Every weight.
        Full = "full",
        /// Low-rank adapters beside the chosen projections (merged into the weights on export).
        Lora = "lora",
        /// Learnable embeddings put before every input (prompt tuning); the model stays as it is.
        Prompt = "prompt",
    }
}

impl Method {
    /// Adam learning rates that work at this size: small for every weight, larger for
    /// adapters (PEFT's usual 2e-4) and larger still for a few prompt vectors.
    pub fn default_lr(self) -> f64 {
        match self {
            Method::Full => 5e-5,
            Method::Lora => 2e-4,
            Method::Prompt => 3e-2,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FinetuneRequest {
    /// GGUF file or Hugging Face llama/mistral folder.
    pub model: PathBuf,
    pub data: PathBuf,
    /// Held-out examples: their loss before and after.
    pub eval: Option<PathBuf>,
    pub method: Method,
    pub steps: usize,
    pub lr: f64,
    pub batch: usize,
    /// Longest example in tokens (prompt and answer).
    pub seq_len: usize,
    pub lora: LoraConfig,
    /// Soft-prompt length (prompt tuning).
    pub prompt_len: usize,
    /// A soft prompt (`soft_prompt.safetensors`) put before every input: frozen while full or
    /// LoRA tuning trains the model (ProMoT's second stage), the starting point of prompt
    /// tuning. It is saved beside the exported model.
    pub soft_prompt: Option<PathBuf>,
    /// Write the fine-tuned model here (every `save_every` steps and at the end).
    pub out: Option<PathBuf>,
    /// Also write a GGUF of this type beside `out` (`<out>-q8_0.gguf`; needs a GGUF source,
    /// whose tokenizer metadata it copies).
    pub gguf: Option<GgufType>,
    pub save_every: usize,
    pub seed: u64,
    /// Train on prompt and answer as plain text, without the chat template (see
    /// [`super::sft::tokenize_raw`]).
    pub raw: bool,
}

impl FinetuneRequest {
    /// `method` on `data` for 100 steps: batch 8, sequences up to 256 tokens, LoRA rank 8 on
    /// q/k/v/o, 20 prompt vectors, the method's learning rate, a checkpoint every 50 steps.
    pub fn new(model: PathBuf, data: PathBuf, method: Method) -> Self {
        Self {
            model,
            data,
            eval: None,
            method,
            steps: 100,
            lr: method.default_lr(),
            batch: 8,
            seq_len: 256,
            lora: LoraConfig::default(),
            prompt_len: 20,
            soft_prompt: None,
            out: None,
            gguf: None,
            save_every: 50,
            seed: 0,
            raw: false,
        }
    }
}

/// What the job reports after every step.
#[derive(Debug, Clone)]
pub struct FinetuneStep {
    pub report: StepReport,
    /// Training tokens per second so far (prompt and answer, no padding).
    pub tokens_per_second: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FinetuneOutcome {
    pub method: Method,
    pub trainable_parameters: usize,
    pub examples: usize,
    pub losses: Vec<f32>,
    /// Mean SFT loss on the eval set before and after training.
    pub eval_loss: Option<(f32, f32)>,
    pub tokens_per_second: f64,
    pub seconds: f64,
    pub out: Option<PathBuf>,
}

impl Report for FinetuneOutcome {
    fn metrics(&self) -> serde_json::Value {
        json!({
            "first_loss": self.losses.first(),
            "last_loss": self.losses.last(),
            "eval_loss": self.eval_loss,
            "tokens_per_second": self.tokens_per_second,
            "trainable_parameters": self.trainable_parameters,
            "seconds": self.seconds,
            // Speeds differ ~2× between the two, so the record says which ran.
            "matrix_products": super::sgemm::backend().name(),
        })
    }
    fn outputs(&self) -> serde_json::Value {
        json!({ "out": self.out, "losses": self.losses })
    }
}

/// Where `--gguf` writes the export of the folder `out`: `<out>-<type>.gguf` beside it.
pub fn gguf_beside(out: &std::path::Path, t: GgufType) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    out.with_file_name(format!("{name}-{t}.gguf"))
}

/// The model set up for `method`: trainable variables in the returned VarMap.
fn trainable(
    pretrained: &Pretrained,
    lm: &LanguageModel,
    request: &FinetuneRequest,
) -> Result<(TrainLlama, VarMap)> {
    let vars = VarMap::new();
    let given = match &request.soft_prompt {
        Some(path) => {
            let p = SoftPrompt::load(path)?;
            Some(Tensor::from_slice(
                p.rows(),
                (p.len(), p.hidden()),
                &candle_core::Device::Cpu,
            )?)
        }
        None => None,
    };
    let mut model = match request.method {
        Method::Full => pretrained.model(&vars)?,
        Method::Lora => {
            let mut m = pretrained.frozen_model()?;
            m.add_lora(&request.lora, super::seeded_builder(&vars, request.seed))?;
            m
        }
        Method::Prompt => {
            let mut m = pretrained.frozen_model()?;
            let vb = super::seeded_builder(&vars, request.seed);
            match &given {
                Some(rows) => m.learn_soft_prompt(rows, vb)?,
                None => {
                    // Initialised from the embeddings of a neutral instruction, as prompt
                    // tuning does.
                    let init = lm.tokenizer.encode("Answer the question below.", false)?;
                    m.add_soft_prompt(request.prompt_len, &init, vb)?;
                }
            }
            m
        }
    };
    if let (Some(rows), false) = (&given, request.method == Method::Prompt) {
        let path = request
            .soft_prompt
            .as_deref()
            .unwrap_or(std::path::Path::new(""));
        model
            .freeze_soft_prompt(rows)
            .with_context(|| path.display().to_string())?;
    }
    Ok((model, vars))
}

fn tokenized(
    lm: &LanguageModel,
    path: &std::path::Path,
    request: &FinetuneRequest,
) -> Result<Vec<Tokenized>> {
    let form = if request.raw { tokenize_raw } else { tokenize };
    read_jsonl(path)?
        .iter()
        .map(|e| form(lm, e, request.seq_len))
        .collect()
}

/// Mean SFT loss over `items`, batch by batch, adapters' dropout off; `on_batch` may stop it.
fn mean_loss(
    model: &mut TrainLlama,
    items: &[Tokenized],
    batch: usize,
    pad: u32,
    on_batch: &mut dyn FnMut(&str) -> Result<()>,
) -> Result<f32> {
    model.train = false;
    let mut sum = 0.0;
    let mut n = 0;
    for chunk in items.chunks(batch.max(1)) {
        on_batch("scoring the eval set")?;
        let refs: Vec<&Tokenized> = chunk.iter().collect();
        sum += sft_loss(model, &Batch::new(&refs, pad)?)?.to_scalar::<f32>()? * chunk.len() as f32;
        n += chunk.len();
    }
    model.train = true;
    Ok(sum / n.max(1) as f32)
}

/// The output folder must have a name, must not be the model trained, and may replace only a
/// model folder (a `config.json` in it), never some other folder of the user's.
fn check_output(out: &std::path::Path, model: &std::path::Path) -> Result<()> {
    ensure!(
        out.file_name().is_some(),
        "{}: the output needs a folder name",
        out.display()
    );
    let same = |a: &std::path::Path, b: &std::path::Path| matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b);
    ensure!(
        !same(out, model),
        "{}: the output folder is the model being trained; choose another",
        out.display()
    );
    let foreign = out.is_dir()
        && !out.join("config.json").exists()
        && std::fs::read_dir(out).map_or(true, |mut d| d.next().is_some());
    ensure!(
        !foreign,
        "{}: a folder that is not a model is there; choose an empty or new folder",
        out.display()
    );
    Ok(())
}

/// Runs the fine-tune; `on_step` sees every step and cancels by returning an error (the last
/// checkpoint written stays).
pub fn finetune(
    request: &FinetuneRequest,
    on_stage: &mut dyn FnMut(&str) -> Result<()>,
    on_step: &mut dyn FnMut(FinetuneStep) -> Result<()>,
) -> Result<FinetuneOutcome> {
    ensure!(
        request.steps > 0 && request.batch > 0,
        "steps and batch must be positive"
    );
    ensure!(request.seq_len >= 2, "sequences need at least two tokens");
    ensure!(request.lora.rank > 0, "the LoRA rank must be at least 1");
    if let Some(out) = &request.out {
        check_output(out, &request.model)?;
    }
    ensure!(
        request.method != Method::Prompt || request.gguf.is_none(),
        "prompt tuning changes no weight: its result is the soft prompt in the output folder, not a GGUF"
    );
    let gguf_out = match (request.gguf, &request.out) {
        (None, _) => None,
        (Some(_), None) => anyhow::bail!("a GGUF export needs an output folder"),
        (Some(t), Some(out)) => {
            ensure!(
                request.model.is_file(),
                "{}: a GGUF export copies the tokenizer of a GGUF source; this is a folder",
                request.model.display()
            );
            Some((t, gguf_beside(out, t)))
        }
    };
    on_stage("loading the model")?;
    let lm = LanguageModel::load(&request.model)?;
    let pretrained = Pretrained::load(&request.model)?;
    let pad = lm.tokenizer.eos.unwrap_or(0);
    on_stage("tokenising the data")?;
    let train = tokenized(&lm, &request.data, request)?;
    let eval = match &request.eval {
        Some(p) => Some(tokenized(&lm, p, request)?),
        None => None,
    };
    let (mut model, vars) = trainable(&pretrained, &lm, request)?;
    drop(pretrained);
    let trainable_parameters = vars.all_vars().iter().map(|v| v.elem_count()).sum();
    let eval_before = match &eval {
        Some(items) => Some(mean_loss(&mut model, items, request.batch, pad, on_stage)?),
        None => None,
    };
    let mut opt = Adam::new(vars.all_vars(), AdamConfig::default())?;
    let warmup = (request.steps / 10).max(1);
    let started = Instant::now();
    let (mut losses, mut tokens) = (Vec::new(), 0usize);
    let mut batches = Vec::new();
    let mut epoch = 0;
    for step in 0..request.steps {
        if batches.is_empty() {
            batches = length_batches(&train, request.batch, request.seed.wrapping_add(epoch));
            epoch += 1;
        }
        let chosen: Vec<&Tokenized> = batches
            .pop()
            .unwrap_or_default()
            .into_iter()
            .map(|i| &train[i])
            .collect();
        let batch = Batch::new(&chosen, pad)?;
        let lr = super::optim::lr_at(step, request.steps, warmup, request.lr);
        let loss = sft_loss(&model, &batch)?;
        let value = loss.to_scalar::<f32>()?;
        ensure!(
            value.is_finite(),
            "training diverged at step {step}: loss {value}"
        );
        opt.step(&loss.backward()?, lr)?;
        losses.push(value);
        tokens += batch.tokens;
        let seconds = started.elapsed().as_secs_f64();
        on_step(FinetuneStep {
            report: StepReport {
                step: step + 1,
                total: request.steps,
                loss: value,
                lr,
                seconds,
            },
            tokens_per_second: tokens as f64 / seconds.max(1e-9),
        })?;
        let last = step + 1 == request.steps;
        if let (Some(out), true) = (
            &request.out,
            last || (step + 1) % request.save_every.max(1) == 0,
        ) {
            on_stage("writing the checkpoint")?;
            model.train = false;
            write_hf_folder(out, &model, &lm)?;
            if let Some((t, path)) = &gguf_out {
                write_gguf(path, &model, &request.model, *t)?;
            }
            model.train = true;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let eval_loss = match (&eval, eval_before) {
        (Some(items), Some(before)) => Some((
            before,
            mean_loss(&mut model, items, request.batch, pad, on_stage)?,
        )),
        _ => None,
    };
    Ok(FinetuneOutcome {
        method: request.method,
        trainable_parameters,
        examples: train.len(),
        losses,
        eval_loss,
        tokens_per_second: tokens as f64 / seconds.max(1e-9),
        seconds,
        out: request.out.clone(),
    })
}

/// Every step arrives as a partial result.
pub fn spawn_finetune(
    board: &JobBoard,
    request: FinetuneRequest,
) -> JobHandle<FinetuneStep, FinetuneOutcome> {
    let spec = JobSpec {
        kind: "finetune".into(),
        title: format!(
            "fine-tune ({}) on {}",
            request.method,
            request
                .data
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ),
        inputs: serde_json::to_value(&request).unwrap_or_default(),
        seed: Some(request.seed),
    };
    board.spawn(spec, move |ctx: &JobCtx<FinetuneStep>| {
        let mut on_stage = |stage: &str| ctx.stage(stage);
        finetune(&request, &mut on_stage, &mut |s| {
            ctx.check()?;
            ctx.progress(
                Some(s.report.step as f32 / s.report.total as f32),
                format!(
                    "step {}/{} · loss {:.3} · {:.0} tok/s",
                    s.report.step, s.report.total, s.report.loss, s.tokens_per_second
                ),
            );
            ctx.send(s);
            Ok(())
        })
    })
}
