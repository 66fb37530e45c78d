//! Headless front end: `alignscope <command> …` runs the same engine as the GUI, with a
//! progress bar on stderr and `--json` output on stdout.

mod bench;
mod bench_caption;
mod bench_delta;
mod bench_gan;
mod bench_graft;
mod bench_ot;
mod bench_rag;
mod bench_train;
mod caption;
mod delta;
mod finetune;
mod fusion;
mod gan;
mod generate;
mod graft;
mod prefs;
mod promot;
mod rag;
mod rain;
mod rain_eval;
mod zoo;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::jobs::{JobBoard, JobHandle};
use crate::names::Named;

#[derive(Parser, Debug)]
#[command(
    name = "alignscope",
    version,
    about = "A desktop lab for aligned generation and model merges on real models.",
    long_about = "A desktop lab for aligned generation and model merges on real models.\n\n\
                  Without a command, opens the app. With one, runs the same engine headless."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate text with a language model (the Generate lab, headless).
    Generate(generate::GenerateArgs),
    /// RAIN: the model searches over, judges and rewinds its own partial answers.
    Rain(rain::RainArgs),
    /// Vanilla vs RAIN over a prompt set: attack success rate, self-evaluated harmlessness,
    /// length and time; every answer as JSON Lines.
    RainEval(rain_eval::RainEvalArgs),
    /// How often the model's self-evaluation agrees with labels.
    SelfEvalAccuracy(rain_eval::SelfEvalArgs),
    /// Show what a model file is: architecture, parameters, quantisation, context length.
    Info {
        /// GGUF file or Hugging Face model folder (default: the shipped SmolLM2).
        #[arg(long)]
        model: Option<PathBuf>,
    },
    /// Sentence embeddings (all-MiniLM-L6-v2 by default): one JSON array per input line.
    Embed {
        /// Sentence-transformer folder (config.json, tokenizer.json, model.safetensors).
        #[arg(long)]
        model: Option<PathBuf>,
        /// The sentences; read from stdin, one per line, when none are given.
        sentences: Vec<String>,
    },
    /// The model zoo: list, build (train) and evaluate the small models the labs use.
    #[command(subcommand)]
    Zoo(zoo::ZooCommand),
    /// Drop (and rescale) fine-tuning deltas: DARE, DAREx-q, magnitude, activation-aware.
    Prune(delta::PruneArgs),
    /// Task metric against drop rate on a zoo fine-tune, for several methods.
    PruneSweep(delta::SweepArgs),
    /// Merge fine-tunes from a mergekit YAML config.
    Merge(delta::MergeArgs),
    /// Optimal-transport fusion of two (or more) transformers of one family (ViT or BERT
    /// classifiers, llama-family decoders), against the parents and vanilla averaging.
    Fuse(fusion::FuseArgs),
    /// Skill localization: graft the few fine-tuned parameters that carry a task onto the
    /// pretrained model (learned mask, top-k, random, DARE) and score them.
    Graft(graft::GraftArgs),
    /// Overlap |γi ∩ γj| / |γj| of grafting masks over the same pretrained model.
    GraftOverlap(graft::OverlapArgs),
    /// Fine-tune a language model on chat data: full, LoRA or a soft prompt.
    Finetune(finetune::FinetuneArgs),
    /// ProMoT: fine-tune, prompt-tune, or both in two stages, then score the task and the
    /// in-context suite.
    Promot(promot::PromotArgs),
    /// Score a model on the in-context suite (k-shot chats), with the format-specialisation rate.
    IclEval(promot::IclEvalArgs),
    /// The RAG lab: retrieval over the knowledge base and DPA-RAG's preference alignment.
    #[command(subcommand)]
    Rag(rag::RagCommand),
    /// The preference lab: KnowPAT's style and knowledge preference sets, training (KnowPAT,
    /// SFT, DPO, ablations) and evaluation.
    #[command(subcommand)]
    Prefs(prefs::PrefsCommand),
    /// The caption lab: DiscriTune — captions a frozen retriever can find their image by.
    #[command(subcommand)]
    Caption(caption::CaptionCommand),
    /// The GAN lab: GenDA one-shot adaptation of a face GAN, FreezeD and fine-tuning.
    #[command(subcommand)]
    Gan(gan::GanCommand),
    /// Apply a LoRA adapter to its base model and write the merged model (GGUF or folder).
    MergeAdapter(finetune::MergeAdapterArgs),
    /// Speed benchmarks.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// Runs a headless command; the error, if any, is for the user.
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Generate(args) => generate::run(args),
        Command::Rain(args) => rain::run(args),
        Command::RainEval(args) => rain_eval::rain_eval_cmd(args),
        Command::SelfEvalAccuracy(args) => rain_eval::self_eval_cmd(args),
        Command::Info { model } => {
            let path = model.unwrap_or_else(crate::assets::default_model);
            let model = crate::lm::LanguageModel::load(&path)?;
            println!("{}", serde_json::to_string_pretty(&model.info)?);
            Ok(())
        }
        Command::Embed { model, sentences } => {
            let dir = model.unwrap_or_else(crate::assets::embedding_model);
            let embedder = crate::embed::SentenceEmbedder::load(&dir)?;
            let sentences = if sentences.is_empty() {
                std::io::stdin().lines().collect::<Result<Vec<_>, _>>()?
            } else {
                sentences
            };
            let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
            for (text, v) in sentences.iter().zip(embedder.embed(&refs)?) {
                println!("{}", serde_json::json!({ "text": text, "embedding": v }));
            }
            Ok(())
        }
        Command::Bench(cmd) => bench::run(cmd),
        Command::Zoo(cmd) => zoo::run(cmd),
        Command::Prune(args) => delta::prune(args),
        Command::PruneSweep(args) => delta::prune_sweep(args),
        Command::Merge(args) => delta::merge(args),
        Command::Fuse(args) => fusion::run(args),
        Command::Graft(args) => graft::run(args),
        Command::GraftOverlap(args) => graft::overlap(args),
        Command::Finetune(args) => finetune::run(args),
        Command::MergeAdapter(args) => finetune::merge_adapter(args),
        Command::Promot(args) => promot::run(args),
        Command::IclEval(args) => promot::icl_eval(args),
        Command::Rag(cmd) => rag::run(cmd),
        Command::Prefs(cmd) => prefs::run(cmd),
        Command::Caption(cmd) => caption::run(cmd),
        Command::Gan(cmd) => gan::run(cmd),
    }
}

/// clap's parser for an engine enum ([`Named`]): its names are the possible values, its
/// variants' doc comments their help.
pub(crate) fn named<T: Named>() -> NamedParser<T> {
    NamedParser(std::marker::PhantomData)
}

#[derive(Clone)]
pub(crate) struct NamedParser<T>(std::marker::PhantomData<fn() -> T>);

impl<T: Named> clap::builder::TypedValueParser for NamedParser<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        let text = value.to_string_lossy();
        crate::names::parse::<T>(&text).map_err(|e| {
            clap::Error::raw(clap::error::ErrorKind::InvalidValue, format!("{e}\n")).with_cmd(cmd)
        })
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(T::all().iter().map(|v| {
            clap::builder::PossibleValue::new(v.name()).help(v.help())
        })))
    }
}

/// The job board of a CLI run (run records under the default runs folder) and its spinner on
/// stderr, which shows the running job's progress line.
pub(crate) struct Front {
    pub board: JobBoard,
    pub bar: indicatif::ProgressBar,
}

impl Front {
    pub fn new(message: &str) -> Self {
        Self {
            board: JobBoard::new(Some(crate::jobs::record::default_runs_dir())),
            bar: progress_bar(message),
        }
    }

    /// Waits for the job, handing its partial results to `on_partial`; the spinner follows
    /// the job's progress. The spinner is cleared when the job ends.
    pub fn wait<P, R>(
        &self,
        handle: JobHandle<P, R>,
        mut on_partial: impl FnMut(P, &indicatif::ProgressBar),
    ) -> anyhow::Result<R> {
        loop {
            for p in handle.drain() {
                on_partial(p, &self.bar);
            }
            if let Some(result) = handle.take_result() {
                // The result is stored after the last partial was sent.
                for p in handle.drain() {
                    on_partial(p, &self.bar);
                }
                self.bar.finish_and_clear();
                return result.map_err(anyhow::Error::msg);
            }
            if let Some(job) = self.board.status(handle.id()) {
                let percent = job
                    .progress
                    .map(|p| format!("{:.0}% ", p * 100.0))
                    .unwrap_or_default();
                if !job.message.is_empty() {
                    self.bar.set_message(format!("{percent}{}", job.message));
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// The model at `path` (default: the shipped one), loaded as a job.
    pub fn load_model(
        &self,
        path: Option<PathBuf>,
    ) -> anyhow::Result<std::sync::Arc<crate::lm::LanguageModel>> {
        let path = path.unwrap_or_else(crate::assets::default_model);
        self.bar.set_message(format!("loading {}", path.display()));
        let loaded = crate::lm::tasks::spawn_load(&self.board, path)
            .wait(|_| {})
            .map_err(anyhow::Error::msg)?;
        Ok(loaded.0)
    }
}

/// A result as pretty JSON on stdout (`--json`).
pub(crate) fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A line on stderr above the spinner (or plain, when the spinner is hidden because stderr
/// is not a terminal: logs keep every line).
pub(crate) fn say(bar: &indicatif::ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

/// A spinner on stderr, hidden when stderr is not a terminal.
pub(crate) fn progress_bar(message: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar.set_message(message.to_string());
    bar
}

/// `key: value` lines of a JSON object, nested keys joined with dots.
pub(crate) fn print_flat(v: &serde_json::Value, prefix: &str) {
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
