//! `alignscope graft` and `alignscope graft-overlap`: the Graft lab headless, through the same
//! job as the Graft page (`graft::tasks`).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::{named, Front};
use crate::data::classify::ClassTask;
use crate::graft::learn::LearnOptions;
use crate::graft::tasks::{overlap_matrix, percent, spawn_graft, GraftRequest, GraftUpdate};
use crate::graft::{GraftMethod, Mask};

#[derive(Args, Debug)]
pub struct GraftArgs {
    /// The fine-tune: a zoo name (minilm-sentiment, …, built first if missing; or a single-task
    /// decoder such as tiny-add) or a BERT classifier folder.
    #[arg(long)]
    finetuned: String,
    /// The pretrained model (zoo name or folder); by default the zoo fine-tune's base.
    #[arg(long)]
    base: Option<String>,
    /// The task (needed for the multi-task minilm-all; by default the fine-tune's own).
    #[arg(long, value_parser = named::<ClassTask>())]
    task: Option<ClassTask>,
    /// Kept fraction of the transformer-block parameters; several separated by commas
    /// (1e-4 = 0.01%).
    #[arg(long, value_delimiter = ',', default_value = "1e-4")]
    sparsity: Vec<f64>,
    /// One or several, separated by commas.
    #[arg(long, value_delimiter = ',', value_parser = named::<GraftMethod>(), default_value = "learned")]
    method: Vec<GraftMethod>,
    /// Steps of the mask search.
    #[arg(long, default_value_t = LearnOptions::default().steps)]
    steps: usize,
    /// Learning rate of the mask search (the official code's is 1e7; see docs/graft.md).
    #[arg(long, default_value_t = LearnOptions::default().lr)]
    lr: f64,
    /// Seed of S's initialisation, the gradient rows, random and DARE masks.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Score the test and out-of-distribution sets with calibration (ECE, 15 bins).
    #[arg(long)]
    eval: bool,
    /// Write each mask (mask.safetensors) and grafted model (grafted/) under this folder.
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

pub fn run(args: GraftArgs) -> Result<()> {
    let mut request = GraftRequest::new(&args.finetuned);
    request.base = args.base;
    request.task = args.task;
    request.sparsities = args.sparsity;
    request.methods = args.method;
    request.learn.steps = args.steps;
    request.learn.lr = args.lr;
    request.learn.seed = args.seed;
    request.eval = args.eval;
    request.out = args.out;
    let front = Front::new("loading");
    let json = args.json;
    let outcome = front.wait(spawn_graft(&front.board, request), |update, bar| {
        if let (GraftUpdate::Row(r), false) = (update, json) {
            super::say(
                bar,
                format!(
                    "{} {}: validation {:.3}",
                    r.label,
                    percent(r.sparsity),
                    r.val_accuracy
                ),
            );
        }
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&outcome.to_json())?);
        return Ok(());
    }
    println!(
        "{} on {} ({} parameters in the transformer blocks; base {})",
        outcome.finetuned.display(),
        outcome.task,
        outcome.eligible,
        outcome.base.display()
    );
    println!(
        "\n| model | kept | kept params | val acc | test acc | test ECE | OOD acc |\n\
         |---|---:|---:|---:|---:|---:|---:|"
    );
    let cell = |v: Option<f64>| {
        v.filter(|v| v.is_finite())
            .map_or("–".to_string(), |v| format!("{v:.3}"))
    };
    for r in &outcome.rows {
        println!(
            "| {} | {} | {} | {:.3} | {} | {} | {} |",
            r.label,
            percent(r.sparsity),
            r.kept,
            r.val_accuracy,
            cell(r.test.as_ref().map(|t| t.accuracy)),
            cell(r.test.as_ref().map(|t| t.ece)),
            cell(r.ood.as_ref().map(|t| t.accuracy)),
        );
    }
    for r in outcome.rows.iter().filter(|r| r.out.is_some()) {
        if let Some(out) = &r.out {
            println!("wrote {}", out.display());
        }
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct OverlapArgs {
    /// Mask files (mask.safetensors from `graft --out`) over the same pretrained model.
    #[arg(required = true, num_args = 2..)]
    masks: Vec<PathBuf>,
    #[arg(long)]
    json: bool,
}

/// A mask's short name: its task and method from the file's metadata, else the file name.
fn mask_label(mask: &Mask, path: &std::path::Path) -> String {
    match (mask.meta.get("task"), mask.meta.get("finetuned")) {
        (Some(task), Some(ft)) => {
            let model = std::path::Path::new(ft)
                .file_name()
                .map_or(ft.clone(), |f| f.to_string_lossy().into_owned());
            format!("{model}/{task}")
        }
        _ => path.display().to_string(),
    }
}

pub fn overlap(args: OverlapArgs) -> Result<()> {
    let masks: Vec<Mask> = args
        .masks
        .iter()
        .map(|p| Mask::load(p))
        .collect::<Result<_>>()?;
    let refs: Vec<&Mask> = masks.iter().collect();
    let matrix = overlap_matrix(&refs)?;
    let labels: Vec<String> = masks
        .iter()
        .zip(&args.masks)
        .map(|(m, p)| mask_label(m, p))
        .collect();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "masks": args.masks, "labels": labels,
                "kept": masks.iter().map(Mask::count).collect::<Vec<_>>(),
                "overlap": matrix,
            }))?
        );
        return Ok(());
    }
    println!("overlap[i][j] = |γi ∩ γj| / |γj|\n");
    println!(
        "| | {} |\n|---|{}",
        labels.join(" | "),
        "---:|".repeat(labels.len())
    );
    for (l, row) in labels.iter().zip(&matrix) {
        let cells: Vec<String> = row.iter().map(|v| format!("{v:.3}")).collect();
        println!("| {l} | {} |", cells.join(" | "));
    }
    Ok(())
}
