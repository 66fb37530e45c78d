//! `alignscope fuse`: the Fusion lab headless.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};
use serde_json::json;

use crate::fusion::lab::{run as run_lab, LabEvent, LabOptions, Target};
use crate::fusion::transport::Solver;
use crate::fusion::vit_fusion::{BranchMap, CostKind, FuseOptions, QkPolicy, ResidualPolicy};

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
    /// The model aligned onto the anchor (folder or zoo name, e.g. vit-a).
    #[arg(long)]
    model_a: String,
    /// The other parent (folder or zoo name, e.g. vit-b or vit-narrow).
    #[arg(long)]
    model_b: String,
    /// Neuron cost: activations over sample scenes, or weights.
    #[arg(long, value_enum, default_value = "acts")]
    cost: CostKind,
    #[arg(long, value_enum, default_value = "sinkhorn")]
    solver: SolverChoice,
    /// Sinkhorn regulariser on the max-normalised cost (default 0.08 for acts, 0.06 for weights).
    #[arg(long)]
    reg: Option<f64>,
    #[arg(long, value_enum, default_value = "separate")]
    qk: QkPolicy,
    #[arg(long, value_enum, default_value = "mean")]
    residual: ResidualPolicy,
    /// Which map a branch's last layer (attention output, feed-forward output) takes.
    #[arg(long, value_enum, default_value = "own")]
    branch_map: BranchMap,
    /// Whose widths the fused model takes (the anchor).
    #[arg(long, value_enum, default_value = "narrower")]
    target: Target,
    /// Scenes the activation cost is measured on.
    #[arg(long, default_value_t = crate::fusion::activations::DEFAULT_SAMPLES)]
    samples: usize,
    /// Fine-tune the fused models (and, for comparison, the anchor) this many steps.
    #[arg(long, default_value_t = 0)]
    finetune: usize,
    /// Seed of the fine-tune's stream of training scenes.
    #[arg(long, default_value_t = crate::fusion::lab::DEFAULT_FINETUNE_SEED)]
    seed: u64,
    /// Write the fused model here (the fine-tuned one with --finetune; the last solver's with
    /// --solver both).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Score parents, vanilla average and fused models on held-out scenes.
    #[arg(long)]
    eval: bool,
    #[arg(long)]
    json: bool,
}

pub fn run(args: FuseArgs) -> Result<()> {
    let (a, b) = (
        super::resolve_model(&args.model_a)?,
        super::resolve_model(&args.model_b)?,
    );
    let reg = args.reg.unwrap_or(FuseOptions::default_reg(args.cost));
    anyhow::ensure!(reg > 0.0 && reg.is_finite(), "--reg must be positive");
    let solvers = match args.solver {
        SolverChoice::Emd => vec![Solver::Emd],
        SolverChoice::Sinkhorn => vec![Solver::Sinkhorn { reg }],
        SolverChoice::Both => vec![Solver::Emd, Solver::Sinkhorn { reg }],
    };
    let mut opts = LabOptions::new(args.cost, solvers);
    opts.qk = args.qk;
    opts.residual = args.residual;
    opts.branch_map = args.branch_map;
    opts.target = args.target;
    opts.samples = args.samples;
    opts.finetune_steps = args.finetune;
    opts.finetune_seed = args.seed;
    if !args.eval {
        opts.eval_scenes = 0;
    }
    let bar = super::progress_bar("loading");
    let report = run_lab(&a, &b, &opts, &mut |event| {
        match event {
            LabEvent::Stage(s) => bar.set_message(s),
            LabEvent::Map {
                map, done, total, ..
            } => bar.set_message(format!("map {done}/{total}: {}", map.name)),
            LabEvent::Row(r) => bar.println(format!("{}: accuracy {:.3}", r.model, r.accuracy)),
            LabEvent::Step(s) => bar.set_message(format!("fine-tune {}/{}", s.step, s.total)),
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    let last = report.runs.last().expect("at least one solver");
    if let Some(out) = &args.out {
        last.finetuned.as_ref().unwrap_or(&last.weights).save(out)?;
    }
    let maps: Vec<_> = report
        .runs
        .iter()
        .map(|r| {
            json!({
                "solver": r.solver,
                "maps": r.maps.iter().map(|m| json!({
                    "name": m.name,
                    "rows": m.plan.rows,
                    "cols": m.plan.cols,
                    "sharpness": m.sharpness(),
                    "transport_cost": m.transport_and_mean_cost().map(|c| c.0),
                    "mean_cost": m.transport_and_mean_cost().map(|c| c.1),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "model_a": a, "model_b": b,
                "widths": [report.widths.0, report.widths.1],
                "anchor": if report.anchor_is_a { "A" } else { "B" },
                "options": opts,
                "rows": report.rows,
                "runs": maps,
                "out": args.out,
            }))?
        );
        return Ok(());
    }
    println!(
        "A: {} (width {}), B: {} (width {}); fused into {}'s widths",
        a.display(),
        report.widths.0,
        b.display(),
        report.widths.1,
        if report.anchor_is_a { "A" } else { "B" }
    );
    if !report.rows.is_empty() {
        println!("\n| model | width | accuracy | loss |\n|---|---:|---:|---:|");
        for r in &report.rows {
            println!(
                "| {} | {} | {:.3} | {:.3} |",
                r.model, r.width, r.accuracy, r.loss
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
    if let Some(out) = &args.out {
        println!("\nwrote {}", out.display());
    }
    Ok(())
}
