//! `alignscope bench delta`: pruning a checkpoint of over 1 GB against copying the same bytes
//! (the I/O limit) and against mergekit's dare_linear on the same pair, each as a child process
//! whose wall time and peak resident memory are measured.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use clap::Args;
use rayon::prelude::*;
use safetensors::Dtype;

use crate::checkpoint::{CheckpointWriter, OutTensor};
use crate::counter_rng::MaskKey;

#[derive(Args, Debug)]
pub struct DeltaBenchArgs {
    /// Transformer layers of the generated llama (8 layers of width 2048 ≈ 1.08 GB in bf16).
    #[arg(long, default_value_t = 8)]
    layers: usize,
    /// Where the generated checkpoints go (default: a temporary folder, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// mergekit's `mergekit-yaml` command; skipped when absent.
    #[arg(long, default_value = "mergekit-yaml")]
    mergekit: String,
    #[arg(long, default_value_t = 0.9)]
    drop_rate: f64,
}

/// Llama shapes of a 1B-class model: width 2048, MLP 5632, vocabulary 32000.
fn llama_tensors(layers: usize) -> Vec<OutTensor> {
    let (h, i, v) = (2048, 5632, 32000);
    let t = |name: String, shape: Vec<usize>| OutTensor {
        name,
        dtype: Dtype::BF16,
        shape,
    };
    let mut out = vec![t("model.embed_tokens.weight".into(), vec![v, h])];
    for l in 0..layers {
        let p = format!("model.layers.{l}");
        for m in ["q_proj", "k_proj", "v_proj", "o_proj"] {
            out.push(t(format!("{p}.self_attn.{m}.weight"), vec![h, h]));
        }
        out.push(t(format!("{p}.mlp.gate_proj.weight"), vec![i, h]));
        out.push(t(format!("{p}.mlp.up_proj.weight"), vec![i, h]));
        out.push(t(format!("{p}.mlp.down_proj.weight"), vec![h, i]));
        out.push(t(format!("{p}.input_layernorm.weight"), vec![h]));
        out.push(t(format!("{p}.post_attention_layernorm.weight"), vec![h]));
    }
    out.push(t("model.norm.weight".into(), vec![h]));
    out.push(t("lm_head.weight".into(), vec![v, h]));
    out
}

fn llama_config(layers: usize) -> serde_json::Value {
    serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": layers,
        "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32000,
        "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "hidden_act": "silu", "tie_word_embeddings": false, "torch_dtype": "bfloat16",
    })
}

/// Writes a checkpoint of random weights: base values N-ish(0, 0.02), plus `delta` noise.
fn write_random(dir: &Path, layers: usize, seed: u64, delta: f32) -> Result<u64> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("config.json"), llama_config(layers).to_string())?;
    let tensors = llama_tensors(layers);
    let mut w = CheckpointWriter::new(dir, tensors.clone(), u64::MAX)?;
    for (k, t) in tensors.iter().enumerate() {
        let n: usize = t.shape.iter().product();
        let (weights, noise) = (MaskKey::new(k as u64, &t.name), MaskKey::new(seed, &t.name));
        let uniform = |key: &MaskKey, i: usize| key.bits(i as u64) as f32 / u32::MAX as f32 - 0.5;
        let bytes: Vec<u8> = (0..n)
            .into_par_iter()
            .flat_map_iter(|i| {
                let v = 0.04 * uniform(&weights, i) + delta * uniform(&noise, i);
                half::bf16::from_f32(v).to_bits().to_le_bytes()
            })
            .collect();
        w.write(&t.name, &bytes)?;
    }
    w.finish()
}

/// Best of two runs: wall seconds and peak resident memory (MB) of a child process writing
/// `out`. Each run starts with `out` removed and after `sync`, so neither deleting the last
/// output nor writing back its dirty pages is timed.
fn measure(cmd: &mut Command, out: &Path) -> Result<(f64, f64)> {
    let mut best = (f64::INFINITY, 0.0);
    for _ in 0..2 {
        if out.is_dir() {
            std::fs::remove_dir_all(out)?;
        } else if out.exists() {
            std::fs::remove_file(out)?;
        }
        // SAFETY: sync(2) takes no arguments and cannot fail.
        unsafe { libc::sync() };
        let run = measure_once(cmd)?;
        if run.0 < best.0 {
            best = run;
        }
    }
    Ok(best)
}

fn measure_once(cmd: &mut Command) -> Result<(f64, f64)> {
    let started = Instant::now();
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: plain wait4 on our own child; rusage is a C struct we zero-initialise.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let secs = started.elapsed().as_secs_f64();
    ensure!(r == pid, "wait4 failed for {cmd:?}");
    let stderr = child
        .stderr
        .map(|mut e| {
            let mut s = String::new();
            let _ = std::io::Read::read_to_string(&mut e, &mut s);
            s
        })
        .unwrap_or_default();
    ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed: {}",
        stderr.lines().rev().take(5).collect::<Vec<_>>().join(" / ")
    );
    Ok((secs, usage.ru_maxrss as f64 / 1024.0))
}

pub fn run(args: DeltaBenchArgs) -> Result<()> {
    let owned;
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => {
            owned = crate::fs::ScratchDir::new()?;
            owned.path().to_path_buf()
        }
    };
    let (base, ft) = (dir.join("base"), dir.join("finetuned"));
    let started = Instant::now();
    let bytes = write_random(&base, args.layers, 1, 0.0)?;
    write_random(&ft, args.layers, 2, 0.002)?;
    let gb = bytes as f64 / 1e9;
    println!(
        "two bf16 llama checkpoints of {gb:.2} GB each written in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let exe = std::env::current_exe()?;
    let mut rows: Vec<(String, f64, f64)> = Vec::new();
    let copy = dir.join("copy.safetensors");
    let (s, m) = measure(
        Command::new("cp")
            .arg(ft.join("model.safetensors"))
            .arg(&copy),
        &copy,
    )?;
    rows.push(("file copy (cp)".into(), s, m));
    let p = args.drop_rate.to_string();
    let (s, m) = measure(
        Command::new(&exe)
            .args([
                "prune",
                "--method",
                "dare",
                "--drop-rate",
                &p,
                "--device",
                "cpu",
                "--base",
            ])
            .arg(&base)
            .arg("--finetuned")
            .arg(&ft)
            .arg("--out")
            .arg(dir.join("pruned")),
        &dir.join("pruned"),
    )?;
    rows.push((format!("alignscope prune dare p={p}"), s, m));
    let cfg = dir.join("mergekit.yml");
    let density = ((1.0 - args.drop_rate) * 1e6).round() / 1e6;
    std::fs::write(
        &cfg,
        format!(
            "merge_method: dare_linear\nbase_model: {}\nmodels:\n  - model: {}\n    parameters: {{weight: 1.0, density: {density}}}\ndtype: bfloat16\n",
            base.display(),
            ft.display()
        ),
    )?;
    match measure(
        Command::new(&args.mergekit)
            .arg(&cfg)
            .arg(dir.join("mergekit-out"))
            .args(["--no-cuda", "--allow-crimes"]),
        &dir.join("mergekit-out"),
    ) {
        Ok((s, m)) => rows.push((format!("mergekit dare_linear density={density}"), s, m)),
        Err(e) => println!("mergekit skipped: {e:#}"),
    }
    let copy = rows[0].1;
    println!("| run | seconds | GB/s | × copy time | peak RSS MB |\n|---|---:|---:|---:|---:|");
    for (name, s, m) in &rows {
        println!(
            "| {name} | {s:.2} | {:.2} | {:.2} | {m:.0} |",
            gb / s,
            s / copy
        );
    }
    Ok(())
}
