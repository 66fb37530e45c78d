//! A conversation with the model: the tokens so far and their KV cache, which can be forked
//! (two continuations share a prefix) and rewound (back to an earlier position) without
//! recomputing the prefix. A session may start with a soft prompt: learned embeddings at the
//! first positions, before every token (see [`SoftPrompt`]).

use std::sync::Arc;

use super::error::{LmError, Result};
use super::kv_cache::KvCache;
use super::sampling::{Sampler, TokenChoice};
use super::soft_prompt::SoftPrompt;
use super::transformer::{BatchItem, Input};
use super::LanguageModel;

/// Long prompts are processed in slices of this many tokens to bound the attention matrix.
const PREFILL_CHUNK: usize = 256;

#[derive(Clone)]
pub struct Session {
    model: Arc<LanguageModel>,
    cache: KvCache,
    /// The soft prompt in the cache before `tokens`, if any.
    soft_prompt: Option<Arc<SoftPrompt>>,
    tokens: Vec<u32>,
    /// Logits after the last token; `None` after a rewind until they are asked for.
    /// Shared with forks until either feeds again.
    logits: Option<Arc<[f32]>>,
    /// Positions run through the model so far (all forks of this session count separately).
    processed: usize,
}

impl Session {
    pub fn new(model: Arc<LanguageModel>) -> Self {
        let cache = model.transformer.new_cache();
        Self {
            model,
            cache,
            soft_prompt: None,
            tokens: Vec::new(),
            logits: None,
            processed: 0,
        }
    }

    /// A session whose cache starts with `prompt`'s embeddings, run now so that forks share
    /// them. Its tokens (and [`Session::rewind`] lengths) count after the soft prompt.
    pub fn with_soft_prompt(model: Arc<LanguageModel>, prompt: Arc<SoftPrompt>) -> Result<Self> {
        let hidden = model.transformer.config.hidden_size;
        if prompt.hidden() != hidden {
            return Err(LmError::file(
                &prompt.path,
                format!(
                    "a soft prompt of width {} does not fit this model (hidden size {hidden})",
                    prompt.hidden()
                ),
            ));
        }
        let mut s = Self::new(model);
        let mut items = [BatchItem {
            input: Input::Embeddings(prompt.rows()),
            cache: &mut s.cache,
        }];
        s.model.transformer.forward_batch(&mut items, false)?;
        s.processed = prompt.len();
        s.soft_prompt = Some(prompt);
        Ok(s)
    }

    pub fn soft_prompt(&self) -> Option<&Arc<SoftPrompt>> {
        self.soft_prompt.as_ref()
    }

    /// Positions the soft prompt takes (0 without one).
    fn offset(&self) -> usize {
        self.soft_prompt.as_ref().map_or(0, |p| p.len())
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
        Self::feed_batch(&mut [self], &[tokens])
    }

    /// Feeds each session its own tokens, all through the model together: every weight matrix
    /// is read once per step for the whole batch. Sessions must share one model.
    pub fn feed_batch(sessions: &mut [&mut Session], tokens: &[&[u32]]) -> Result<()> {
        assert_eq!(sessions.len(), tokens.len(), "one token list per session");
        let Some(first) = sessions.first() else {
            return Ok(());
        };
        let model = first.model.clone();
        assert!(
            sessions.iter().all(|s| Arc::ptr_eq(&s.model, &model)),
            "batched sessions must share a model"
        );
        let max = model.transformer.config.context_length;
        for (s, t) in sessions.iter().zip(tokens) {
            let len = s.offset() + s.tokens.len() + t.len();
            if len > max {
                return Err(LmError::ContextFull { len, max });
            }
        }
        // Long inputs go in slices of PREFILL_CHUNK; sessions whose tokens run out drop out.
        let mut done = 0;
        loop {
            let mut items = Vec::new();
            let mut fed = Vec::new();
            for (i, (s, t)) in sessions.iter_mut().zip(tokens).enumerate() {
                let slice = &t[done.min(t.len())..(done + PREFILL_CHUNK).min(t.len())];
                if !slice.is_empty() {
                    items.push(BatchItem {
                        input: Input::Tokens(slice),
                        cache: &mut s.cache,
                    });
                    fed.push((i, slice));
                }
            }
            if items.is_empty() {
                return Ok(());
            }
            let logits = model.transformer.forward_batch(&mut items, false)?;
            for ((i, slice), l) in fed.into_iter().zip(logits) {
                let s = &mut sessions[i];
                s.logits = Some(l.into());
                s.tokens.extend_from_slice(slice);
                s.processed += slice.len();
            }
            done += PREFILL_CHUNK;
        }
    }

    /// An independent copy sharing the cached prefix (copy on write, see [`KvCache`]).
    pub fn fork(&self) -> Self {
        self.clone()
    }

    /// Goes back to the first `len` tokens. The prefix is not recomputed; only if logits are
    /// then needed before new tokens are fed is the last kept token run again (one position).
    pub fn rewind(&mut self, len: usize) -> Result<()> {
        if len >= self.tokens.len() {
            return Ok(());
        }
        self.cache.truncate(self.offset() + len);
        self.tokens.truncate(len);
        self.logits = None;
        Ok(())
    }

    /// Makes the session hold exactly `tokens`, keeping the longest common prefix.
    pub fn sync_to(&mut self, tokens: &[u32]) -> Result<()> {
        Self::sync_batch(&mut [self], &[tokens])
    }

    /// Makes each session hold its target tokens, keeping the longest common prefixes; what
    /// the sessions must add goes through the model as one batch.
    pub fn sync_batch(sessions: &mut [&mut Session], targets: &[&[u32]]) -> Result<()> {
        assert_eq!(sessions.len(), targets.len(), "one target per session");
        let mut feeds = Vec::with_capacity(targets.len());
        for (s, &tokens) in sessions.iter_mut().zip(targets) {
            let common = s
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
            s.rewind(keep)?;
            feeds.push(&tokens[keep..]);
        }
        Self::feed_batch(sessions, &feeds)
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
