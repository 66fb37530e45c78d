//! `alignscope finetune`: fine-tune a language model on chat data (full, LoRA or a soft
//! prompt) through the same job the app uses (`train::finetune`).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::{named, Front};
use crate::train::adapter::{spawn_merge, MergeRequest};
use crate::train::finetune::{spawn_finetune, FinetuneRequest, Method};
use crate::train::pretrained::GgufType;

#[derive(Args, Debug)]
pub struct FinetuneArgs {
    /// GGUF file or Hugging Face llama/mistral folder (default: the shipped SmolLM2).
    #[arg(long)]
    model: Option<PathBuf>,
    /// JSON Lines: {"messages": [{"role", "content"}, …]} ending with the assistant's answer,
    /// or {"prompt", "completion"}.
    #[arg(long)]
    data: PathBuf,
    #[arg(long, value_parser = named::<Method>(), default_value_t = Method::Lora)]
    method: Method,
    /// Held-out examples (same format): SFT loss before and after.
    #[arg(long)]
    eval: Option<PathBuf>,
    #[arg(long)]
    steps: Option<usize>,
    /// Peak learning rate (default: the method's).
    #[arg(long)]
    lr: Option<f64>,
    #[arg(long)]
    batch: Option<usize>,
    /// Longest example in tokens.
    #[arg(long)]
    seq_len: Option<usize>,
    /// LoRA rank.
    #[arg(long)]
    rank: Option<usize>,
    /// LoRA α (the update is scaled by α / rank).
    #[arg(long)]
    alpha: Option<f64>,
    #[arg(long)]
    dropout: Option<f32>,
    /// LoRA targets, e.g. q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj.
    #[arg(long, value_delimiter = ',')]
    targets: Vec<String>,
    /// Soft-prompt length (prompt tuning).
    #[arg(long)]
    prompt_len: Option<usize>,
    /// A soft prompt (soft_prompt.safetensors) put before every input: frozen while full or
    /// LoRA tuning trains the model (ProMoT's second stage), the start of prompt tuning.
    #[arg(long)]
    soft_prompt: Option<PathBuf>,
    /// Write the fine-tuned model here, as a Hugging Face folder.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write a GGUF beside --out (`<out>-q8_0.gguf`): q8_0, or q4_1 like the shipped file.
    #[arg(long, value_parser = named::<GgufType>())]
    gguf: Option<GgufType>,
    /// Write a checkpoint every N steps (a cancelled run keeps the last one).
    #[arg(long)]
    save_every: Option<usize>,
    #[arg(long)]
    seed: Option<u64>,
    /// Train on prompt and answer as plain text, without the chat template (e.g. a judge that
    /// reads its verdict right after a judgement prompt).
    #[arg(long)]
    raw: bool,
    #[arg(long)]
    json: bool,
}

pub fn run(args: FinetuneArgs) -> Result<()> {
    let model = args.model.unwrap_or_else(crate::assets::default_model);
    let mut r = FinetuneRequest::new(model, args.data, args.method);
    r.eval = args.eval;
    r.steps = args.steps.unwrap_or(r.steps);
    r.lr = args.lr.unwrap_or(r.lr);
    r.batch = args.batch.unwrap_or(r.batch);
    r.seq_len = args.seq_len.unwrap_or(r.seq_len);
    r.lora.rank = args.rank.unwrap_or(r.lora.rank);
    r.lora.alpha = args.alpha.unwrap_or(r.lora.alpha);
    r.lora.dropout = args.dropout.unwrap_or(r.lora.dropout);
    if !args.targets.is_empty() {
        r.lora.targets = args.targets;
    }
    r.prompt_len = args.prompt_len.unwrap_or(r.prompt_len);
    r.soft_prompt = args.soft_prompt;
    r.out = args.out;
    r.gguf = args.gguf;
    r.save_every = args.save_every.unwrap_or(r.save_every);
    r.seed = args.seed.unwrap_or(r.seed);
    r.raw = args.raw;
    let front = Front::new("loading");
    let json = args.json;
    let outcome = front.wait(spawn_finetune(&front.board, r), |s, bar| {
        let every = (s.report.total / 20).max(1);
        if !json && (s.report.step % every == 0 || s.report.step == s.report.total) {
            super::say(
                bar,
                format!(
                    "step {:>5}/{}  loss {:.4}  lr {:.2e}  {:.0} tok/s",
                    s.report.step, s.report.total, s.report.loss, s.report.lr, s.tokens_per_second
                ),
            );
        }
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
        return Ok(());
    }
    println!(
        "{} fine-tune: {} examples, {} trainable parameters, {:.0} s, {:.0} tok/s",
        outcome.method,
        outcome.examples,
        outcome.trainable_parameters,
        outcome.seconds,
        outcome.tokens_per_second
    );
    if let Some((before, after)) = outcome.eval_loss {
        println!("eval loss {before:.4} → {after:.4}");
    }
    if let Some(out) = &outcome.out {
        println!("wrote {}", out.display());
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct MergeAdapterArgs {
    /// A folder with a LoRA adapter (`adapter_model.safetensors`, `adapter_config.json`), as
    /// `finetune --method lora --out` writes.
    #[arg(long)]
    adapter: PathBuf,
    /// The model it was trained on (default: the shipped SmolLM2).
    #[arg(long)]
    base: Option<PathBuf>,
    /// Where the merged model goes: a GGUF file with --gguf, else a Hugging Face folder.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, value_parser = named::<GgufType>())]
    gguf: Option<GgufType>,
}

pub fn merge_adapter(args: MergeAdapterArgs) -> Result<()> {
    let request = MergeRequest {
        base: args.base.unwrap_or_else(crate::assets::default_model),
        adapter: args.adapter,
        out: args.out,
        gguf: args.gguf,
    };
    let front = Front::new("merging");
    let merged = front.wait(spawn_merge(&front.board, request), |_, _| {})?;
    println!("{}", merged.0.display());
    Ok(())
}
