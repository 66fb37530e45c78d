//! RAIN's long operations as jobs, shared by the RAIN page and the CLI: a search, an
//! evaluation over a prompt set, and self-evaluation accuracy.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::io::Write;

use serde::Serialize;
use serde_json::json;

use super::eval::{rain_eval, self_eval_accuracy, EvalRow, EvalSummary, Labelled, SettingAccuracy};
use super::events::{Event, TraceWriter};
use super::judge::Judge;
use super::{run_rain, AnswerBy, RainConfig, RainOutcome, Setting};
use crate::embed::SentenceEmbedder;
use crate::fs::StagedFile;
use crate::jobs::{JobBoard, JobHandle, JobSpec, Report};
use crate::lm::LanguageModel;

impl Report for RainOutcome {
    fn metrics(&self) -> serde_json::Value {
        json!({
            "simulations": self.simulations,
            "rewinds": self.rewinds,
            "commits": self.commits,
            "tokens_processed": self.tokens_processed,
            "seconds": self.seconds,
            "answer_tokens": self.answer_tokens.len(),
        })
    }
    fn outputs(&self) -> serde_json::Value {
        json!({ "answer": self.answer })
    }
}

/// Pause and single-step a running search from another thread. The search checks it at the
/// start and after every simulation.
#[derive(Debug, Default)]
pub struct SearchControl {
    paused: AtomicBool,
    steps: AtomicUsize,
}

impl SearchControl {
    pub fn paused() -> Self {
        Self {
            paused: AtomicBool::new(true),
            steps: AtomicUsize::new(0),
        }
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    pub fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
    }

    /// While paused: run one more simulation.
    pub fn step(&self) {
        self.steps.fetch_add(1, Ordering::Relaxed);
    }

    /// Blocks while paused with no step granted; `false` if `stop()` says to give up.
    fn wait(&self, stop: impl Fn() -> bool) -> bool {
        while self.is_paused() {
            if stop() {
                return false;
            }
            let granted = self
                .steps
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| s.checked_sub(1))
                .is_ok();
            if granted {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }
}

pub struct RainRequest {
    pub prompt: String,
    pub config: RainConfig,
    /// Where to write the JSON Lines trace.
    pub trace: Option<PathBuf>,
    pub control: Arc<SearchControl>,
}

/// Runs RAIN on a worker; every event arrives as a partial result. The sentence-embedding
/// model is loaded on the worker too, when the similarity update or node addition needs it.
pub fn spawn_rain(
    board: &JobBoard,
    model: Arc<LanguageModel>,
    request: RainRequest,
) -> JobHandle<Event, RainOutcome> {
    let spec = JobSpec {
        kind: "rain".into(),
        title: format!("RAIN: {}", crate::text::elide(&request.prompt, 40)),
        inputs: json!({
            "model": model.info.path,
            "prompt": request.prompt,
            "config": request.config,
            "trace": request.trace,
        }),
        seed: Some(request.config.seed),
    };
    board.spawn(spec, move |ctx| {
        let mut trace = match &request.trace {
            Some(path) => Some(TraceWriter::new(std::io::BufWriter::new(
                std::fs::File::create(path)
                    .map_err(|e| anyhow::anyhow!("{}: cannot create: {e}", path.display()))?,
            ))),
            None => None,
        };
        let mut config = request.config.clone();
        let judge = super::judge::prepare_judge(&mut config, &model, &mut |s| ctx.stage(s))?;
        let config = &config;
        let embedder = if config.similarity_update || config.dynamic_addition {
            ctx.progress(None, "loading the sentence-embedding model");
            Some(SentenceEmbedder::load(&crate::assets::embedding_model())?)
        } else {
            None
        };
        let mut trace_error = None;
        let outcome = run_rain(
            model,
            judge,
            embedder.as_ref(),
            config,
            &request.prompt,
            &mut |event| {
                if let Some(t) = trace.as_mut() {
                    if let Err(e) = t.write(event) {
                        trace_error.get_or_insert(e);
                    }
                }
                if let Event::Rewound { sim, rewinds } = event {
                    ctx.progress(None, format!("simulation {sim}, {rewinds} rewinds"));
                }
                ctx.send(event.clone());
                match event {
                    Event::Started { .. } | Event::Rewound { .. } => {
                        request.control.wait(|| ctx.is_cancelled())
                    }
                    _ => !ctx.is_cancelled(),
                }
            },
        )?;
        if let Some(t) = trace.as_mut() {
            t.flush()?;
        }
        if let Some(e) = trace_error {
            anyhow::bail!("writing the trace failed: {e}");
        }
        Ok(outcome)
    })
}

/// Vanilla against RAIN over a prompt set.
#[derive(Debug, Clone, Serialize)]
pub struct RainEvalRequest {
    pub prompts: Vec<String>,
    /// Appended to every prompt (an adversarial suffix, or empty).
    pub suffix: String,
    pub config: RainConfig,
    /// Judges both final answers (a file, folder or shipped judge's name); `None`: the run's
    /// judge.
    pub scorer: Option<PathBuf>,
    /// Every answer as JSON Lines, written through a temporary file.
    pub out: PathBuf,
}

impl Report for EvalSummary {
    fn metrics(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// Every evaluated prompt arrives as a partial result.
pub fn spawn_rain_eval(
    board: &JobBoard,
    model: Arc<LanguageModel>,
    request: RainEvalRequest,
) -> JobHandle<EvalRow, EvalSummary> {
    let spec = JobSpec {
        kind: "rain-eval".into(),
        title: format!("RAIN eval: {} prompts", request.prompts.len()),
        inputs: json!({
            "model": model.info.path,
            "prompts": request.prompts.len(),
            "suffix": request.suffix,
            "config": request.config,
            "scorer": request.scorer,
            "out": request.out,
        }),
        seed: Some(request.config.seed),
    };
    board.spawn(spec, move |ctx| {
        let mut config = request.config.clone();
        let judge = super::judge::prepare_judge(&mut config, &model, &mut |s| ctx.stage(s))?;
        let scorer = match &request.scorer {
            None => Judge::for_config(judge.clone(), &config)?,
            Some(named) => {
                let mut scoring = RainConfig {
                    judge: Some(named.clone()),
                    template: None,
                    ..config.clone()
                };
                let m = super::judge::prepare_judge(&mut scoring, &model, &mut |s| ctx.stage(s))?;
                Judge::for_config(m, &scoring)?
            }
        };
        ctx.progress(None, "loading the sentence-embedding model");
        let embedder = SentenceEmbedder::load(&crate::assets::embedding_model())?;
        let mut out = StagedFile::create(&request.out)?;
        let mut written = Ok(());
        let (mut done, total) = (0, request.prompts.len());
        let rows = rain_eval(
            model,
            judge,
            scorer,
            Some(&embedder),
            &config,
            &request.prompts,
            &request.suffix,
            |row| {
                written = serde_json::to_writer(&mut out, row)
                    .map_err(anyhow::Error::from)
                    .and_then(|_| Ok(out.write_all(b"\n")?));
                done += 1;
                ctx.progress(
                    Some(done as f32 / total as f32),
                    format!("{done}/{total} prompts"),
                );
                ctx.send(row.clone());
                written.is_ok() && !ctx.is_cancelled()
            },
        )?;
        written?;
        out.commit()?;
        Ok(EvalSummary::from_rows(&rows, &request.suffix))
    })
}

/// Self-evaluation accuracy per setting.
pub struct SelfEvalReport(pub Vec<SettingAccuracy>);

impl Report for SelfEvalReport {
    fn metrics(&self) -> serde_json::Value {
        serde_json::to_value(&self.0).unwrap_or_default()
    }
}

/// How often the model's self-evaluation agrees with the labels of `examples` (those that
/// name no setting are judged under `default`).
pub fn spawn_self_eval(
    board: &JobBoard,
    model: Arc<LanguageModel>,
    examples: Vec<Labelled>,
    default: Setting,
    answer_by: AnswerBy,
    template: Option<PathBuf>,
) -> JobHandle<(), SelfEvalReport> {
    let spec = JobSpec {
        kind: "self-eval-accuracy".into(),
        title: format!("self-evaluation on {} examples", examples.len()),
        inputs: json!({
            "model": model.info.path,
            "examples": examples.len(),
            "setting": default,
            "answer_by": answer_by,
            "template": template,
        }),
        seed: None,
    };
    board.spawn(spec, move |ctx| {
        ctx.progress(None, format!("judging {} examples", examples.len()));
        Ok(SelfEvalReport(self_eval_accuracy(
            model,
            &examples,
            default,
            answer_by,
            template.as_deref(),
        )?))
    })
}
