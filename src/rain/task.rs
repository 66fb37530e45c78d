//! RAIN as a background job, shared by the CLI and (later) the RAIN panel.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::events::{Event, TraceWriter};
use super::{run_rain, RainConfig, RainOutcome};
use crate::embed::SentenceEmbedder;
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
        title: format!(
            "RAIN: {}",
            request.prompt.chars().take(40).collect::<String>()
        ),
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
        let config = &request.config;
        let embedder = if config.similarity_update || config.dynamic_addition {
            ctx.progress(None, "loading the sentence-embedding model");
            Some(SentenceEmbedder::load(&crate::assets::embedding_model())?)
        } else {
            None
        };
        let mut trace_error = None;
        let outcome = run_rain(
            model,
            embedder.as_ref(),
            &request.config,
            &request.prompt,
            &mut |event| {
                if let Some(t) = trace.as_mut() {
                    if let Err(e) = t.write(event) {
                        trace_error.get_or_insert(e);
                    }
                }
                if let Event::Rewound { sim, .. } = event {
                    ctx.progress(None, format!("simulation {sim}"));
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
