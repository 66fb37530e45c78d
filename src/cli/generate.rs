//! `alignscope generate`: the Generate lab headless, through `lm::tasks`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde_json::json;

use crate::lm::generate::GenerationConfig;
use crate::lm::tasks::{spawn_generate, GenerateRequest};
use crate::lm::SamplingParams;

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// The user's message (rendered with the model's chat template unless --raw).
    #[arg(long)]
    prompt: String,
    /// GGUF file or Hugging Face model folder (default: the shipped SmolLM2).
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, default_value_t = GenerationConfig::default().max_tokens)]
    max_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = SamplingParams::default().temperature)]
    temperature: f32,
    #[arg(long, default_value_t = SamplingParams::default().top_k)]
    top_k: usize,
    #[arg(long, default_value_t = SamplingParams::default().top_p)]
    top_p: f32,
    #[arg(long, default_value_t = SamplingParams::default().seed)]
    seed: u64,
    /// Learned embeddings to put before the prompt: the `soft_prompt.safetensors` that
    /// `finetune --method prompt` writes beside its model.
    #[arg(long)]
    soft_prompt: Option<PathBuf>,
    /// Feed the prompt as is, without the chat template.
    #[arg(long)]
    raw: bool,
    /// Print one JSON object (text, tokens with log-probabilities, timings) instead of streaming.
    #[arg(long)]
    json: bool,
}

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let front = super::Front::new("loading");
    let model = front.load_model(args.model.clone())?;
    let prompt_ids = if args.raw {
        model.tokenizer.encode_prompt(&args.prompt)?
    } else {
        model.chat_ids(&args.prompt)?
    };
    let config = GenerationConfig {
        max_tokens: args.max_tokens,
        sampling: SamplingParams {
            temperature: args.temperature,
            top_k: args.top_k,
            top_p: args.top_p,
            seed: args.seed,
            ..SamplingParams::default()
        },
    };
    let soft_prompt = match &args.soft_prompt {
        Some(path) => Some(std::sync::Arc::new(crate::lm::SoftPrompt::load(path)?)),
        None => None,
    };
    let request = GenerateRequest {
        prompt_label: args.prompt.clone(),
        prompt_ids,
        config,
        soft_prompt,
    };
    let handle = spawn_generate(&front.board, model.clone(), None, request);
    let mut stdout = std::io::stdout();
    let outcome = front
        .wait(handle, |token, bar| {
            if !args.json {
                bar.suspend(|| {
                    let _ = write!(stdout, "{}", token.text);
                    let _ = stdout.flush();
                });
            }
        })
        .context("generation failed")?;
    let g = &outcome.generation;
    let t = &g.timings;
    if args.json {
        let out = json!({
            "model": model.info,
            "prompt": args.prompt,
            "soft_prompt": args.soft_prompt,
            "text": g.text,
            "stop": g.stop,
            "tokens": g.tokens,
            "timings": {
                "prompt_tokens": t.prompt_tokens,
                "prompt_seconds": t.prompt_seconds,
                "prompt_tok_s": t.prompt_tok_s(),
                "generated_tokens": t.generated_tokens,
                "decode_seconds": t.decode_seconds,
                "decode_tok_s": t.decode_tok_s(),
            },
        });
        println!("{}", serde_json::to_string(&out)?);
    } else {
        println!();
        eprintln!(
            "{} prompt tokens at {:.1} tok/s, {} generated at {:.1} tok/s ({:?})",
            t.prompt_tokens,
            t.prompt_tok_s(),
            t.generated_tokens,
            t.decode_tok_s(),
            g.stop
        );
    }
    Ok(())
}
