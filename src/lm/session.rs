//! A conversation with the model: the tokens so far and their KV cache, which can be forked
//! (two continuations share a prefix) and rewound (back to an earlier position) without
//! recomputing the prefix.

use std::sync::Arc;

use super::error::{LmError, Result};
use super::kv_cache::KvCache;
use super::sampling::{Sampler, TokenChoice};
use super::LanguageModel;

/// Long prompts are processed in slices of this many tokens to bound the attention matrix.
const PREFILL_CHUNK: usize = 256;

#[derive(Clone)]
pub struct Session {
    model: Arc<LanguageModel>,
    cache: KvCache,
    tokens: Vec<u32>,
    /// Logits after the last token; `None` after a rewind until they are asked for.
    logits: Option<Vec<f32>>,
    /// Positions run through the model so far (all forks of this session count separately).
    processed: usize,
}

impl Session {
    pub fn new(model: Arc<LanguageModel>) -> Self {
        let cache = model.transformer.new_cache();
        Self {
            model,
            cache,
            tokens: Vec::new(),
            logits: None,
            processed: 0,
        }
    }

    pub fn model(&self) -> &Arc<LanguageModel> {
        &self.model
    }

    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn tokens_processed(&self) -> usize {
        self.processed
    }

    /// Runs `tokens` after the current ones.
    pub fn feed(&mut self, tokens: &[u32]) -> Result<()> {
        let max = self.model.transformer.config.context_length;
        if self.tokens.len() + tokens.len() > max {
            return Err(LmError::ContextFull {
                len: self.tokens.len() + tokens.len(),
                max,
            });
        }
        for chunk in tokens.chunks(PREFILL_CHUNK) {
            let logits = self
                .model
                .transformer
                .forward(chunk, &mut self.cache, false)?;
            self.logits = Some(logits.to_vec1::<f32>()?);
            self.tokens.extend_from_slice(chunk);
            self.processed += chunk.len();
        }
        Ok(())
    }

    /// An independent copy sharing the cached prefix (O(1): cached tensors are immutable).
    pub fn fork(&self) -> Self {
        self.clone()
    }

    /// Goes back to the first `len` tokens. The prefix is not recomputed; only if logits are
    /// then needed before new tokens are fed is the last kept token run again (one position).
    pub fn rewind(&mut self, len: usize) -> Result<()> {
        if len >= self.tokens.len() {
            return Ok(());
        }
        self.cache.truncate(len)?;
        self.tokens.truncate(len);
        self.logits = None;
        Ok(())
    }

    /// Makes the session hold exactly `tokens`, keeping the longest common prefix.
    pub fn sync_to(&mut self, tokens: &[u32]) -> Result<()> {
        let common = self
            .tokens
            .iter()
            .zip(tokens)
            .take_while(|(a, b)| a == b)
            .count();
        // Keep at least one token to feed so that fresh logits exist.
        let keep = if common == tokens.len() && common > 0 {
            common - 1
        } else {
            common
        };
        self.rewind(keep)?;
        self.feed(&tokens[keep..])
    }

    /// Next-token logits after the current tokens.
    pub fn logits(&mut self) -> Result<&[f32]> {
        if self.logits.is_none() {
            let last = *self.tokens.last().ok_or_else(|| {
                LmError::Tokenizer("the session is empty: feed a prompt first".into())
            })?;
            self.rewind(self.tokens.len() - 1)?;
            self.feed(&[last])?;
        }
        Ok(self.logits.as_deref().unwrap_or_default())
    }

    /// Chooses the next token with `sampler` (does not feed it).
    pub fn choose(&mut self, sampler: &mut Sampler) -> Result<TokenChoice> {
        Ok(sampler.sample(self.logits()?))
    }
}
