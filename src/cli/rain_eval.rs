//! `rain-eval` and `self-eval-accuracy`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde_json::json;

use crate::rain::eval::read_labelled;
use crate::rain::task::{spawn_rain_eval, spawn_self_eval, RainEvalRequest};
use crate::rain::{AnswerBy, Setting};

#[derive(Args, Debug)]
pub struct RainEvalArgs {
    /// Prompts, one per line.
    #[arg(long)]
    prompts: PathBuf,
    /// Adversarial suffix appended to every prompt.
    #[arg(long, conflicts_with = "suffix_file")]
    suffix: Option<String>,
    /// File whose first non-empty line is the suffix.
    #[arg(long)]
    suffix_file: Option<PathBuf>,
    #[command(flatten)]
    options: super::rain::RainOptions,
    /// Judge of both final answers (a shipped judge's name, a GGUF file or a model folder);
    /// default: the run's judge.
    #[arg(long)]
    score_judge: Option<PathBuf>,
    /// Evaluate only the first N prompts.
    #[arg(long)]
    limit: Option<usize>,
    /// Every answer as JSON Lines (default: rain-eval.jsonl in the current folder).
    #[arg(long, default_value = "rain-eval.jsonl")]
    out: PathBuf,
    #[arg(long)]
    json: bool,
}

pub fn rain_eval_cmd(args: RainEvalArgs) -> anyhow::Result<()> {
    let config = args.options.config()?;
    let text = std::fs::read_to_string(&args.prompts)
        .with_context(|| format!("{}: cannot read", args.prompts.display()))?;
    let mut prompts: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if prompts.is_empty() {
        anyhow::bail!("{}: no prompts (one per line)", args.prompts.display());
    }
    prompts.truncate(args.limit.unwrap_or(prompts.len()));
    let suffix = match (&args.suffix, &args.suffix_file) {
        (Some(s), _) => s.clone(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("{}: cannot read", f.display()))?
            .lines()
            .find(|l| !l.trim().is_empty())
            .map(|l| l.trim().to_string())
            .ok_or_else(|| anyhow::anyhow!("{}: empty suffix file", f.display()))?,
        (None, None) => String::new(),
    };
    let front = super::Front::new("loading");
    let model = front.load_model(args.options.model.clone())?;
    let request = RainEvalRequest {
        prompts,
        suffix,
        config,
        scorer: args.score_judge.clone(),
        out: args.out.clone(),
    };
    let run = front.wait(spawn_rain_eval(&front.board, model, request), |_, _| {})?;
    let s = &run;
    if args.json {
        println!("{}", json!({ "summary": s, "answers": args.out }));
    } else {
        println!("prompts: {}   suffix: {:?}", s.prompts, s.suffix);
        println!("| | vanilla | RAIN |\n|---|---:|---:|");
        println!(
            "| attack success rate | {:.2} | {:.2} |",
            s.attack_success_vanilla, s.attack_success_rain
        );
        println!(
            "| judged {} by {}, binary (−1…1) | {:+.2} | {:+.2} |",
            args.options.setting,
            args.score_judge
                .as_ref()
                .map_or("the run's judge".into(), |p| p.display().to_string()),
            s.self_harmless_vanilla,
            s.self_harmless_rain
        );
        println!(
            "| judged, soft (−1…1) | {:+.3} | {:+.3} |",
            s.self_soft_vanilla, s.self_soft_rain
        );
        if let (Some(v), Some(r)) = (s.sentiment_vanilla, s.sentiment_rain) {
            println!("| sentiment by sentence embedding (> 0 positive) | {v:+.3} | {r:+.3} |");
        }
        println!(
            "| mean answer tokens | {:.1} | {:.1} |",
            s.mean_tokens_vanilla, s.mean_tokens_rain
        );
        println!(
            "| seconds per prompt | {:.1} | {:.1} |",
            s.seconds_per_prompt_vanilla, s.seconds_per_prompt_rain
        );
        println!(
            "RAIN time / vanilla time: {:.1}×; answers in {}",
            s.rain_over_vanilla_time,
            args.out.display()
        );
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct SelfEvalArgs {
    /// JSON Lines: {"text": "User: …\nAssistant: …", "label": "good"|"bad", "setting"?: NAME}.
    #[arg(long)]
    labelled: PathBuf,
    /// Setting for examples that name none.
    #[arg(long, value_parser = super::named::<Setting>(), default_value_t = Setting::default())]
    setting: Setting,
    #[arg(long)]
    model: Option<PathBuf>,
    /// Read the judgement from the option words instead of the letters.
    #[arg(long)]
    judge_words: bool,
    /// Judgement template for every example (default: each setting's).
    #[arg(long)]
    template: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

pub fn self_eval_cmd(args: SelfEvalArgs) -> anyhow::Result<()> {
    let examples = read_labelled(&args.labelled)?;
    let front = super::Front::new("loading");
    let model = front.load_model(args.model.clone())?;
    let answer_by = if args.judge_words {
        AnswerBy::Words
    } else {
        AnswerBy::Letters
    };
    let handle = spawn_self_eval(
        &front.board,
        model,
        examples,
        args.setting,
        answer_by,
        args.template.clone(),
    );
    let report = front.wait(handle, |_, _| {})?.0;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("| setting | examples | accuracy (binary) | undecided | accuracy (soft sign) | AUC (soft) |\n|---|---:|---:|---:|---:|---:|");
        for r in &report {
            let auc = r.soft_auc.map_or("—".into(), |a| format!("{a:.2}"));
            println!(
                "| {} | {} | {:.2} | {} | {:.2} | {auc} |",
                r.setting, r.examples, r.accuracy_binary, r.undecided, r.accuracy_soft
            );
        }
    }
    Ok(())
}
