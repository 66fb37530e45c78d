//! The Generate lab: chat with the loaded model, watch tokens stream, inspect probabilities,
//! branch from any alternative token.

pub mod loom;
mod view;

use std::path::PathBuf;
use std::sync::Arc;

use crate::jobs::{JobBoard, JobHandle};
use crate::lm::generate::{Alternative, GeneratedToken, Timings};
use crate::lm::tasks::{spawn_generate, GenerateOutcome, GenerateRequest};
use crate::lm::{LanguageModel, Session, SoftPrompt};

use super::settings::Settings;
use super::{Lab, LabCtx};
use loom::Loom;

/// Runtime state of the lab (the conversation itself is not persisted).
#[derive(Default)]
pub struct GeneratePanel {
    pub loom: Loom,
    pub input: String,
    /// The assistant turn being written and its job.
    job: Option<(usize, JobHandle<GeneratedToken, GenerateOutcome>)>,
    /// KV cache of the last answer, rewound for the next request instead of recomputed.
    session: Option<Session>,
    pub error: Option<String>,
    pub last_timings: Option<Timings>,
    /// Typed path in the model picker.
    pub path_input: String,
    /// Typed path of a soft prompt file.
    pub soft_prompt_input: String,
    /// The soft prompt of `Settings::soft_prompt` (or why it cannot be read), read once.
    soft_prompt: Option<(PathBuf, Result<Arc<SoftPrompt>, String>)>,
}

impl GeneratePanel {
    pub fn is_generating(&self) -> bool {
        self.job.is_some()
    }

    /// Moves streamed tokens into the conversation; takes the result when the job ends.
    pub fn take_results(&mut self) {
        let Some((turn, job)) = &self.job else { return };
        let turn = *turn;
        for token in job.drain() {
            self.loom.push_token(turn, token);
        }
        if let Some(result) = job.take_result() {
            match result {
                Ok(outcome) => {
                    self.last_timings = Some(outcome.generation.timings.clone());
                    self.session = Some(outcome.session);
                }
                Err(e) if e == "cancelled" => {}
                Err(e) => self.error = Some(e),
            }
            self.job = None;
        }
    }

    pub fn send(&mut self, board: &JobBoard, model: &Arc<LanguageModel>, settings: &Settings) {
        let text = std::mem::take(&mut self.input);
        if text.trim().is_empty() || self.is_generating() {
            self.input = text;
            return;
        }
        let turn = self.loom.push_user(text.trim());
        self.start(board, model, settings, turn);
    }

    pub fn branch(
        &mut self,
        board: &JobBoard,
        model: &Arc<LanguageModel>,
        settings: &Settings,
        turn: usize,
        token: usize,
        alt: &Alternative,
    ) {
        if self.is_generating() {
            return;
        }
        let turn = self.loom.branch_at(turn, token, alt);
        self.start(board, model, settings, turn);
    }

    pub fn stop(&mut self) {
        if let Some((_, job)) = &self.job {
            job.cancel();
        }
    }

    pub fn new_chat(&mut self) {
        self.stop();
        self.loom = Loom::default();
        self.error = None;
    }

    /// The soft prompt the settings name, read from its file the first time it is asked for.
    pub fn soft_prompt(&mut self, settings: &Settings) -> Result<Option<Arc<SoftPrompt>>, String> {
        let Some(path) = &settings.soft_prompt else {
            return Ok(None);
        };
        if self.soft_prompt.as_ref().map(|(p, _)| p) != Some(path) {
            let read = SoftPrompt::load(path)
                .map(Arc::new)
                .map_err(|e| e.to_string());
            self.soft_prompt = Some((path.clone(), read));
        }
        match &self.soft_prompt {
            Some((_, read)) => read.clone().map(Some),
            None => Ok(None),
        }
    }

    /// Generates (or continues) assistant turn `turn` of the active branch.
    fn start(
        &mut self,
        board: &JobBoard,
        model: &Arc<LanguageModel>,
        settings: &Settings,
        turn: usize,
    ) {
        self.error = None;
        let messages = self.loom.messages_before(turn);
        let prompt = if settings.raw_prompt {
            messages
                .iter()
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            match model.chat_prompt(&messages) {
                Ok(p) => p,
                Err(e) => {
                    self.error = Some(e.to_string());
                    return;
                }
            }
        };
        let mut ids = match model.tokenizer.encode_prompt(&prompt) {
            Ok(ids) => ids,
            Err(e) => {
                self.error = Some(e.to_string());
                return;
            }
        };
        ids.extend(self.loom.active().turns[turn].tokens.iter().map(|t| t.id));
        let soft_prompt = match self.soft_prompt(settings) {
            Ok(p) => p,
            Err(e) => {
                self.error = Some(e);
                return;
            }
        };
        let request = GenerateRequest {
            prompt_label: messages
                .last()
                .map(|m| m.content.clone())
                .unwrap_or_default(),
            prompt_ids: ids,
            config: settings.generation.clone(),
            soft_prompt,
        };
        let handle = spawn_generate(board, model.clone(), self.session.take(), request);
        self.job = Some((turn, handle));
    }
}

impl Lab for GeneratePanel {
    fn id(&self) -> &'static str {
        "generate"
    }
    fn name(&self) -> &'static str {
        "Generate"
    }
    fn title(&self) -> &'static str {
        "Generate lab"
    }
    fn description(&self) -> &'static str {
        "Chat with the loaded model; watch tokens stream, see how sure it was of each, and branch \
         from any alternative (the KV cache of the shared prefix is reused)."
    }
    fn poll(&mut self, _ctx: &mut LabCtx) {
        self.take_results();
    }
    fn ui(&mut self, ui: &mut egui::Ui, ctx: &mut LabCtx) {
        view::ui(ui, self, ctx);
    }
}
