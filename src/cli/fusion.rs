//! `alignscope fuse`: the Fusion lab headless, through the same job as the Fusion page
//! (`fusion::tasks`).

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};

use super::{named, Front};
use crate::fusion::lab::{LabOptions, Target};
use crate::fusion::options::{BranchMap, CostKind, FuseOptions, QkPolicy, ResidualPolicy};
use crate::fusion::tasks::{spawn_fuse, FuseRequest, FusionUpdate};
use crate::fusion::transport::Solver;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SolverChoice {
    /// Exact OT: hard maps.
    Emd,
    /// Log-domain Sinkhorn: soft maps.
    Sinkhorn,
    /// Both, one row each.
    Both,
}

#[derive(Args, Debug)]
pub struct FuseArgs {
    /// The model aligned onto the anchor (folder or zoo name, e.g. vit-a, bert-a, tiny-base-b).
    #[arg(long)]
    model_a: String,
    /// The other parent (folder or zoo name, e.g. vit-b, vit-narrow, bert-b, tiny-base).
    #[arg(long)]
    model_b: String,
    /// A further parent fused into the anchor (repeat the flag): the paper's fusion of more
    /// than two models; needs the anchor's widths.
    #[arg(long)]
    more: Vec<String>,
    /// Neuron cost: activations over the sample inputs, or weights.
    #[arg(long, value_parser = named::<CostKind>(), default_value_t = LabOptions::default().cost)]
    cost: CostKind,
    #[arg(long, value_enum, default_value = "both")]
    solver: SolverChoice,
    /// Sinkhorn regulariser on the max-normalised cost (default 0.08 for acts, 0.06 for weights).
    #[arg(long)]
    reg: Option<f64>,
    #[arg(long, value_parser = named::<QkPolicy>(), default_value_t = LabOptions::default().qk)]
    qk: QkPolicy,
    #[arg(long, value_parser = named::<ResidualPolicy>(),
          default_value_t = LabOptions::default().residual)]
    residual: ResidualPolicy,
    /// Which map a branch's last layer (attention output, feed-forward output) takes.
    #[arg(long, value_parser = named::<BranchMap>(),
          default_value_t = LabOptions::default().branch_map)]
    branch_map: BranchMap,
    /// Whose widths the fused model takes (the anchor).
    #[arg(long, value_parser = named::<Target>(), default_value_t = LabOptions::default().target)]
    target: Target,
    /// Inputs the activation cost is measured on: scenes (ViT), sentences (BERT) or text rows
    /// (decoders).
    #[arg(long, default_value_t = LabOptions::default().samples)]
    samples: usize,
    /// Fine-tune the fused models (and, for comparison, the anchor) this many steps; 0: none.
    #[arg(long, default_value_t = LabOptions::default().finetune_steps)]
    finetune: usize,
    /// Seed of the fine-tune's stream of training data.
    #[arg(long, default_value_t = LabOptions::default().finetune_seed)]
    seed: u64,
    /// Held-out items every model is scored on (scenes, sentences, text rows); 0: no scores.
    #[arg(long, default_value_t = LabOptions::default().eval_scenes)]
    eval_scenes: usize,
    /// Write the fused model here (the fine-tuned one when fine-tuning; the last solver's with
    /// --solver both).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

pub fn run(args: FuseArgs) -> Result<()> {
    let reg = args.reg.unwrap_or(FuseOptions::default_reg(args.cost));
    anyhow::ensure!(reg > 0.0 && reg.is_finite(), "--reg must be positive");
    let mut request = FuseRequest::new(&args.model_a, &args.model_b);
    let o = &mut request.options;
    o.solvers = match args.solver {
        SolverChoice::Emd => vec![Solver::Emd],
        SolverChoice::Sinkhorn => vec![Solver::Sinkhorn { reg }],
        SolverChoice::Both => vec![Solver::Emd, Solver::Sinkhorn { reg }],
    };
    o.cost = args.cost;
    o.qk = args.qk;
    o.residual = args.residual;
    o.branch_map = args.branch_map;
    o.target = args.target;
    o.samples = args.samples;
    o.finetune_steps = args.finetune;
    o.finetune_seed = args.seed;
    o.eval_scenes = args.eval_scenes;
    request.out = args.out;
    request.more = args.more;
    let options = request.options.clone();
    let front = Front::new("loading");
    let json = args.json;
    let outcome = front.wait(spawn_fuse(&front.board, request), |update, bar| {
        if let (FusionUpdate::Row(r), false) = (update, json) {
            super::say(bar, format!("{}: {}", r.model, r.describe()));
        }
    })?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&outcome.to_json(&options))?
        );
        return Ok(());
    }
    let report = &outcome.report;
    println!(
        "A: {} (width {}), B: {} (width {}); fused into {}'s widths",
        outcome.model_a.display(),
        report.widths.0,
        outcome.model_b.display(),
        report.widths.1,
        if report.anchor_is_a { "A" } else { "B" }
    );
    if let Some(first) = report.rows.first() {
        println!(
            "\n| model | width | {} | loss |\n|---|---:|---:|---:|",
            first.metric
        );
        for r in &report.rows {
            println!(
                "| {} | {} | {:.3} | {:.3} |",
                r.model, r.width, r.score, r.loss
            );
        }
    }
    for run in &report.runs {
        let mean = run.maps.iter().map(|m| m.sharpness()).sum::<f64>() / run.maps.len() as f64;
        println!(
            "\n{}: {} maps, mean sharpness {mean:.3}",
            run.solver.label(),
            run.maps.len()
        );
    }
    if let Some(out) = &outcome.out {
        println!("\nwrote {}", out.display());
    }
    Ok(())
}
