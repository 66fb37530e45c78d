//! `rain-eval` and `self-eval-accuracy`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde_json::json;

use crate::embed::SentenceEmbedder;
use crate::jobs::{JobSpec, Report};
use crate::rain::eval::{
    rain_eval, read_labelled, self_eval_accuracy, EvalSummary, SettingAccuracy,
};
use crate::rain::AnswerBy;

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
    /// Evaluate only the first N prompts.
    #[arg(long)]
    limit: Option<usize>,
    /// Every answer as JSON Lines (default: rain-eval.jsonl in the current folder).
    #[arg(long, default_value = "rain-eval.jsonl")]
    out: PathBuf,
    #[arg(long)]
    json: bool,
}

impl Report for EvalSummary {
    fn metrics(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
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
    let (board, bar, model) = super::load_model(args.options.model.clone())?;
    let embedder = SentenceEmbedder::load(&crate::assets::embedding_model())?;
    let spec = JobSpec {
        kind: "rain-eval".into(),
        title: format!("RAIN eval: {} prompts", prompts.len()),
        inputs: json!({ "prompts": args.prompts, "suffix": suffix, "config": config, "out": args.out }),
        seed: Some(config.seed),
    };
    let out_path = args.out.clone();
    let total = prompts.len();
    let handle = board.spawn(spec, move |ctx| {
        let tmp = out_path.with_extension("jsonl.tmp");
        let mut out = std::io::BufWriter::new(
            std::fs::File::create(&tmp)
                .with_context(|| format!("{}: cannot create", tmp.display()))?,
        );
        let mut written = Ok(());
        let mut done = 0;
        let rows = rain_eval(model, Some(&embedder), &config, &prompts, &suffix, |row| {
            written = serde_json::to_writer(&mut out, row)
                .map_err(anyhow::Error::from)
                .and_then(|_| Ok(out.write_all(b"\n").and_then(|_| out.flush())?));
            done += 1;
            ctx.progress(
                Some(done as f32 / total as f32),
                format!("{done}/{total} prompts"),
            );
            ctx.send(row.clone());
            written.is_ok() && !ctx.is_cancelled()
        })?;
        written?;
        out.flush()?;
        drop(out);
        std::fs::rename(&tmp, &out_path)?;
        Ok(EvalSummary::from_rows(&rows, &suffix))
    });
    let mut done = 0;
    let run = handle
        .wait(|_row| {
            done += 1;
            bar.set_message(format!("{done}/{total} prompts"));
        })
        .map_err(anyhow::Error::msg)?;
    bar.finish_and_clear();
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
            "| self-evaluation, binary ({}, −1…1) | {:+.2} | {:+.2} |",
            args.options.setting, s.self_harmless_vanilla, s.self_harmless_rain
        );
        println!(
            "| self-evaluation, soft (−1…1) | {:+.3} | {:+.3} |",
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
    #[arg(long, default_value = "harmlessness")]
    setting: String,
    #[arg(long)]
    model: Option<PathBuf>,
    /// Read the judgement from the option words instead of the letters.
    #[arg(long)]
    judge_words: bool,
    #[arg(long)]
    json: bool,
}

pub fn self_eval_cmd(args: SelfEvalArgs) -> anyhow::Result<()> {
    let default = super::rain::parse_setting(&args.setting)?;
    let examples = read_labelled(&args.labelled)?;
    let (_board, bar, model) = super::load_model(args.model.clone())?;
    bar.set_message(format!("judging {} examples", examples.len()));
    let answer_by = if args.judge_words {
        AnswerBy::Words
    } else {
        AnswerBy::Letters
    };
    let report: Vec<SettingAccuracy> = self_eval_accuracy(model, &examples, default, answer_by)?;
    bar.finish_and_clear();
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
