//! `alignscope zoo list|build|eval`: the model zoo, headless.

use anyhow::Result;
use clap::Subcommand;

use crate::checkpoint::stats::{per_layer, total, TensorStats};
use crate::zoo::specs::spec;
use crate::zoo::tasks::{spawn_build, spawn_rescore};
use crate::zoo::{self, BuildEvent, Manifest, ModelEntry};

#[derive(Subcommand, Debug)]
pub enum ZooCommand {
    /// The zoo's models with their tasks and recorded scores.
    List {
        #[arg(long)]
        json: bool,
        /// A Markdown table (for docs/zoo.md).
        #[arg(long)]
        markdown: bool,
    },
    /// Regenerate the data and retrain (fixed seeds), then score and update manifest.json.
    Build {
        /// Only these models (repeat the flag); default: all, bases first.
        #[arg(long)]
        only: Vec<String>,
    },
    /// Re-score models as they lie on disk and compare with manifest.json.
    Eval {
        #[arg(long)]
        only: Vec<String>,
        #[arg(long)]
        json: bool,
        /// Write the new scores into manifest.json (training time and loss curve are kept).
        #[arg(long)]
        write: bool,
    },
    /// Save held-out shape scenes as one PNG grid (4× enlarged) and print their captions.
    Scenes {
        #[arg(long)]
        out: std::path::PathBuf,
        #[arg(long, default_value_t = 24)]
        count: usize,
    },
    /// How far a fine-tune moved from its base, layer by layer.
    Deltas {
        /// A zoo fine-tune, e.g. tiny-add.
        name: String,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: ZooCommand) -> Result<()> {
    match cmd {
        ZooCommand::List { json, markdown } => {
            let manifest = Manifest::load(&zoo::manifest_path())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&manifest)?);
            } else if markdown {
                print!("{}", markdown_table(&manifest));
            } else {
                print_table(&manifest.models);
            }
            Ok(())
        }
        ZooCommand::Build { only } => {
            let started = std::time::Instant::now();
            let front = super::Front::new("building the zoo");
            // The spinner shows each model's step and loss (the job's progress line).
            let manifest = front.wait(spawn_build(&front.board, only), |event, spinner| {
                if let BuildEvent::Evaluated { entry } = event {
                    super::say(spinner, row(&entry));
                }
            })?;
            eprintln!(
                "built in {:.0} s; {} models, {:.0} s of training in all",
                started.elapsed().as_secs_f64(),
                manifest.models.len(),
                manifest.total_train_seconds()
            );
            Ok(())
        }
        ZooCommand::Eval { only, json, write } => {
            let front = super::Front::new("scoring");
            let done = front.wait(spawn_rescore(&front.board, only, write), |r, bar| {
                if !json {
                    let line = format!("{}  (manifest {:.4})", row(&r.entry), r.manifest_score);
                    bar.suspend(|| println!("{line}"));
                }
            })?;
            for name in &done.not_built {
                eprintln!("{name}: not built yet (alignscope zoo build --only {name})");
            }
            if json {
                let out: Vec<_> = done
                    .rows
                    .iter()
                    .map(|r| {
                        serde_json::json!({
                            "name": r.entry.name, "score": r.entry.score,
                            "manifest_score": r.manifest_score, "base_score": r.entry.base_score,
                            "eval_seconds": r.entry.eval_seconds,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&out)?);
            }
            Ok(())
        }
        ZooCommand::Scenes { out, count } => {
            use crate::data::shapes::{scene, Split, IMAGE_SIZE};
            const SCALE: usize = 4;
            const COLUMNS: usize = 6;
            let cell = IMAGE_SIZE * SCALE + 4;
            let rows = count.div_ceil(COLUMNS);
            let (w, h) = (COLUMNS * cell, rows.max(1) * cell);
            let mut img =
                image::RgbImage::from_pixel(w as u32, h as u32, image::Rgb([255, 255, 255]));
            for i in 0..count {
                let s = scene(Split::Eval, i as u64);
                let rgb = s.rgb8();
                let (ox, oy) = ((i % COLUMNS) * cell + 2, (i / COLUMNS) * cell + 2);
                for y in 0..IMAGE_SIZE * SCALE {
                    for x in 0..IMAGE_SIZE * SCALE {
                        let p = 3 * ((y / SCALE) * IMAGE_SIZE + x / SCALE);
                        img.put_pixel(
                            (ox + x) as u32,
                            (oy + y) as u32,
                            image::Rgb([rgb[p], rgb[p + 1], rgb[p + 2]]),
                        );
                    }
                }
                println!("{i:>3}: {}", s.caption());
            }
            img.save(&out)
                .map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", out.display()))?;
            Ok(())
        }
        ZooCommand::Deltas { name, json } => {
            let s = spec(&name)?;
            let deltas = zoo::specs::deltas(&s)?;
            let mut layers = per_layer(&deltas);
            layers.push(total(&deltas));
            let rel = |d: &TensorStats| d.rel_norm_before().unwrap_or(f64::NAN);
            if json {
                let rows: Vec<_> = layers
                    .iter()
                    .map(|d| serde_json::json!({"layer": d.name, "mean_abs": d.mean_abs_before(), "rel_norm": rel(d)}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{name} − {}\n{:<12} {:>12} {:>12}",
                    s.base.unwrap_or_default(),
                    "layer",
                    "mean |δ|",
                    "‖δ‖/‖θ‖"
                );
                for d in &layers {
                    println!(
                        "{:<12} {:>12.3e} {:>12.4}",
                        d.name,
                        d.mean_abs_before(),
                        rel(d)
                    );
                }
            }
            Ok(())
        }
    }
}

fn row(m: &ModelEntry) -> String {
    let base = m
        .base_score
        .map(|b| format!("{b:.3}"))
        .unwrap_or_else(|| "-".into());
    format!(
        "{:<18} {:<6} {:<22} {:<17} {:>8.3}  base {:>6}  {:>8} params  train {:>5.0} s  eval {:.2} s",
        m.name, m.architecture, m.task, m.metric, m.score, base, m.parameters, m.train_seconds, m.eval_seconds
    )
}

fn print_table(models: &[ModelEntry]) {
    for m in models {
        println!("{}", row(m));
    }
}

fn markdown_table(manifest: &Manifest) -> String {
    let mut out = String::from(
        "| model | arch | base | task | metric | score | base score | params | train s | eval s | mean \\|δ\\| | ‖δ‖/‖θ‖ |\n\
         |---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let num = |v: Option<&f64>, digits: usize| {
        v.map(|x| format!("{x:.digits$}"))
            .unwrap_or_else(|| "–".into())
    };
    for m in &manifest.models {
        out += &format!(
            "| {} | {} | {} | {} | {} | {:.3} | {} | {:.2} M | {:.0} | {:.2} | {} | {} |\n",
            m.name,
            m.architecture,
            m.base.as_deref().unwrap_or("–"),
            m.task,
            m.metric,
            m.score,
            num(m.base_score.as_ref(), 3),
            m.parameters as f64 / 1e6,
            m.train_seconds,
            m.eval_seconds,
            m.details
                .get("delta/mean_abs")
                .map(|x| format!("{x:.2e}"))
                .unwrap_or_else(|| "–".into()),
            num(m.details.get("delta/rel_norm"), 3),
        );
    }
    out
}
