//! `alignscope gan …`: the GAN lab's jobs (`gan::pretrain`, `gan::adapt`, `gan::eval`) and
//! sample grids.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};

use super::{named, print_json, say, Front};
use crate::gan::adapt::{spawn_adapt, AdaptRequest, Adapted, Method, Target};
use crate::gan::eval::{spawn_eval, GanEvalRequest};
use crate::gan::faces::{Domain, SIZE};
use crate::gan::features::{spawn_train, FeatureRecipe};
use crate::gan::pretrain::{preview_latents, spawn_pretrain, Gan, PretrainRecipe};

#[derive(Subcommand, Debug)]
pub enum GanCommand {
    /// Train the source GAN on procedural faces (about 30 minutes on 2 cores).
    Pretrain(PretrainArgs),
    /// Train the feature network FD and precision/recall are measured in (about 3 minutes).
    Features(FeaturesArgs),
    /// Adapt the source GAN to a target domain or image from one reference image.
    Adapt(AdaptArgs),
    /// A PNG grid of samples from the source or an adapted generator.
    Sample(SampleArgs),
    /// FD, precision/recall and target share of every method on every target domain.
    Eval(EvalArgs),
}

#[derive(Args, Debug)]
pub struct FeaturesArgs {
    #[arg(long)]
    steps: Option<usize>,
    /// Output folder (default: assets/gan/models/feature-net).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct AdaptArgs {
    /// A target domain (sunglasses, baby, sketch) or a PNG/JPEG file.
    #[arg(long)]
    target: String,
    /// Which face of the domain is the reference.
    #[arg(long, default_value_t = 0)]
    reference: u64,
    #[arg(long, value_parser = named::<Method>(), default_value_t = Method::Genda)]
    method: Method,
    #[arg(long)]
    steps: Option<usize>,
    #[arg(long)]
    lr: Option<f64>,
    /// GenDA's training truncation β.
    #[arg(long)]
    truncation: Option<f64>,
    #[arg(long)]
    seed: Option<u64>,
    /// The source GAN folder (default: the shipped one).
    #[arg(long)]
    source: Option<PathBuf>,
    /// Save the adapted generator in this folder.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write the adapted generator's samples on the preview latents to this PNG.
    #[arg(long)]
    grid: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct SampleArgs {
    /// A generator folder: the source GAN (default) or one `gan adapt --out` saved.
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long, default_value_t = 16)]
    count: usize,
    /// Inference truncation ψ (1 = none).
    #[arg(long, default_value_t = 1.0)]
    psi: f64,
    #[arg(long, default_value_t = 8)]
    columns: usize,
    /// The PNG written.
    #[arg(long, default_value = "samples.png")]
    out: PathBuf,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Only these target domains (repeatable; default: all three).
    #[arg(long, value_parser = named::<Domain>())]
    target: Vec<Domain>,
    /// Only these methods (repeatable; default: all).
    #[arg(long, value_parser = named::<Method>())]
    method: Vec<Method>,
    #[arg(long)]
    samples: Option<usize>,
    #[arg(long)]
    steps: Option<usize>,
    #[arg(long)]
    seed: Option<u64>,
    /// Folder of eval.json and the grids (default: assets/gan/results); GenDA's generators
    /// are saved only with the default.
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct PretrainArgs {
    #[arg(long)]
    steps: Option<usize>,
    #[arg(long)]
    batch: Option<usize>,
    #[arg(long)]
    seed: Option<u64>,
    /// Output folder (default: assets/gan/models/gan-source).
    #[arg(long)]
    out: Option<PathBuf>,
    /// A PNG of the generator's samples every 500 steps, at this path.
    #[arg(long)]
    previews: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

pub fn run(command: GanCommand) -> Result<()> {
    match command {
        GanCommand::Pretrain(args) => pretrain(args),
        GanCommand::Features(args) => features(args),
        GanCommand::Adapt(args) => adapt(args),
        GanCommand::Sample(args) => sample(args),
        GanCommand::Eval(args) => eval(args),
    }
}

fn pretrain(args: PretrainArgs) -> Result<()> {
    let mut r = PretrainRecipe::default();
    r.steps = args.steps.unwrap_or(r.steps);
    r.batch = args.batch.unwrap_or(r.batch);
    r.seed = args.seed.unwrap_or(r.seed);
    let out = args.out.unwrap_or_else(crate::gan::source_dir);
    let front = Front::new("training the source GAN");
    let mut preview_error = None;
    let outcome = front.wait(spawn_pretrain(&front.board, r, out.clone()), |s, bar| {
        if s.step % 100 == 0 || s.step == s.total {
            say(
                bar,
                format!(
                    "step {}/{} D {:.3} G {:.3} ({:.0} s)",
                    s.step, s.total, s.d_loss, s.g_loss, s.seconds
                ),
            );
        }
        if let (Some(path), Some(images)) = (&args.previews, &s.preview) {
            if s.step % 500 == 0 || s.step == s.total {
                let written =
                    crate::gan::grid::write_png(path, images, crate::gan::faces::SIZE, 8, 3);
                preview_error = written.err().or(preview_error.take());
            }
        }
    })?;
    if let Some(e) = preview_error {
        return Err(e);
    }
    if args.json {
        return print_json(&outcome);
    }
    println!(
        "source GAN: {} steps in {:.0} s, D {:.3} G {:.3} → {}",
        outcome.steps,
        outcome.seconds,
        outcome.d_loss,
        outcome.g_loss,
        out.display()
    );
    Ok(())
}

fn features(args: FeaturesArgs) -> Result<()> {
    let mut r = FeatureRecipe::default();
    r.steps = args.steps.unwrap_or(r.steps);
    let out = args.out.unwrap_or_else(crate::gan::features_dir);
    let front = Front::new("training the feature network");
    let trained = front.wait(spawn_train(&front.board, r, out.clone()), |s, bar| {
        if s.step % 100 == 0 || s.step == s.total {
            say(
                bar,
                format!("step {}/{} loss {:.4}", s.step, s.total, s.loss),
            );
        }
    })?;
    if args.json {
        return print_json(&trained);
    }
    println!(
        "feature network: loss {:.3} → {:.3} → {}",
        trained.first_loss,
        trained.last_loss,
        out.display()
    );
    Ok(())
}

/// A domain name, or else a path to an image file.
fn parse_target(text: &str, reference: u64) -> Target {
    match Domain::ALL.iter().find(|d| d.name() == text) {
        Some(&domain) => Target::Domain {
            domain,
            index: reference,
        },
        None => Target::Image {
            path: PathBuf::from(text),
        },
    }
}

fn adapt(args: AdaptArgs) -> Result<()> {
    let target = parse_target(&args.target, args.reference);
    // Read the image before starting the job, so a bad file is the whole error.
    target.reference()?;
    let mut r = AdaptRequest::new(args.method, target);
    r.steps = args.steps.unwrap_or(r.steps);
    r.lr = args.lr.unwrap_or(r.lr);
    r.truncation = args.truncation.unwrap_or(r.truncation);
    r.seed = args.seed.unwrap_or(r.seed);
    r.source = args.source.unwrap_or(r.source);
    r.out = args.out;
    r.preview_every = if args.grid.is_some() { r.steps } else { 0 };
    let front = Front::new("adapting");
    let mut last_preview = None;
    let done = front.wait(spawn_adapt(&front.board, r), |s, bar| {
        if s.step % 50 == 0 || s.step == s.total {
            say(
                bar,
                format!(
                    "step {}/{} G {:.3} D {:.3}",
                    s.step, s.total, s.generator_loss, s.critic_loss
                ),
            );
        }
        if s.preview.is_some() {
            last_preview = s.preview.clone();
        }
    })?;
    if let (Some(path), Some(images)) = (&args.grid, &last_preview) {
        crate::gan::grid::write_png(path, images, SIZE, 8, 3)?;
    }
    let outcome = done.outcome;
    if args.json {
        return print_json(&outcome);
    }
    println!(
        "{} → {}: {} steps in {:.1} s (G {:.3}, D {:.3}){}",
        outcome.method,
        outcome.target,
        outcome.steps,
        outcome.seconds,
        outcome.generator_loss,
        outcome.critic_loss,
        outcome
            .out
            .as_ref()
            .map(|o| format!(" → {}", o.display()))
            .unwrap_or_default()
    );
    Ok(())
}

fn sample(args: SampleArgs) -> Result<()> {
    let model = match &args.model {
        Some(dir) => Adapted::load(dir)?,
        None => Adapted::source(Gan::load(&crate::gan::source_dir(), true)?),
    };
    let images = model.sample(
        &preview_latents(args.count, model.gan.cfg.latent)?,
        args.psi,
    )?;
    crate::gan::grid::write_png(&args.out, &images, SIZE, args.columns, 3)?;
    if args.json {
        return print_json(&serde_json::json!({ "out": args.out, "count": images.len() }));
    }
    println!("{} samples → {}", images.len(), args.out.display());
    Ok(())
}

fn eval(args: EvalArgs) -> Result<()> {
    let mut r = GanEvalRequest::default();
    if !args.target.is_empty() {
        r.targets = args.target;
    }
    if !args.method.is_empty() {
        r.methods = args.method;
    }
    r.samples = args.samples.unwrap_or(r.samples);
    r.steps = args.steps.unwrap_or(r.steps);
    r.seed = args.seed.unwrap_or(r.seed);
    if let Some(out) = args.out {
        r.out = out;
        r.save_genda = None;
    }
    let front = Front::new("evaluating the GAN lab");
    let outcome = front.wait(spawn_eval(&front.board, r), |p, bar| {
        if p.row.is_some() {
            say(bar, p.message.clone());
        }
    })?;
    if args.json {
        return print_json(&outcome);
    }
    println!("| target | model | FD | precision | recall | target share | seconds |");
    println!("|---|---|---|---|---|---|---|");
    for row in &outcome.rows {
        println!(
            "| {} | {} | {:.2} | {:.3} | {:.3} | {:.2} | {:.0} |",
            row.target, row.model, row.fd, row.precision, row.recall, row.target_share, row.seconds
        );
    }
    Ok(())
}
