//! `alignscope bench graft`: what learning a grafting mask costs on a MiniLM fine-tune: one
//! gradient batch (forward and backward, the unit both schedules are made of), a whole mask
//! step of our schedule, and the official schedule's projected time at the measured batch cost
//! (10 steps of up to 128 batches of 8), with peak memory.

use std::time::Instant;

use anyhow::Result;
use clap::Args;
use serde_json::json;

use crate::graft::encoder::EncoderGraft;
use crate::graft::learn::{learn_mask, LearnOptions};
use crate::graft::model::Graftable;
use crate::graft::tasks::task_rows;

/// Batches per step in the official scripts (`gradient_accumulation_steps`).
const OFFICIAL_BATCHES: usize = 128;

#[derive(Args, Debug)]
pub struct GraftBenchArgs {
    /// A zoo MiniLM fine-tune (built first if missing).
    #[arg(long, default_value = "minilm-sentiment")]
    model: String,
    /// Kept fraction.
    #[arg(long, default_value_t = 1e-4)]
    sparsity: f64,
    #[arg(long, default_value_t = LearnOptions::default().steps)]
    steps: usize,
    #[arg(long)]
    json: bool,
}

pub fn run(args: GraftBenchArgs) -> Result<()> {
    let spec = crate::zoo::specs::spec(&args.model)?;
    let crate::zoo::specs::Recipe::Minilm(recipe) = &spec.recipe else {
        anyhow::bail!("{}: not a MiniLM fine-tune", args.model);
    };
    let finetuned = crate::zoo::specs::ensure_built(spec.name, &mut |_| Ok(()))?;
    let base = crate::zoo::specs::spec(crate::zoo::specs::MINILM)?.path();
    let (rows, labels) = task_rows(recipe.task, None)?;
    let t = Instant::now();
    let model = EncoderGraft::load(&base, &finetuned, Some(labels))?;
    let load_s = t.elapsed().as_secs_f64();

    let options = LearnOptions {
        steps: args.steps,
        ..LearnOptions::default()
    };
    model.set(&|_, _| 0.5)?;
    let batches: Vec<&[(String, usize)]> = rows.train.chunks(options.batch).take(4).collect();
    model.gradients(&batches[..1])?; // warm-up
    let t = Instant::now();
    model.gradients(&batches)?;
    let batch_s = t.elapsed().as_secs_f64() / batches.len() as f64;

    let t = Instant::now();
    learn_mask(
        &model,
        &rows.train,
        &rows.val,
        args.sparsity,
        &options,
        &mut |_| Ok(()),
    )?;
    let learn_s = t.elapsed().as_secs_f64();
    let step_s = learn_s / args.steps.max(1) as f64;
    let official_s = options.steps as f64 * OFFICIAL_BATCHES as f64 * batch_s;
    let peak = super::bench_train::peak_rss_mb();
    let report = json!({
        "model": args.model, "eligible_parameters": model.numel(), "sparsity": args.sparsity,
        "load_s": load_s, "batch_s": batch_s, "batch": options.batch,
        "batches_per_step": options.batches_per_step, "steps": args.steps,
        "step_s": step_s, "learn_s": learn_s,
        "official_batches_per_step": OFFICIAL_BATCHES, "official_projected_s": official_s,
        "peak_rss_mb": peak,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "{} ({} block parameters), {:.4}% kept; load {load_s:.1} s, peak RSS {peak:.0} MB\n",
        args.model,
        model.numel(),
        args.sparsity * 100.0
    );
    println!("| measure | seconds |\n|---|---:|");
    println!(
        "| one gradient batch of {} (forward + backward) | {batch_s:.3} |",
        options.batch
    );
    println!(
        "| one mask step ({} batches, update, rounding, train + validation accuracy) | {step_s:.2} |",
        options.batches_per_step
    );
    println!("| whole search, {} steps | {learn_s:.1} |", args.steps);
    println!(
        "| official schedule ({} steps × {OFFICIAL_BATCHES} batches), projected | {official_s:.0} |",
        options.steps
    );
    Ok(())
}
