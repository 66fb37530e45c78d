//! Language-model work as background jobs, shared by the GUI and the CLI.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;

use super::generate::{generate, GeneratedToken, Generation, GenerationConfig};
use super::session::Session;
use super::soft_prompt::SoftPrompt;
use super::LanguageModel;
use crate::jobs::{JobBoard, JobHandle, JobSpec, Report};

/// A loaded model as a job result.
pub struct Loaded(pub Arc<LanguageModel>);

impl Report for Loaded {
    fn metrics(&self) -> serde_json::Value {
        json!({ "parameters": self.0.info.parameters })
    }
    fn outputs(&self) -> serde_json::Value {
        serde_json::to_value(&self.0.info).unwrap_or_default()
    }
}

pub fn spawn_load(board: &JobBoard, path: PathBuf) -> JobHandle<(), Loaded> {
    let spec = JobSpec {
        kind: "load-model".into(),
        title: format!(
            "Load {}",
            path.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        ),
        inputs: json!({ "path": path }),
        seed: None,
    };
    board.spawn(spec, move |ctx| {
        ctx.progress(None, format!("reading {}", path.display()));
        let model = LanguageModel::load(&path)?;
        ctx.log(format!(
            "{}: {} parameters, {}",
            model.info.name, model.info.parameters, model.info.quantization
        ));
        Ok(Loaded(Arc::new(model)))
    })
}

/// What to generate: `prompt_ids` are complete (chat template already applied).
#[derive(Clone)]
pub struct GenerateRequest {
    pub prompt_label: String,
    pub prompt_ids: Vec<u32>,
    pub config: GenerationConfig,
    /// Learned embeddings put before the prompt (prompt tuning's result), if any.
    pub soft_prompt: Option<Arc<SoftPrompt>>,
}

pub struct GenerateOutcome {
    pub generation: Generation,
    /// The session after generation, kept so a branch can rewind it instead of recomputing.
    pub session: Session,
}

impl Report for GenerateOutcome {
    fn metrics(&self) -> serde_json::Value {
        let t = &self.generation.timings;
        json!({
            "prompt_tokens": t.prompt_tokens,
            "generated_tokens": t.generated_tokens,
            "prompt_tok_s": t.prompt_tok_s(),
            "decode_tok_s": t.decode_tok_s(),
            "stop": self.generation.stop,
        })
    }
    fn outputs(&self) -> serde_json::Value {
        json!({ "text": self.generation.text })
    }
}

/// Generates on a worker; each token arrives as a partial result. `session` (e.g. from the
/// previous answer) is reused up to the common prefix with the new prompt.
pub fn spawn_generate(
    board: &JobBoard,
    model: Arc<LanguageModel>,
    session: Option<Session>,
    request: GenerateRequest,
) -> JobHandle<GeneratedToken, GenerateOutcome> {
    let spec = JobSpec {
        kind: "generate".into(),
        title: format!(
            "Generate: {}",
            crate::text::elide(&request.prompt_label, 40)
        ),
        inputs: json!({
            "model": model.info.path,
            "prompt": request.prompt_label,
            "prompt_tokens": request.prompt_ids.len(),
            "config": request.config,
            "soft_prompt": request.soft_prompt.as_ref().map(|p| &p.path),
        }),
        seed: Some(request.config.sampling.seed),
    };
    board.spawn(spec, move |ctx| {
        let same_prompt = |s: &Session| match (s.soft_prompt(), &request.soft_prompt) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (a, b) => a.is_none() && b.is_none(),
        };
        let mut session = match (session, &request.soft_prompt) {
            (Some(s), _) if Arc::ptr_eq(s.model(), &model) && same_prompt(&s) => s,
            (_, Some(p)) => Session::with_soft_prompt(model.clone(), p.clone())?,
            (_, None) => Session::new(model.clone()),
        };
        ctx.progress(Some(0.0), "reading the prompt");
        let max = request.config.max_tokens.max(1);
        let mut n = 0usize;
        let generation = generate(
            &mut session,
            &request.prompt_ids,
            &request.config,
            |token| {
                n += 1;
                ctx.progress(Some(n as f32 / max as f32), format!("{n} tokens"));
                ctx.send(token.clone());
                !ctx.is_cancelled()
            },
        )?;
        Ok(GenerateOutcome {
            generation,
            session,
        })
    })
}
