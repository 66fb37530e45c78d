//! `alignscope bench lm`: prompt-processing and decoding speed of our runtime, of stock
//! candle (candle-transformers' quantized_llama) and optionally of llama.cpp, in one run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use candle_core::{Device, Tensor};
use clap::{Args, Subcommand};
use serde::Serialize;

use crate::lm::{LanguageModel, Sampler, SamplingParams, Session};

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Language-model speed: prompt processing and decoding, tokens per second.
    Lm(LmBenchArgs),
    /// Delta pruning of a >1 GB checkpoint against a file copy and mergekit.
    Delta(super::bench_delta::DeltaBenchArgs),
    /// Log-domain Sinkhorn against POT on 256² to 4096² problems.
    Ot(super::bench_ot::OtBenchArgs),
    /// Fine-tuning SmolLM2 (full and LoRA): training tokens/s and peak memory against PyTorch.
    Train(super::bench_train::TrainBenchArgs),
    /// Learning a grafting mask on a MiniLM fine-tune: seconds per step and peak memory, and
    /// the official schedule's projected time.
    Graft(super::bench_graft::GraftBenchArgs),
    /// The RAG lab: retrieval latency at the corpus size and at 10×, questions per second end
    /// to end, mining cost.
    Rag(super::bench_rag::RagBenchArgs),
    /// The caption lab: captions/s by decoding, retrieval scoring, DiscriTune steps/s.
    Caption(super::bench_caption::CaptionBenchArgs),
    /// The GAN lab: samples/s, adaptation steps/s per method, our convolution vs candle's.
    Gan(super::bench_gan::GanBenchArgs),
}

#[derive(Args, Debug)]
pub struct LmBenchArgs {
    /// GGUF file (default: the shipped SmolLM2).
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, default_value_t = 2)]
    threads: usize,
    #[arg(long, default_value_t = 128)]
    prompt_tokens: usize,
    #[arg(long, default_value_t = 64)]
    gen_tokens: usize,
    /// Best of this many runs.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Branches decoded together in the batched-decode measurement.
    #[arg(long, default_value_t = 10)]
    branches: usize,
    /// Also run llama.cpp on the same file (needs `pip install llama-cpp-python`).
    #[arg(long)]
    llama_cpp: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Serialize)]
struct Speed {
    engine: String,
    prompt_tok_s: f64,
    decode_tok_s: f64,
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Lm(args) => lm(args),
        BenchCommand::Delta(args) => super::bench_delta::run(args),
        BenchCommand::Ot(args) => super::bench_ot::run(args),
        BenchCommand::Train(args) => super::bench_train::run(args),
        BenchCommand::Graft(args) => super::bench_graft::run(args),
        BenchCommand::Rag(args) => super::bench_rag::run(args),
        BenchCommand::Caption(args) => super::bench_caption::run(args),
        BenchCommand::Gan(args) => super::bench_gan::run(args),
    }
}

/// A fixed English text, tokenised and cut to `n` tokens, so every engine sees the same prompt.
fn prompt_ids(model: &LanguageModel, n: usize) -> anyhow::Result<Vec<u32>> {
    const TEXT: &str =
        "The history of natural language processing generally started in the 1950s, \
        although work can be found from earlier periods. In 1950, Alan Turing published an article \
        titled Computing Machinery and Intelligence which proposed what is now called the Turing \
        test as a criterion of intelligence. ";
    let one = model.tokenizer.encode(TEXT, false)?;
    Ok(one.iter().cycle().take(n).copied().collect())
}

fn best(runs: impl Iterator<Item = anyhow::Result<(f64, f64)>>) -> anyhow::Result<(f64, f64)> {
    let mut best = (0.0f64, 0.0f64);
    for r in runs {
        let (p, d) = r?;
        best = (best.0.max(p), best.1.max(d));
    }
    Ok(best)
}

fn ours(model: &Arc<LanguageModel>, prompt: &[u32], gen: usize) -> anyhow::Result<(f64, f64)> {
    let mut session = Session::new(model.clone());
    let t = Instant::now();
    session.feed(prompt)?;
    let prompt_s = t.elapsed().as_secs_f64();
    let mut sampler = Sampler::new(SamplingParams {
        alternatives: 0,
        ..SamplingParams::greedy()
    });
    let t = Instant::now();
    for _ in 0..gen {
        let next = session.choose(&mut sampler)?.id;
        session.feed(&[next])?;
    }
    Ok((
        prompt.len() as f64 / prompt_s,
        gen as f64 / t.elapsed().as_secs_f64(),
    ))
}

/// Trees of branches: `branches` forks of one prompt decoding a token each per step, all in one
/// batch. Returns total tokens/s.
fn batched(
    model: &Arc<LanguageModel>,
    prompt: &[u32],
    gen: usize,
    branches: usize,
) -> anyhow::Result<f64> {
    let mut root = Session::new(model.clone());
    root.feed(prompt)?;
    let mut forks: Vec<Session> = (0..branches).map(|_| root.fork()).collect();
    // Distinct first tokens, so the branches really differ.
    let mut next: Vec<u32> = (0..branches as u32)
        .map(|b| prompt[b as usize % prompt.len()])
        .collect();
    let t = Instant::now();
    for _ in 0..gen {
        let tokens: Vec<[u32; 1]> = next.iter().map(|&id| [id]).collect();
        let tokens: Vec<&[u32]> = tokens.iter().map(|t| t.as_slice()).collect();
        let mut refs: Vec<&mut Session> = forks.iter_mut().collect();
        Session::feed_batch(&mut refs, &tokens)?;
        for (s, n) in forks.iter_mut().zip(next.iter_mut()) {
            *n = argmax(s.logits()?);
        }
    }
    Ok((gen * branches) as f64 / t.elapsed().as_secs_f64())
}

fn argmax(v: &[f32]) -> u32 {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i as u32)
}

/// Microseconds to fork a session holding `prompt` and to rewind a fork by half of it.
fn fork_and_rewind(model: &Arc<LanguageModel>, prompt: &[u32]) -> anyhow::Result<(f64, f64)> {
    let mut root = Session::new(model.clone());
    root.feed(prompt)?;
    const N: u32 = 1000;
    let t = Instant::now();
    let forks: Vec<Session> = (0..N).map(|_| root.fork()).collect();
    let fork_us = t.elapsed().as_secs_f64() * 1e6 / N as f64;
    let t = Instant::now();
    for mut f in forks {
        f.rewind(prompt.len() / 2)?;
    }
    let rewind_us = t.elapsed().as_secs_f64() * 1e6 / N as f64;
    Ok((fork_us, rewind_us))
}

fn stock_candle(path: &Path, prompt: &[u32], gen: usize) -> anyhow::Result<(f64, f64)> {
    use candle_transformers::models::quantized_llama::ModelWeights;
    let device = Device::Cpu;
    let mut file = std::fs::File::open(path)?;
    let content = candle_core::quantized::gguf_file::Content::read(&mut file)?;
    let mut model = ModelWeights::from_gguf(content, &mut file, &device)?;
    let input = Tensor::new(prompt, &device)?.unsqueeze(0)?;
    let t = Instant::now();
    let mut logits = model.forward(&input, 0)?;
    let prompt_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for i in 0..gen {
        let next = logits.squeeze(0)?.argmax(0)?.to_scalar::<u32>()?;
        logits = model.forward(
            &Tensor::new(&[next], &device)?.unsqueeze(0)?,
            prompt.len() + i,
        )?;
    }
    Ok((
        prompt.len() as f64 / prompt_s,
        gen as f64 / t.elapsed().as_secs_f64(),
    ))
}

fn llama_cpp(path: &Path, args: &LmBenchArgs) -> anyhow::Result<(f64, f64)> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("benches")
        .join("llamacpp_bench.py");
    let out = Command::new("python3")
        .arg(&script)
        .args(["--model", &path.to_string_lossy()])
        .args(["--threads", &args.threads.to_string()])
        .args(["--prompt-tokens", &args.prompt_tokens.to_string()])
        .args(["--gen-tokens", &args.gen_tokens.to_string()])
        .args(["--repeats", &args.repeats.to_string()])
        .output()
        .with_context(|| format!("cannot run python3 {}", script.display()))?;
    if !out.status.success() {
        anyhow::bail!(
            "llama.cpp benchmark failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let line = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(line.lines().last().unwrap_or(""))
        .context("llama.cpp benchmark printed no JSON")?;
    Ok((
        v["prompt_tok_s"].as_f64().unwrap_or(0.0),
        v["decode_tok_s"].as_f64().unwrap_or(0.0),
    ))
}

fn lm(args: LmBenchArgs) -> anyhow::Result<()> {
    // candle sizes its work split from RAYON_NUM_THREADS; the pool below runs it.
    std::env::set_var("RAYON_NUM_THREADS", args.threads.to_string());
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build()?;
    let path = args
        .model
        .clone()
        .unwrap_or_else(crate::assets::default_model);
    let model = Arc::new(LanguageModel::load(&path)?);
    let prompt = prompt_ids(&model, args.prompt_tokens)?;
    let repeats = args.repeats.max(1);
    let bar = super::progress_bar("alignscope runtime");
    let mut speeds = Vec::new();
    let (p, d) =
        pool.install(|| best((0..repeats).map(|_| ours(&model, &prompt, args.gen_tokens))))?;
    speeds.push(Speed {
        engine: "alignscope".into(),
        prompt_tok_s: p,
        decode_tok_s: d,
    });
    bar.set_message("batched branches");
    let single_decode = d;
    let batched_tok_s = pool.install(|| {
        (0..repeats)
            .map(|_| batched(&model, &prompt, args.gen_tokens.min(32), args.branches))
            .try_fold(0f64, |m, r| r.map(|v| m.max(v)))
    })?;
    let (fork_us, rewind_us) = fork_and_rewind(&model, &prompt)?;
    bar.set_message("stock candle quantized_llama");
    let (p, d) =
        pool.install(|| best((0..repeats).map(|_| stock_candle(&path, &prompt, args.gen_tokens))))?;
    speeds.push(Speed {
        engine: "candle quantized_llama".into(),
        prompt_tok_s: p,
        decode_tok_s: d,
    });
    if args.llama_cpp {
        bar.set_message("llama.cpp");
        let (p, d) = llama_cpp(&path, &args)?;
        speeds.push(Speed {
            engine: "llama.cpp".into(),
            prompt_tok_s: p,
            decode_tok_s: d,
        });
    }
    bar.finish_and_clear();
    if args.json {
        println!(
            "{}",
            serde_json::json!({
                "model": model.info.name,
                "threads": args.threads,
                "prompt_tokens": args.prompt_tokens,
                "gen_tokens": args.gen_tokens,
                "results": speeds,
                "batched": {
                    "branches": args.branches,
                    "total_tok_s": batched_tok_s,
                    "ratio_to_single_decode": batched_tok_s / single_decode,
                },
                "fork_us": fork_us,
                "rewind_us": rewind_us,
            })
        );
        return Ok(());
    }
    let base = speeds[0].clone();
    println!(
        "{} — {} threads, {} prompt tokens, {} generated, best of {}",
        model.info.name, args.threads, args.prompt_tokens, args.gen_tokens, repeats
    );
    println!("| engine | prompt tok/s | decode tok/s | alignscope ÷ engine (prompt / decode) |");
    println!("|---|---:|---:|---:|");
    for s in &speeds {
        println!(
            "| {} | {:.1} | {:.1} | {:.2} / {:.2} |",
            s.engine,
            s.prompt_tok_s,
            s.decode_tok_s,
            base.prompt_tok_s / s.prompt_tok_s,
            base.decode_tok_s / s.decode_tok_s
        );
    }
    println!();
    println!(
        "batched decode, {} branches after the prompt: {:.1} tok/s in total = {:.2}× single-branch decode",
        args.branches,
        batched_tok_s,
        batched_tok_s / single_decode
    );
    println!(
        "fork a {}-token session: {:.2} µs; rewind it by half: {:.2} µs",
        prompt.len(),
        fork_us,
        rewind_us
    );
    Ok(())
}
