//! RAIN as a background job, shared by the CLI and (later) the RAIN panel.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

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

pub struct RainRequest {
    pub prompt: String,
    pub config: RainConfig,
    /// Where to write the JSON Lines trace.
    pub trace: Option<PathBuf>,
}

/// Runs RAIN on a worker; every event arrives as a partial result.
pub fn spawn_rain(
    board: &JobBoard,
    model: Arc<LanguageModel>,
    embedder: Option<Arc<SentenceEmbedder>>,
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
        let mut trace_error = None;
        let max = request.config.max_tokens.max(1);
        let outcome = run_rain(
            model,
            embedder.as_deref(),
            &request.config,
            &request.prompt,
            &mut |event| {
                if let Some(t) = trace.as_mut() {
                    if let Err(e) = t.write(event) {
                        trace_error.get_or_insert(e);
                    }
                }
                if let Event::Committed { answer, .. } = event {
                    ctx.progress(
                        Some(answer.len() as f32 / (max * 4) as f32),
                        format!("{} chars committed", answer.len()),
                    );
                }
                ctx.send(event.clone());
                !ctx.is_cancelled()
            },
        )?;
        if let Some(t) = trace.as_mut() {
            t.flush()?;
        }
        if let Some(e) = trace_error {
            anyhow::bail!("writing the trace failed: {e}");
        }
        std::io::stdout().flush().ok();
        Ok(outcome)
    })
}
