//! `alignscope promot` and `alignscope icl-eval`: the ProMoT lab's jobs (`promot::run`).

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use super::{named, Front};
use crate::promot::icl::{IclReport, IclTask, DEFAULT_SHOTS};
use crate::promot::run::{
    spawn_icl_eval, spawn_promot, IclRequest, PromotMethod, PromotRequest, RESULT_FILE,
};
use crate::promot::tasks::PromotTask;

#[derive(Args, Debug)]
pub struct PromotArgs {
    #[arg(long, value_parser = named::<PromotTask>(), default_value_t = PromotTask::Sentiment)]
    task: PromotTask,
    #[arg(long, value_parser = named::<PromotMethod>(), default_value_t = PromotMethod::Promot)]
    method: PromotMethod,
    /// Base model: GGUF or Hugging Face folder (default: the shipped SmolLM2).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Model-tuning steps (fine-tune; ProMoT's second stage).
    #[arg(long)]
    steps: Option<usize>,
    /// Prompt-tuning steps (prompt; ProMoT's first stage).
    #[arg(long)]
    prompt_steps: Option<usize>,
    #[arg(long)]
    prompt_len: Option<usize>,
    #[arg(long)]
    model_lr: Option<f64>,
    #[arg(long)]
    prompt_lr: Option<f64>,
    #[arg(long)]
    batch: Option<usize>,
    /// Shots per in-context question.
    #[arg(long)]
    shots: Option<usize>,
    /// The run's folder (default: assets/promot/TASK/METHOD, where the page reads results).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long)]
    json: bool,
}

pub fn run(args: PromotArgs) -> Result<()> {
    let mut r = PromotRequest::new(args.task, args.method);
    r.model = args.model.unwrap_or(r.model);
    r.steps = args.steps.unwrap_or(r.steps);
    r.prompt_steps = args.prompt_steps.unwrap_or(r.prompt_steps);
    r.prompt_len = args.prompt_len.unwrap_or(r.prompt_len);
    r.model_lr = args.model_lr.unwrap_or(r.model_lr);
    r.prompt_lr = args.prompt_lr.unwrap_or(r.prompt_lr);
    r.batch = args.batch.unwrap_or(r.batch);
    r.shots = args.shots.unwrap_or(r.shots);
    r.out = args.out.unwrap_or(r.out);
    r.seed = args.seed.unwrap_or(r.seed);
    let front = Front::new("loading");
    let json = args.json;
    let outcome = front.wait(spawn_promot(&front.board, r), |s, bar| {
        let rep = &s.step.report;
        let every = (rep.total / 10).max(1);
        if !json && (rep.step % every == 0 || rep.step == rep.total) {
            super::say(
                bar,
                format!(
                    "{} step {:>4}/{}  loss {:.4}  {:.0} tok/s",
                    s.stage, rep.step, rep.total, rep.loss, s.step.tokens_per_second
                ),
            );
        }
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
        return Ok(());
    }
    println!(
        "{} on {}: target accuracy {:.1}% · {:.0} s",
        outcome.request.method,
        outcome.request.task,
        100.0 * outcome.target.accuracy,
        outcome.seconds
    );
    print_report(&outcome.icl);
    println!("wrote {}", outcome.request.out.join(RESULT_FILE).display());
    Ok(())
}

#[derive(Args, Debug)]
pub struct IclEvalArgs {
    /// GGUF or Hugging Face folder (default: the shipped SmolLM2).
    #[arg(long)]
    model: Option<PathBuf>,
    /// A soft prompt put before every chat.
    #[arg(long)]
    soft_prompt: Option<PathBuf>,
    #[arg(long, default_value_t = DEFAULT_SHOTS)]
    shots: usize,
    /// Tasks to ask (default: the whole suite).
    #[arg(long, value_parser = named::<IclTask>(), value_delimiter = ',')]
    tasks: Vec<IclTask>,
    /// Count answers in this fine-tuning task's labels (format specialisation).
    #[arg(long, value_parser = named::<PromotTask>())]
    labels_of: Option<PromotTask>,
    /// Also print every question's answer.
    #[arg(long)]
    answers: bool,
    #[arg(long)]
    json: bool,
}

pub fn icl_eval(args: IclEvalArgs) -> Result<()> {
    let request = IclRequest {
        model: args.model.unwrap_or_else(crate::assets::default_model),
        soft_prompt: args.soft_prompt,
        shots: args.shots,
        tasks: if args.tasks.is_empty() {
            IclTask::ALL.to_vec()
        } else {
            args.tasks
        },
        labels_of: args.labels_of,
    };
    let front = Front::new("loading");
    let report = front.wait(spawn_icl_eval(&front.board, request), |_, _| {})?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    if args.answers {
        for a in &report.answers {
            println!(
                "{:<10} {:<16} → {:<16} {}",
                a.question.task.name(),
                a.question.query.input,
                a.got.trim().replace('\n', " "),
                if a.correct { "✓" } else { "✗" }
            );
        }
    }
    print_report(&report);
    Ok(())
}

fn print_report(report: &IclReport) {
    println!("in-context suite, {} shots:", report.shots);
    for t in &report.tasks {
        match t.specialised {
            Some(s) => println!(
                "  {:<10} {:>5.1}%   in the task's labels {:>5.1}%",
                t.task.name(),
                100.0 * t.accuracy,
                100.0 * s
            ),
            None => println!("  {:<10} {:>5.1}%", t.task.name(), 100.0 * t.accuracy),
        }
    }
    println!("  mean       {:>5.1}%", 100.0 * report.mean);
    if let Some(s) = report.specialised {
        println!("  format specialisation {:.1}%", 100.0 * s);
    }
}
