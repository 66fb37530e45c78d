//! `alignscope caption …`: the caption lab's jobs (`caption::build`, `caption::discritune`,
//! `caption::eval`, `caption::gallery`).

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};

use super::{named, print_json, say, Front};
use crate::caption::build::{spawn_build, BuildRequest, Part};
use crate::caption::captioner::Decoding;
use crate::caption::discritune::{spawn_discritune, DiscriTuneRequest};
use crate::caption::eval::{spawn_eval, CaptionEvalRequest};
use crate::caption::gallery::{captioners, spawn_gallery, write_sheet};
use crate::caption::scenes::Domain;

#[derive(Subcommand, Debug)]
pub enum CaptionCommand {
    /// Train the lab's models: both retrievers and the base captioner (about 20 minutes).
    Build(BuildArgs),
    /// Score a captioner on a domain: P@1 (both retrievers), BLEU-4, CIDEr-D, length.
    Eval(EvalArgs),
    /// Fine-tune the captioner with DiscriTune (REINFORCE on the retriever's reward).
    Discritune(DiscriTuneArgs),
    /// A PNG contact sheet of test scenes with the base and the tuned captions.
    Sample(SampleArgs),
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Only these models (repeatable; default: all, in order).
    #[arg(long, value_parser = named::<Part>())]
    only: Vec<Part>,
    /// Training steps of each model (default: each recipe's).
    #[arg(long)]
    steps: Option<usize>,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[arg(long, value_parser = named::<Domain>(), default_value_t = Domain::Source)]
    domain: Domain,
    /// The captioner folder (default: the base captioner).
    #[arg(long)]
    captioner: Option<PathBuf>,
    /// The row's name in the results (default: `base`, or the folder's name).
    #[arg(long)]
    label: Option<String>,
    /// Test scenes captioned.
    #[arg(long)]
    images: Option<usize>,
    #[arg(long, value_parser = named::<Decoding>())]
    decoding: Option<Decoding>,
    /// Result file (default: assets/caption/results/LABEL-DOMAIN.json).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct DiscriTuneArgs {
    #[arg(long, value_parser = named::<Domain>(), default_value_t = Domain::Source)]
    domain: Domain,
    #[arg(long)]
    steps: Option<usize>,
    /// Images per batch (each caption's candidates).
    #[arg(long)]
    batch: Option<usize>,
    #[arg(long)]
    lr: Option<f64>,
    /// Decoding while training.
    #[arg(long, value_parser = named::<Decoding>())]
    decoding: Option<Decoding>,
    /// The captioner tuned (default: the base captioner).
    #[arg(long)]
    captioner: Option<PathBuf>,
    #[arg(long)]
    seed: Option<u64>,
    /// Output folder (default: assets/caption/models/captioner-discritune).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct SampleArgs {
    #[arg(long, value_parser = named::<Domain>(), default_value_t = Domain::Source)]
    domain: Domain,
    /// Test scenes shown.
    #[arg(long, default_value_t = 12)]
    count: usize,
    #[arg(long, value_parser = named::<Decoding>(), default_value_t = Decoding::Beam)]
    decoding: Decoding,
    #[arg(long, default_value_t = 4)]
    columns: usize,
    /// The PNG written.
    #[arg(long, default_value = "captions.png")]
    out: PathBuf,
    #[arg(long)]
    json: bool,
}

pub fn run(command: CaptionCommand) -> Result<()> {
    match command {
        CaptionCommand::Build(args) => build(args),
        CaptionCommand::Eval(args) => eval(args),
        CaptionCommand::Discritune(args) => discritune(args),
        CaptionCommand::Sample(args) => sample(args),
    }
}

fn build(args: BuildArgs) -> Result<()> {
    let mut r = BuildRequest::default();
    if !args.only.is_empty() {
        r.parts = args.only;
    }
    if let Some(steps) = args.steps {
        r.retriever_a.steps = steps;
        r.retriever_b.steps = steps;
        r.captioner.steps = steps;
    }
    let front = Front::new("training the caption lab's models");
    let outcome = front.wait(spawn_build(&front.board, r), |s, bar| {
        if s.step % 100 == 0 || s.step == s.total {
            say(
                bar,
                format!("{} step {}/{} loss {:.4}", s.part, s.step, s.total, s.loss),
            );
        }
    })?;
    if args.json {
        return print_json(&outcome);
    }
    for b in &outcome.built {
        println!(
            "{}: loss {:.3} → {:.3} in {:.0} s → {}",
            b.part,
            b.first_loss,
            b.last_loss,
            b.seconds,
            b.part.dir().display()
        );
    }
    Ok(())
}

fn eval(args: EvalArgs) -> Result<()> {
    let mut r = CaptionEvalRequest::new(args.domain);
    if let Some(dir) = args.captioner {
        let label = dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "captioner".into());
        r = CaptionEvalRequest::of(dir, &label, args.domain);
    }
    if let Some(label) = args.label {
        r.out = crate::caption::eval::result_path(&label, args.domain);
        r.label = label;
    }
    r.images = args.images.unwrap_or(r.images);
    r.decoding = args.decoding.unwrap_or(r.decoding);
    r.out = args.out.unwrap_or(r.out);
    let front = Front::new("captioning");
    let s = front.wait(spawn_eval(&front.board, r), |_, _| {})?;
    if args.json {
        return print_json(&s);
    }
    println!(
        "{} on {} ({}, {} scenes): P@1 {:.1} (judge {:.1}) · BLEU-4 {:.1} · CIDEr-D {:.3} · \
         {:.1} words · {} distinct · {:.0} captions/s",
        s.label,
        s.domain,
        s.decoding,
        s.images,
        s.p_at_1,
        s.p_at_1_judge,
        s.bleu4,
        s.cider_d,
        s.length,
        s.vocabulary,
        s.captions_per_second
    );
    Ok(())
}

fn discritune(args: DiscriTuneArgs) -> Result<()> {
    let mut r = DiscriTuneRequest {
        domain: args.domain,
        ..Default::default()
    };
    r.steps = args.steps.unwrap_or(r.steps);
    r.batch = args.batch.unwrap_or(r.batch);
    r.lr = args.lr.unwrap_or(r.lr);
    r.decoding = args.decoding.unwrap_or(r.decoding);
    r.captioner = args.captioner.unwrap_or(r.captioner);
    r.seed = args.seed.unwrap_or(r.seed);
    r.out = args.out.unwrap_or(r.out);
    let front = Front::new("DiscriTune");
    let outcome = front.wait(spawn_discritune(&front.board, r), |s, bar| {
        if let Some(m) = &s.measure {
            say(
                bar,
                format!(
                    "step {}/{} reward {:.3} P@1 {:.1} (judge {:.1}) e.g. {:?}",
                    s.step,
                    s.total,
                    s.reward,
                    m.p_at_1,
                    m.p_at_1_judge,
                    m.samples.first().map(String::as_str).unwrap_or("")
                ),
            );
        }
    })?;
    if args.json {
        return print_json(&outcome);
    }
    println!(
        "P@1 {:.1} → {:.1} (held-out judge {:.1} → {:.1}) in {:.0} s → {}",
        outcome.before.p_at_1,
        outcome.after.p_at_1,
        outcome.before.p_at_1_judge,
        outcome.after.p_at_1_judge,
        outcome.seconds,
        outcome.out.display()
    );
    Ok(())
}

fn sample(args: SampleArgs) -> Result<()> {
    let front = Front::new("captioning");
    let g = front.wait(
        spawn_gallery(&front.board, args.domain, args.decoding, 0, args.count),
        |_, _| {},
    )?;
    write_sheet(&args.out, &g, args.columns)?;
    if args.json {
        return print_json(&g.items.iter().map(|i| &i.captions).collect::<Vec<_>>());
    }
    let names: Vec<&str> = captioners().iter().map(|(n, _)| *n).collect();
    println!(
        "{} scenes, captions by {} → {}",
        g.items.len(),
        names.join(" and "),
        args.out.display()
    );
    Ok(())
}
