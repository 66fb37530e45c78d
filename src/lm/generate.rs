//! Autoregressive generation with per-token probabilities, streaming each token to a callback.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::error::Result;
use super::sampling::{Sampler, SamplingParams};
use super::session::Session;
use super::tokenizer::TextTokenizer;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerationConfig {
    pub max_tokens: usize,
    pub sampling: SamplingParams,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            max_tokens: 256,
            sampling: SamplingParams::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alternative {
    pub id: u32,
    pub text: String,
    pub logprob: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GeneratedToken {
    pub id: u32,
    /// The text this token adds (may be empty when it holds part of a UTF-8 character).
    pub text: String,
    pub logprob: f32,
    pub alternatives: Vec<Alternative>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopReason {
    EndOfTurn,
    MaxTokens,
    Cancelled,
    ContextFull,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Timings {
    pub prompt_tokens: usize,
    pub prompt_seconds: f64,
    pub generated_tokens: usize,
    pub decode_seconds: f64,
}

impl Timings {
    pub fn prompt_tok_s(&self) -> f64 {
        rate(self.prompt_tokens, self.prompt_seconds)
    }
    pub fn decode_tok_s(&self) -> f64 {
        rate(self.generated_tokens, self.decode_seconds)
    }
}

fn rate(n: usize, s: f64) -> f64 {
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Generation {
    pub text: String,
    pub tokens: Vec<GeneratedToken>,
    pub stop: StopReason,
    pub timings: Timings,
}

/// Turns a growing list of ids into text pieces, holding back bytes of unfinished characters.
pub struct TextStream<'a> {
    tokenizer: &'a TextTokenizer,
    ids: Vec<u32>,
    emitted: String,
}

impl<'a> TextStream<'a> {
    pub fn new(tokenizer: &'a TextTokenizer) -> Self {
        Self {
            tokenizer,
            ids: Vec::new(),
            emitted: String::new(),
        }
    }

    pub fn push(&mut self, id: u32) -> Result<String> {
        self.ids.push(id);
        let text = self.tokenizer.decode(&self.ids, false)?;
        if text.ends_with('\u{FFFD}') || !text.starts_with(&self.emitted) {
            return Ok(String::new());
        }
        let piece = text[self.emitted.len()..].to_string();
        self.emitted = text;
        Ok(piece)
    }

    pub fn text(&self) -> &str {
        &self.emitted
    }
}

/// Continues `session` (which must already hold the prompt) for up to `config.max_tokens`,
/// calling `on_token` for each new token; it returns `false` to stop (cancellation).
/// The generated tokens are fed into the session, except an end-of-turn token.
pub fn continue_session(
    session: &mut Session,
    config: &GenerationConfig,
    prompt_timing: (usize, f64),
    mut on_token: impl FnMut(&GeneratedToken) -> bool,
) -> Result<Generation> {
    let model = session.model().clone();
    let tokenizer = &model.tokenizer;
    let mut sampler = Sampler::new(config.sampling.clone());
    let mut stream = TextStream::new(tokenizer);
    let mut tokens = Vec::new();
    let started = Instant::now();
    let max_ctx = model.transformer.config.context_length;
    let stop = loop {
        if tokens.len() >= config.max_tokens {
            break StopReason::MaxTokens;
        }
        if session.len() >= max_ctx {
            break StopReason::ContextFull;
        }
        let choice = session.choose(&mut sampler)?;
        if tokenizer.is_stop(choice.id) {
            break StopReason::EndOfTurn;
        }
        session.feed(&[choice.id])?;
        let token = GeneratedToken {
            id: choice.id,
            text: stream.push(choice.id)?,
            logprob: choice.logprob,
            alternatives: choice
                .alternatives
                .iter()
                .map(|&(id, logprob)| {
                    Ok(Alternative {
                        id,
                        text: tokenizer.decode(&[id], false)?,
                        logprob,
                    })
                })
                .collect::<Result<_>>()?,
        };
        let go_on = on_token(&token);
        tokens.push(token);
        if !go_on {
            break StopReason::Cancelled;
        }
    };
    Ok(Generation {
        text: stream.text().to_string(),
        stop,
        timings: Timings {
            prompt_tokens: prompt_timing.0,
            prompt_seconds: prompt_timing.1,
            generated_tokens: tokens.len(),
            decode_seconds: started.elapsed().as_secs_f64(),
        },
        tokens,
    })
}

/// Brings `session` to `prompt` (reusing any common prefix) and generates from there.
pub fn generate(
    session: &mut Session,
    prompt: &[u32],
    config: &GenerationConfig,
    on_token: impl FnMut(&GeneratedToken) -> bool,
) -> Result<Generation> {
    let before = session.tokens_processed();
    let started = Instant::now();
    session.sync_to(prompt)?;
    let prompt_timing = (
        session.tokens_processed() - before,
        started.elapsed().as_secs_f64(),
    );
    continue_session(session, config, prompt_timing, on_token)
}
