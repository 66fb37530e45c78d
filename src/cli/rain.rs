use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use crate::rain::task::{spawn_rain, RainRequest};
use crate::rain::{AnswerBy, Event, RainConfig, ScoreKind, Setting};

/// The search parameters shared by `rain` and `rain-eval`.
#[derive(Args, Debug)]
pub struct RainOptions {
    #[arg(long, value_parser = super::named::<Setting>(), default_value_t = Setting::default())]
    pub setting: Setting,
    /// GGUF file or Hugging Face model folder (default: the shipped SmolLM2).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Answer cap (RAIN and, in rain-eval, vanilla); default: the setting's.
    #[arg(long)]
    max_tokens: Option<usize>,
    #[arg(long)]
    seed: Option<u64>,
    /// Most simulations per committed step (the paper's T_max).
    #[arg(long)]
    t_max: Option<u32>,
    /// The fewest new simulations per committed step (unless it commits early).
    #[arg(long)]
    min_simulations: Option<u32>,
    /// Use the probability difference instead of the paper's binary self-evaluation score.
    #[arg(long)]
    soft_score: bool,
    /// Read the self-evaluation from the option words instead of the letters.
    #[arg(long)]
    judge_words: bool,
    /// Simulations run at once, steered apart by virtual loss and batched through the model
    /// (default 1: one at a time, as the paper).
    #[arg(long, default_value_t = 1)]
    parallel: usize,
    /// Ablation: no similarity update.
    #[arg(long)]
    no_similarity: bool,
    /// Ablation: no dynamic node addition.
    #[arg(long)]
    no_dynamic: bool,
    /// Judgement template file (see assets/rain/README.md).
    #[arg(long)]
    template: Option<PathBuf>,
    /// The model that judges: `self` (the generator, as in the paper), a GGUF file or Hugging
    /// Face folder, or a shipped judge's name (`harm-judge`: SmolLM2 fine-tuned to judge harm,
    /// built from its adapter on first use; its template is used unless --template names one).
    #[arg(long, default_value = "self")]
    judge: String,
}

impl RainOptions {
    /// The setting's defaults with the options applied.
    pub fn config(&self) -> anyhow::Result<RainConfig> {
        let mut config = RainConfig::for_setting(self.setting);
        config.max_tokens = self.max_tokens.unwrap_or(config.max_tokens);
        config.seed = self.seed.unwrap_or(config.seed);
        config.t_max = self.t_max.unwrap_or(config.t_max);
        config.min_new_simulations = self.min_simulations.unwrap_or(config.min_new_simulations);
        config.parallel = self.parallel.max(1);
        config.similarity_update = !self.no_similarity;
        config.dynamic_addition = !self.no_dynamic;
        config.template = self.template.clone();
        config.judge = (self.judge != "self").then(|| PathBuf::from(&self.judge));
        if self.judge_words {
            config.answer_by = AnswerBy::Words;
        }
        if self.soft_score {
            config.score = ScoreKind::Soft;
        }
        Ok(config)
    }
}

#[derive(Args, Debug)]
pub struct RainArgs {
    #[arg(long)]
    prompt: String,
    #[command(flatten)]
    options: RainOptions,
    /// Write every search event to this JSON Lines file.
    #[arg(long)]
    trace: Option<PathBuf>,
    /// Print one JSON object with the answer and the figures.
    #[arg(long)]
    json: bool,
}

pub fn run(args: RainArgs) -> anyhow::Result<()> {
    let config = args.options.config()?;
    let setting = config.setting;
    let front = super::Front::new("loading");
    let model = front.load_model(args.options.model.clone())?;
    let request = RainRequest {
        prompt: args.prompt.clone(),
        config: config.clone(),
        trace: args.trace.clone(),
        control: Default::default(),
    };
    let handle = spawn_rain(&front.board, model, request);
    let mut shown = 0;
    let mut stdout = std::io::stdout();
    let outcome = front.wait(handle, |event, bar| match &event {
        Event::Committed { answer, .. } if !args.json => {
            let new = answer.get(shown..).unwrap_or("");
            bar.suspend(|| {
                let _ = write!(stdout, "{new}");
                let _ = stdout.flush();
            });
            shown = answer.len();
        }
        _ => {}
    })?;
    let per_token = outcome.seconds / outcome.answer_tokens.len().max(1) as f64;
    if args.json {
        println!(
            "{}",
            json!({
                "prompt": args.prompt,
                "setting": setting.name(),
                "answer": outcome.answer,
                "simulations": outcome.simulations,
                "rewinds": outcome.rewinds,
                "commits": outcome.commits,
                "answer_tokens": outcome.answer_tokens.len(),
                "tokens_processed": outcome.tokens_processed,
                "seconds": outcome.seconds,
                "simulations_per_second": outcome.simulations as f64 / outcome.seconds.max(1e-9),
                "seconds_per_token": per_token,
                "config": config,
            })
        );
    } else {
        println!();
        eprintln!(
            "{} simulations, {} rewinds, {} commits, {} tokens processed, {:.1} s ({:.2} s per answer token)",
            outcome.simulations, outcome.rewinds, outcome.commits, outcome.tokens_processed, outcome.seconds, per_token
        );
    }
    Ok(())
}
