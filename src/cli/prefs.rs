//! `alignscope prefs …`: the preference lab's jobs (`prefs::sets`, `prefs::train`,
//! `prefs::eval`).

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};

use super::{named, print_json, say, Front};
use crate::prefs::eval::{spawn_eval, PrefEvalRequest, Summary};
use crate::prefs::sets::{spawn_build, BuildRequest};
use crate::prefs::train::{spawn_train, PrefMethod, PrefTrainRequest};

#[derive(Subcommand, Debug)]
pub enum PrefsCommand {
    /// Build the style and knowledge preference sets (resumes an interrupted build).
    Build(BuildArgs),
    /// Train the chat model on the preference sets with a method (LoRA on q/k/v/o).
    Train(TrainArgs),
    /// Score a model on the test questions: fact, style, knowledge use, set rankings.
    Eval(EvalArgs),
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Training questions.
    #[arg(long)]
    train: Option<usize>,
    /// Test questions.
    #[arg(long)]
    test: Option<usize>,
    /// Triples given with each question.
    #[arg(long)]
    k: Option<usize>,
    /// The chat model (default: the shipped SmolLM2).
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long)]
    seed: Option<u64>,
    /// Output JSONL (default: assets/prefs/sets.jsonl).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[arg(long, value_parser = named::<PrefMethod>(), default_value_t = PrefMethod::Knowpat)]
    method: PrefMethod,
    /// Weight of the alignment loss.
    #[arg(long = "lambda")]
    lambda: Option<f64>,
    #[arg(long)]
    steps: Option<usize>,
    /// Training questions per step.
    #[arg(long)]
    questions: Option<usize>,
    #[arg(long)]
    lr: Option<f64>,
    /// The chat model trained (default: the shipped SmolLM2).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Preference sets (default: assets/prefs/sets.jsonl).
    #[arg(long)]
    sets: Option<PathBuf>,
    #[arg(long)]
    seed: Option<u64>,
    /// Output folder (default: assets/prefs/models/METHOD).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A trained method (its default output folder); without it (and without --trained),
    /// the base model.
    #[arg(long, value_parser = named::<PrefMethod>())]
    method: Option<PrefMethod>,
    /// A trained output folder (instead of the method's default one).
    #[arg(long)]
    trained: Option<PathBuf>,
    /// The base model (default: the shipped SmolLM2).
    #[arg(long)]
    model: Option<PathBuf>,
    #[arg(long)]
    sets: Option<PathBuf>,
    /// The row's name (default: the method's, or `base`).
    #[arg(long)]
    label: Option<String>,
    /// Test questions answered.
    #[arg(long)]
    questions: Option<usize>,
    /// Test questions whose preference sets are ranked.
    #[arg(long)]
    ranked: Option<usize>,
    /// Result file (default: assets/prefs/results/LABEL.json).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

pub fn run(command: PrefsCommand) -> Result<()> {
    match command {
        PrefsCommand::Build(args) => build(args),
        PrefsCommand::Train(args) => train(args),
        PrefsCommand::Eval(args) => eval(args),
    }
}

fn build(args: BuildArgs) -> Result<()> {
    let mut r = BuildRequest::new();
    r.train = args.train.unwrap_or(r.train);
    r.test = args.test.unwrap_or(r.test);
    r.k = args.k.unwrap_or(r.k);
    r.model = args.model.unwrap_or(r.model);
    r.seed = args.seed.unwrap_or(r.seed);
    r.out = args.out.unwrap_or(r.out);
    let front = Front::new("building preference sets");
    let outcome = front.wait(spawn_build(&front.board, r), |_, _| {})?;
    if args.json {
        return print_json(&outcome);
    }
    println!(
        "{} questions ({} new) in {:.0} s → {}",
        outcome.questions,
        outcome.new,
        outcome.seconds,
        outcome.out.display()
    );
    Ok(())
}

fn train(args: TrainArgs) -> Result<()> {
    let mut r = PrefTrainRequest::new(args.method);
    r.lambda = args.lambda.unwrap_or(r.lambda);
    r.steps = args.steps.unwrap_or(r.steps);
    r.questions = args.questions.unwrap_or(r.questions);
    r.lr = args.lr.unwrap_or(r.lr);
    r.model = args.model.unwrap_or(r.model);
    r.sets = args.sets.unwrap_or(r.sets);
    r.seed = args.seed.unwrap_or(r.seed);
    r.out = args.out.unwrap_or(r.out);
    let front = Front::new("preference training");
    let json = args.json;
    let outcome = front.wait(spawn_train(&front.board, r), |s, bar| {
        let every = (s.total / 10).max(1);
        if !json && (s.step % every == 0 || s.step == s.total) {
            say(
                bar,
                format!(
                    "step {:>4}/{}  loss {:.4}  sft {:.4}  align {:.4}  {:.0} s",
                    s.step, s.total, s.loss, s.sft, s.align, s.seconds
                ),
            );
        }
    })?;
    if json {
        return print_json(&outcome);
    }
    println!(
        "{}: {} questions, {:.0} s ({:.0} tok/s) → {}",
        outcome.method,
        outcome.questions,
        outcome.seconds,
        outcome.tokens_per_second,
        outcome.model.display()
    );
    Ok(())
}

fn row(name: &str, s: &Summary) -> String {
    format!(
        "{name:<8} {:>3}  fact {:5.1}  EM {:5.1}  F1 {:5.1}  BLEU {:5.1}  ROUGE-L {:5.1}  triple {:5.1}  misled {:5.1}",
        s.questions, s.fact, s.exact, s.f1, s.bleu, s.rouge_l, s.uses_triple, s.misled
    )
}

fn eval(args: EvalArgs) -> Result<()> {
    let mut r = PrefEvalRequest::new(args.method);
    if let Some(dir) = args.trained {
        r.trained = Some(dir);
    }
    if let Some(label) = args.label {
        r.out = crate::prefs::eval::results_dir().join(format!("{label}.json"));
        r.label = label;
    }
    r.base = args.model.unwrap_or(r.base);
    r.sets = args.sets.unwrap_or(r.sets);
    r.questions = args.questions.unwrap_or(r.questions);
    r.ranked = args.ranked.unwrap_or(r.ranked);
    r.out = args.out.unwrap_or(r.out);
    let front = Front::new("scoring");
    let outcome = front.wait(spawn_eval(&front.board, r), |_, _| {})?;
    if args.json {
        return print_json(&outcome);
    }
    println!("{}", outcome.label);
    println!("{}", row("all", &outcome.all));
    println!("{}", row("single", &outcome.single));
    println!("{}", row("two-hop", &outcome.two_hop));
    println!(
        "rankings agree with the preference order: style {:.1}%, knowledge {:.1}%",
        outcome.style_agreement, outcome.knowledge_agreement
    );
    Ok(())
}
