//! `alignscope prune`, `alignscope prune-sweep` and `alignscope merge`: the Delta lab headless,
//! through the same jobs as the Delta page (`delta::tasks`).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use serde_json::json;

use super::{named, print_flat, Front};
use crate::delta::lab::QChoice;
use crate::delta::tasks::{
    spawn_merge, spawn_prune, spawn_sweep, MergeRequest, PruneRequest, Subject, SweepRequest,
    CURVE_METHODS, CURVE_RATES,
};
use crate::delta::{MergeConfig, Method, PruneSpec, TensorFilter};
use crate::gpu::DeviceChoice;

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// The pretrained model (folder, .safetensors file, or zoo model name).
    #[arg(long)]
    base: String,
    /// The fine-tuned model (folder, .safetensors file, or zoo model name).
    #[arg(long)]
    finetuned: String,
    #[arg(long, value_parser = named::<Method>(), default_value_t = Method::Dare)]
    method: Method,
    /// Fraction of δ dropped, p (keep rate 1 − p).
    #[arg(long)]
    drop_rate: f64,
    /// DAREx-q's q: a number in (0, 1], `auto` (validation search), `unsupervised` or
    /// `analytical` (the last three need a zoo fine-tune). Default 1 − p.
    #[arg(long)]
    q: Option<QChoice>,
    #[arg(long, default_value_t = PruneSpec::new(Method::Dare, 0.0).seed)]
    seed: u64,
    #[arg(long, value_parser = named::<TensorFilter>(), default_value_t = TensorFilter::All)]
    tensors: TensorFilter,
    /// Write the pruned checkpoint here (without it: statistics, and the score with --eval).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Score the pruned model on its zoo task.
    #[arg(long)]
    eval: bool,
    #[arg(long, value_parser = named::<DeviceChoice>(), default_value_t = DeviceChoice::default())]
    device: DeviceChoice,
    #[arg(long)]
    json: bool,
}

pub fn prune(args: PruneArgs) -> Result<()> {
    let subject = Subject::resolve(&args.base, &args.finetuned)?;
    let mut request = PruneRequest::new(subject, args.method, args.drop_rate);
    request.spec.seed = args.seed;
    request.spec.filter = args.tensors;
    request.eval = args.eval;
    request.out = args.out;
    request.device = args.device;
    if let Some(q) = args.q {
        request.q = q;
    }
    let front = Front::new(&format!("pruning {}", args.finetuned));
    let outcome = front.wait(spawn_prune(&front.board, request), |_, _| {})?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome.to_json())?);
    } else {
        print_flat(&outcome.to_json(), "");
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct SweepArgs {
    /// A zoo fine-tune (`alignscope zoo list`).
    #[arg(long)]
    model: String,
    #[arg(long, value_delimiter = ',', value_parser = named::<Method>(),
          default_values_t = CURVE_METHODS.to_vec())]
    methods: Vec<Method>,
    #[arg(long, value_delimiter = ',', default_values_t = CURVE_RATES.to_vec())]
    rates: Vec<f64>,
    /// How DAREx-q picks q (see `prune --q`).
    #[arg(long, default_value = "auto")]
    q: QChoice,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, value_parser = named::<TensorFilter>(), default_value_t = TensorFilter::All)]
    tensors: TensorFilter,
    #[arg(long)]
    json: bool,
}

pub fn prune_sweep(args: SweepArgs) -> Result<()> {
    let mut request = SweepRequest::new(&args.model);
    request.template.seed = args.seed;
    request.template.filter = args.tensors;
    request.methods = args.methods;
    request.rates = args.rates;
    request.q = args.q;
    if !args.json {
        println!("| model | method | drop rate | q | score | kept | s |\n|---|---|---:|---:|---:|---:|---:|");
    }
    let front = Front::new(&format!("sweeping {}", args.model));
    let name = args.model.clone();
    let curves = front.wait(spawn_sweep(&front.board, request), |p, bar| {
        if !args.json {
            let q = p.q.map_or("–".into(), |q| format!("{q:.4}"));
            let row = format!(
                "| {name} | {} | {} | {q} | {:.3} | {:.4} | {:.1} |",
                p.method.name(),
                p.drop_rate,
                p.score,
                p.kept_fraction,
                p.seconds
            );
            bar.suspend(|| println!("{row}"));
        }
    })?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"model": args.model, "points": curves.0}))?
        );
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// A mergekit YAML config (task_arithmetic, ties, dare_linear or dare_ties).
    config: PathBuf,
    /// The merged checkpoint and its `merge.yml` go here.
    #[arg(long)]
    out: PathBuf,
    /// Score the merged model on the task of every zoo decoder in the merge.
    #[arg(long)]
    eval: bool,
    #[arg(long)]
    json: bool,
}

pub fn merge(args: MergeArgs) -> Result<()> {
    let config = MergeConfig::read(&args.config)?;
    for key in &config.ignored {
        eprintln!(
            "note: {key} in {} is read but not applied",
            args.config.display()
        );
    }
    let request = MergeRequest {
        config,
        out: Some(args.out.clone()),
        eval: args.eval,
    };
    let front = Front::new(&format!("merging into {}", args.out.display()));
    let outcome = front.wait(spawn_merge(&front.board, request), |_, _| {})?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome.to_json())?);
    } else {
        print_flat(&outcome.to_json(), "");
    }
    Ok(())
}
