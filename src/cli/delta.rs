//! `alignscope prune`, `alignscope prune-sweep` and `alignscope merge`: the Delta lab headless.

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use clap::{Args, ValueEnum};
use serde_json::json;

use crate::delta::lab::{decoder_task_scores, sweep, zoo_pairs, QChoice, ZooProbe, EVIDENCE_RATES};
use crate::delta::{
    prune_checkpoint, Checkpoint, Engine, MergeConfig, Method, Output, PruneSpec, RunSummary,
    TensorFilter,
};
use crate::gpu::DeltaGpu;
use crate::zoo::specs::Recipe;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceChoice {
    /// A hardware GPU when wgpu finds one, else the CPU.
    Auto,
    Cpu,
    /// Any wgpu adapter, software ones included.
    Gpu,
}

/// The wgpu adapter to prune on, if any.
pub fn pick_device(choice: DeviceChoice) -> Result<Option<DeltaGpu>> {
    Ok(match choice {
        DeviceChoice::Cpu => None,
        DeviceChoice::Gpu => Some(DeltaGpu::new()?.context("--device gpu: wgpu finds no adapter")?),
        DeviceChoice::Auto => DeltaGpu::new().ok().flatten().filter(|g| !g.is_software()),
    })
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    /// The pretrained model (folder, .safetensors file, or zoo model name).
    #[arg(long)]
    base: String,
    /// The fine-tuned model (folder, .safetensors file, or zoo model name).
    #[arg(long)]
    finetuned: String,
    #[arg(long, value_enum, default_value = "dare")]
    method: Method,
    /// Fraction of δ dropped, p (keep rate 1 − p).
    #[arg(long)]
    drop_rate: f64,
    /// DAREx-q's q: a number in (0, 1], `auto` (validation search), `unsupervised` or
    /// `analytical` (the last three need a zoo fine-tune). Default 1 − p.
    #[arg(long)]
    q: Option<String>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, value_enum, default_value = "all")]
    tensors: TensorFilter,
    /// Write the pruned checkpoint here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Score the pruned model on its zoo task.
    #[arg(long)]
    eval: bool,
    #[arg(long, value_enum, default_value = "auto")]
    device: DeviceChoice,
    #[arg(long)]
    json: bool,
}

/// The zoo fine-tune at `path`, if it is one.
fn zoo_name_of(path: &Path) -> Option<&'static str> {
    let canon = path.canonicalize().ok()?;
    zoo_pairs()
        .into_iter()
        .find(|s| s.path().canonicalize().ok().as_ref() == Some(&canon))
        .map(|s| s.name)
}

/// A run's progress as the percentage and tensor name on the spinner.
fn bar_progress(bar: &indicatif::ProgressBar) -> impl FnMut(u64, u64, &str) -> Result<()> + '_ {
    |done, total, name| {
        let percent = 100.0 * done as f64 / total.max(1) as f64;
        bar.set_message(format!("{percent:.0}% {name}"));
        Ok(())
    }
}

fn summary_json(s: &RunSummary) -> serde_json::Value {
    json!({
        "kept_fraction": s.kept_fraction(),
        "tensors_pruned": s.tensors.len(),
        "tensors_carried": s.carried.len(),
        "bytes_written": s.bytes_written,
        "seconds": s.seconds,
        "device": s.device,
    })
}

pub fn prune(args: PruneArgs) -> Result<()> {
    ensure!(
        args.out.is_some() || args.eval,
        "nothing to do: give --out DIR to write the pruned model, --eval to score it, or both"
    );
    let (base_dir, ft_dir) = (
        super::resolve_model(&args.base)?,
        super::resolve_model(&args.finetuned)?,
    );
    let how = match &args.q {
        Some(q) => QChoice::parse(q)?,
        None => QChoice::Fixed(1.0 - args.drop_rate),
    };
    let needs_zoo = args.eval
        || !matches!(how, QChoice::Fixed(_)) && args.method == Method::DarexQ
        || args.method == Method::ActivationAware;
    let zoo = zoo_name_of(&ft_dir);
    let mut probe = match (needs_zoo, zoo) {
        (false, _) => None,
        (true, Some(name)) => {
            let probe = ZooProbe::new(name)?;
            ensure!(
                base_dir.canonicalize()? == probe.base.dir.canonicalize()?,
                "{} is not the zoo base of {name} ({})",
                base_dir.display(),
                probe.base.dir.display()
            );
            Some(probe)
        }
        (true, None) => bail!(
            "{}: --eval, --q auto/unsupervised/analytical and activation-aware pruning need a zoo \
             fine-tune (its task data); this folder is not one",
            ft_dir.display()
        ),
    };
    let gpu = pick_device(args.device)?;
    let mut spec = PruneSpec {
        seed: args.seed,
        filter: args.tensors,
        ..PruneSpec::new(args.method, args.drop_rate)
    };
    spec.validate()?;
    let engine = Engine {
        gpu: gpu.as_ref(),
        ..Default::default()
    };
    let mut report = json!({
        "method": args.method.name(),
        "drop_rate": spec.drop_rate,
        "keep_rate": spec.keep_rate(),
        "seed": spec.seed,
        "tensors": args.tensors,
    });
    let inputs;
    let mut engine = engine;
    if let Some(p) = probe.as_mut() {
        if args.method == Method::DarexQ {
            if let Some(search) = p.choose_q(&mut spec, how, &engine)? {
                report["q_search"] = serde_json::to_value(&search)?;
            }
        }
        if args.method == Method::ActivationAware {
            inputs = p.input_stats()?;
            engine.inputs = Some(&inputs);
        }
    } else if let QChoice::Fixed(q) = how {
        spec.q = q;
    }
    if args.method == Method::DarexQ {
        report["q"] = json!(spec.q);
        report["per_matrix_q"] = json!(spec.tensor_q.len());
    }
    spec.validate()?;
    if let Some(out) = &args.out {
        let (base, ft) = (Checkpoint::open(&base_dir)?, Checkpoint::open(&ft_dir)?);
        let bar = super::progress_bar(&format!("pruning into {}", out.display()));
        let summary = prune_checkpoint(
            &base,
            &ft,
            &spec,
            &engine,
            &Output::new(out),
            &mut bar_progress(&bar),
        )?;
        bar.finish_and_clear();
        report["out"] = json!(out.display().to_string());
        report["run"] = summary_json(&summary);
    }
    if let (true, Some(p)) = (args.eval, probe.as_mut()) {
        let (dir, summary) = p.prune(&spec, &engine)?;
        report["score"] = json!(p.test_score(&dir)?);
        report["kept_fraction"] = json!(summary.kept_fraction());
        let entry = crate::zoo::Manifest::load(&crate::zoo::manifest_path())?
            .models
            .into_iter()
            .find(|m| m.name == p.spec.name);
        if let Some(e) = entry {
            report["finetuned_score"] = json!(e.score);
            report["base_score"] = json!(e.base_score);
            report["metric"] = json!(e.metric);
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_flat(&report, "");
    }
    Ok(())
}

/// `key: value` lines of a JSON object, nested keys joined with dots.
fn print_flat(v: &serde_json::Value, prefix: &str) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                print_flat(v, &key);
            }
        }
        serde_json::Value::Array(a) if a.len() > 8 => println!("{prefix}: [{} values]", a.len()),
        other => println!("{prefix}: {other}"),
    }
}

#[derive(Args, Debug)]
pub struct SweepArgs {
    /// A zoo fine-tune (`alignscope zoo list`).
    #[arg(long)]
    model: String,
    #[arg(long, value_delimiter = ',', default_values = ["dare", "darex-q", "magnitude"])]
    methods: Vec<Method>,
    #[arg(long, value_delimiter = ',', default_values_t = EVIDENCE_RATES.to_vec())]
    rates: Vec<f64>,
    /// How DAREx-q picks q (see `prune --q`).
    #[arg(long, default_value = "auto")]
    q: String,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, value_enum, default_value = "all")]
    tensors: TensorFilter,
    #[arg(long)]
    json: bool,
}

pub fn prune_sweep(args: SweepArgs) -> Result<()> {
    let mut probe = ZooProbe::new(&args.model)?;
    let template = PruneSpec {
        seed: args.seed,
        filter: args.tensors,
        ..PruneSpec::new(Method::Dare, 0.0)
    };
    let how = QChoice::parse(&args.q)?;
    if !args.json {
        println!("| model | method | drop rate | q | score | kept | s |\n|---|---|---:|---:|---:|---:|---:|");
    }
    let name = args.model.clone();
    let json_out = args.json;
    let points = sweep(
        &mut probe,
        &template,
        &args.methods,
        &args.rates,
        how,
        &Engine::default(),
        &mut |p| {
            if !json_out {
                let q = p.q.map_or("–".into(), |q| format!("{q:.4}"));
                println!(
                    "| {name} | {} | {} | {q} | {:.3} | {:.4} | {:.1} |",
                    p.method.name(),
                    p.drop_rate,
                    p.score,
                    p.kept_fraction,
                    p.seconds
                );
            }
            Ok(())
        },
    )?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json!({"model": args.model, "points": points}))?
        );
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// A mergekit YAML config (task_arithmetic, ties, dare_linear or dare_ties).
    config: PathBuf,
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
    let bar = super::progress_bar(&format!("merging into {}", args.out.display()));
    let summary = config.run(&args.out, &mut bar_progress(&bar))?;
    bar.finish_and_clear();
    let mut report = json!({
        "merge_method": config.spec.method.name(),
        "models": config.models.iter().map(|m| m.display().to_string()).collect::<Vec<_>>(),
        "out": args.out.display().to_string(),
        "run": summary_json(&summary),
    });
    if args.eval {
        let mut tasks = Vec::new();
        for m in &config.models {
            let spec = zoo_name_of(m)
                .and_then(|n| crate::zoo::specs::spec(n).ok())
                .with_context(|| {
                    format!("--eval: {} is not a zoo decoder fine-tune", m.display())
                })?;
            let Recipe::Decoder(r) = spec.recipe else {
                bail!("--eval: {} is not a zoo decoder fine-tune", m.display());
            };
            for t in r.tasks {
                if !tasks.contains(&t) {
                    tasks.push(t);
                }
            }
        }
        let scores = decoder_task_scores(&args.out, &tasks)?;
        report["scores"] = scores
            .iter()
            .map(|(t, s)| (t.name().to_string(), json!(s)))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_flat(&report, "");
    }
    Ok(())
}
