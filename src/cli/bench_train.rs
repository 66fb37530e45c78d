//! `alignscope bench train`: training tokens per second and peak memory of full fine-tuning and
//! LoRA (rank 8 on q/k/v/o) on the shipped SmolLM2, against PyTorch (transformers + peft) on the
//! same weights, shapes and threads in the same run. Every measurement runs in its own process,
//! so each peak resident memory is its own.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use candle_nn::VarMap;
use clap::Args;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::train::finetune::Method;
use crate::train::llama::LoraConfig;
use crate::train::pretrained::{write_hf_folder, Pretrained};
use crate::train::sft::{sft_loss, Batch, Tokenized};

#[derive(Args, Debug)]
pub struct TrainBenchArgs {
    /// GGUF file or Hugging Face llama folder (default: the shipped SmolLM2).
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 128)]
    seq: usize,
    /// Timed optimiser steps (after one warm-up step).
    #[arg(long, default_value_t = 3)]
    steps: usize,
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// A Python with torch, transformers and peft; PyTorch is skipped when it cannot run.
    #[arg(long, default_value = "python3")]
    python: String,
    /// Measure one method in this process and print one JSON line (what the parent runs).
    #[arg(long, hide = true)]
    only: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Measured {
    tokens_per_second: f64,
    seconds_per_step: f64,
    peak_rss_mb: f64,
}

/// Random token ids `[batch][seq]`, the same for every engine (written for PyTorch as u32).
fn synthetic_ids(batch: usize, seq: usize, vocab: usize) -> Vec<Vec<u32>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    (0..batch)
        .map(|_| {
            (0..seq)
                .map(|_| rng.random_range(0..vocab as u32))
                .collect()
        })
        .collect()
}

/// This process's peak resident memory (VmHWM), in MB.
pub(crate) fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// One method measured in this process.
fn measure_ours(model_path: &Path, method: Method, args: &TrainBenchArgs) -> Result<Measured> {
    let pretrained = Pretrained::load(model_path)?;
    let vars = VarMap::new();
    let model = match method {
        Method::Full => pretrained.model(&vars)?,
        Method::Lora => {
            let mut m = pretrained.frozen_model()?;
            let config = LoraConfig {
                dropout: 0.0,
                ..LoraConfig::default()
            };
            m.add_lora(&config, crate::train::seeded_builder(&vars, 0))?;
            m
        }
        Method::Prompt => anyhow::bail!("bench train measures full and lora"),
    };
    let items: Vec<Tokenized> = synthetic_ids(args.batch, args.seq, pretrained.shape.vocab_size)
        .into_iter()
        .map(|ids| Tokenized {
            ids,
            answer_start: 0,
        })
        .collect();
    drop(pretrained);
    let refs: Vec<&Tokenized> = items.iter().collect();
    let batch = Batch::new(&refs, 0)?;
    let mut opt = crate::train::Adam::new(vars.all_vars(), Default::default())?;
    let mut step = || -> Result<()> {
        let loss = sft_loss(&model, &batch)?;
        opt.step(&loss.backward()?, 1e-5)?;
        Ok(())
    };
    step()?;
    let started = Instant::now();
    for _ in 0..args.steps {
        step()?;
    }
    let seconds = started.elapsed().as_secs_f64() / args.steps as f64;
    Ok(Measured {
        tokens_per_second: (args.batch * (args.seq - 1)) as f64 / seconds,
        seconds_per_step: seconds,
        peak_rss_mb: peak_rss_mb(),
    })
}

/// PyTorch on the same f32 weights (a Hugging Face folder) and ids; prints one JSON line.
const TORCH_SCRIPT: &str = r#"
import json, resource, sys, time
import numpy as np, torch
from transformers import AutoModelForCausalLM
folder, ids_path, batch, seq, steps, threads, method = sys.argv[1:8]
batch, seq, steps, threads = int(batch), int(seq), int(steps), int(threads)
torch.set_num_threads(threads)
ids = torch.from_numpy(np.fromfile(ids_path, dtype="<u4").astype(np.int64).reshape(batch, seq))
model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32)
model.train()
if method == "lora":
    from peft import LoraConfig, get_peft_model
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.Adam(params, lr=1e-5)
def step():
    opt.zero_grad(set_to_none=True)
    model(input_ids=ids, labels=ids).loss.backward()
    opt.step()
step()
t = time.perf_counter()
for _ in range(steps):
    step()
s = (time.perf_counter() - t) / steps
print(json.dumps({"tokens_per_second": batch * (seq - 1) / s, "seconds_per_step": s,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"#;

fn child_json(cmd: &mut Command, what: &str) -> Result<Measured> {
    let out = cmd
        .output()
        .with_context(|| format!("{what}: cannot start"))?;
    ensure!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .last()
            .unwrap_or("")
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .with_context(|| format!("{what}: no result line"))?;
    Ok(serde_json::from_str(line)?)
}

pub fn run(args: TrainBenchArgs) -> Result<()> {
    let model = args
        .model
        .clone()
        .unwrap_or_else(crate::assets::default_model);
    if let Some(method) = &args.only {
        let method: Method = method.parse()?;
        let m = measure_ours(&model, method, &args)?;
        println!("{}", serde_json::to_string(&m)?);
        return Ok(());
    }
    // PyTorch reads the same weights as an f32 folder, and the same ids.
    let scratch = crate::fs::ScratchDir::new()?;
    let folder = scratch.path().join("model");
    let pretrained = Pretrained::load(&model)?;
    let vocab = pretrained.shape.vocab_size;
    let frozen = pretrained.frozen_model()?;
    drop(pretrained);
    let lm = crate::lm::LanguageModel::load(&model)?;
    write_hf_folder(&folder, &frozen, &lm)?;
    drop(frozen);
    let ids_path = scratch.path().join("ids.u32");
    let ids: Vec<u8> = synthetic_ids(args.batch, args.seq, vocab)
        .concat()
        .iter()
        .flat_map(|i| i.to_le_bytes())
        .collect();
    std::fs::write(&ids_path, ids)?;
    let script = scratch.path().join("torch_train.py");
    std::fs::write(&script, TORCH_SCRIPT)?;
    let exe = std::env::current_exe()?;
    println!(
        "batch {} × {} tokens, {} threads, mean of {} steps after one warm-up; our products: {}\n",
        args.batch,
        args.seq,
        args.threads,
        args.steps,
        crate::train::sgemm::backend().name()
    );
    println!("| method | engine | tokens/s | s/step | peak RSS MB | ours ÷ PyTorch |\n|---|---|---:|---:|---:|---:|");
    for method in ["full", "lora"] {
        let ours = child_json(
            Command::new(&exe)
                .args(["bench", "train", "--only", method, "--model"])
                .arg(&model)
                .args([
                    "--batch",
                    &args.batch.to_string(),
                    "--seq",
                    &args.seq.to_string(),
                ])
                .args(["--steps", &args.steps.to_string()])
                .env("RAYON_NUM_THREADS", args.threads.to_string())
                .env("CANDLE_NUM_THREADS", args.threads.to_string()),
            "alignscope",
        )?;
        let torch = child_json(
            Command::new(&args.python)
                .arg(&script)
                .arg(&folder)
                .arg(&ids_path)
                .args([
                    args.batch.to_string(),
                    args.seq.to_string(),
                    args.steps.to_string(),
                    args.threads.to_string(),
                    method.to_string(),
                ])
                .env("OMP_NUM_THREADS", args.threads.to_string()),
            "PyTorch",
        );
        let ratio = match &torch {
            Ok(t) => format!("{:.2}", ours.tokens_per_second / t.tokens_per_second),
            Err(_) => "–".into(),
        };
        println!(
            "| {method} | alignscope | {:.0} | {:.2} | {:.0} | {ratio} |",
            ours.tokens_per_second, ours.seconds_per_step, ours.peak_rss_mb
        );
        match torch {
            Ok(t) => println!(
                "| {method} | PyTorch | {:.0} | {:.2} | {:.0} | |",
                t.tokens_per_second, t.seconds_per_step, t.peak_rss_mb
            ),
            Err(e) => println!("| {method} | PyTorch | {e:#} | | | |"),
        }
    }
    Ok(())
}
