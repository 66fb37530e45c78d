//! Supervised fine-tuning data and losses for language models: JSON Lines of chat messages or
//! prompt/completion pairs, rendered with the model's own chat template, the prompt masked so
//! only the answer (and its end-of-turn token) is learned; batches of similar length; the
//! causal-LM loss and the per-sequence length-normalised log-likelihood that preference
//! losses (KnowPAT, DPO) are built from.

use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor, D};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::Deserialize;

use super::llama::TrainLlama;
use crate::lm::chat::Message;
use crate::lm::LanguageModel;

/// One training example: the conversation so far and the answer to learn.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub prompt: Vec<Message>,
    pub answer: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMessage {
    role: String,
    content: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawExample {
    Chat { messages: Vec<RawMessage> },
    Pair { prompt: String, completion: String },
}

impl RawExample {
    fn into_example(self) -> std::result::Result<Example, String> {
        match self {
            RawExample::Pair { prompt, completion } => Ok(Example {
                prompt: vec![Message::new("user", &prompt)],
                answer: completion,
            }),
            RawExample::Chat { mut messages } => {
                let last = messages.pop().ok_or("`messages` is empty")?;
                if last.role != "assistant" {
                    return Err(format!(
                        "the last message is from {:?}; it must be the assistant's answer",
                        last.role
                    ));
                }
                if messages.is_empty() {
                    return Err("no message before the assistant's answer".into());
                }
                Ok(Example {
                    prompt: messages
                        .into_iter()
                        .map(|m| Message::new(&m.role, &m.content))
                        .collect(),
                    answer: last.content,
                })
            }
        }
    }
}

/// Reads a JSON Lines file: `{"messages": [{"role", "content"}, …]}` ending with the
/// assistant's answer, or `{"prompt", "completion"}`. Blank lines are skipped. A file with a
/// bad line is refused as a whole, with the numbers and problems of its first bad lines, so
/// that no run trains on half of what was meant.
pub fn read_jsonl(path: &Path) -> Result<Vec<Example>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let mut examples = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed = serde_json::from_str::<RawExample>(line)
            .map_err(|_| {
                "not a JSON object with `messages` or with `prompt` and `completion`".to_string()
            })
            .and_then(RawExample::into_example);
        match parsed {
            Ok(e) => examples.push(e),
            Err(e) => bad.push(format!("line {}: {e}", i + 1)),
        }
    }
    if !bad.is_empty() {
        let shown: Vec<&String> = bad.iter().take(5).collect();
        bail!(
            "{}: {} bad line(s), nothing was read: {}",
            path.display(),
            bad.len(),
            shown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    if examples.is_empty() {
        bail!("{}: no examples", path.display());
    }
    Ok(examples)
}

/// Token ids of one example and which of them are learned.
#[derive(Debug, Clone, PartialEq)]
pub struct Tokenized {
    pub ids: Vec<u32>,
    /// Index of the first answer token: positions before it are the prompt.
    pub answer_start: usize,
}

/// The example as the model sees it in a chat: the prompt rendered with the chat template
/// (ending with the assistant's header), then the answer and the template's end of turn.
/// Cut to `max_len` tokens, keeping the prompt's end and as much answer as fits.
pub fn tokenize(lm: &LanguageModel, ex: &Example, max_len: usize) -> Result<Tokenized> {
    let prompt = lm.chat_prompt(&ex.prompt)?;
    let mut all = ex.prompt.clone();
    all.push(Message::new("assistant", &ex.answer));
    let full = match &lm.chat_template {
        Some(t) => t.render(&all, false)?,
        None => format!("{prompt} {}\n", ex.answer),
    };
    let answer = full.strip_prefix(&prompt).with_context(|| {
        "the chat template renders the prompt differently with and without the answer"
    })?;
    let prompt_ids = lm.tokenizer.encode_prompt(&prompt)?;
    let answer_ids = lm.tokenizer.encode(answer, true)?;
    Ok(join(&prompt_ids, &answer_ids, max_len))
}

/// The example as plain text: its prompt messages' contents (joined by blank lines) continued
/// by the answer, no chat template and no end of turn — for models that read a verdict after
/// a fixed text, such as a judge after its judgement prompt. Cut as [`tokenize`] cuts.
pub fn tokenize_raw(lm: &LanguageModel, ex: &Example, max_len: usize) -> Result<Tokenized> {
    let prompt: Vec<&str> = ex.prompt.iter().map(|m| m.content.as_str()).collect();
    let prompt_ids = lm.tokenizer.encode_prompt(&prompt.join("\n\n"))?;
    let answer_ids = lm.tokenizer.encode(&ex.answer, false)?;
    Ok(join(&prompt_ids, &answer_ids, max_len))
}

/// Prompt then answer in `max_len` tokens: at least one answer token, the prompt's start
/// dropped if it is too long.
fn join(prompt_ids: &[u32], answer_ids: &[u32], max_len: usize) -> Tokenized {
    let keep_prompt = prompt_ids.len().min(max_len.saturating_sub(1).max(1));
    let mut ids = prompt_ids[prompt_ids.len() - keep_prompt..].to_vec();
    let answer_start = ids.len();
    ids.extend(answer_ids.iter().take(max_len.saturating_sub(answer_start)));
    Tokenized { ids, answer_start }
}

/// Example indices in batches of similar length (less padding): sorted by length, cut into
/// batches of `size`, the batches shuffled with `seed`.
pub fn length_batches(items: &[Tokenized], size: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| items[i].ids.len());
    let mut batches: Vec<Vec<usize>> = order.chunks(size.max(1)).map(<[usize]>::to_vec).collect();
    batches.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    batches
}

/// A padded batch: inputs `[b, t]`, next-token targets `[b, t]` and their weights `[b, t]`
/// (1 on answer tokens, 0 on the prompt and padding).
pub struct Batch {
    pub inputs: Tensor,
    pub targets: Tensor,
    pub weights: Tensor,
    /// Real (unpadded) tokens in the batch.
    pub tokens: usize,
}

impl Batch {
    pub fn new(items: &[&Tokenized], pad: u32) -> Result<Self> {
        let t = items.iter().map(|x| x.ids.len()).max().unwrap_or(2).max(2) - 1;
        let (mut inputs, mut targets, mut weights) = (Vec::new(), Vec::new(), Vec::new());
        let mut tokens = 0;
        for x in items {
            tokens += x.ids.len();
            for p in 0..t {
                inputs.push(x.ids.get(p).copied().unwrap_or(pad));
                let target = x.ids.get(p + 1);
                targets.push(target.copied().unwrap_or(pad));
                let learned = target.is_some() && p + 1 >= x.answer_start;
                weights.push(if learned { 1f32 } else { 0.0 });
            }
        }
        let dev = Device::Cpu;
        let b = items.len();
        Ok(Self {
            inputs: Tensor::from_vec(inputs, (b, t), &dev)?,
            targets: Tensor::from_vec(targets, (b, t), &dev)?,
            weights: Tensor::from_vec(weights, (b, t), &dev)?,
            tokens,
        })
    }
}

impl Batch {
    /// Flat indices of the learned positions, and for each the sequence it belongs to.
    fn learned(&self) -> Result<(Tensor, Vec<usize>)> {
        let (_, t) = self.weights.dims2()?;
        let w: Vec<f32> = self.weights.flatten_all()?.to_vec1()?;
        let rows: Vec<u32> = (0..w.len())
            .filter(|&i| w[i] > 0.0)
            .map(|i| i as u32)
            .collect();
        let seqs = rows.iter().map(|&r| r as usize / t).collect();
        Ok((Tensor::new(rows.as_slice(), &Device::Cpu)?, seqs))
    }
}

/// Log-probabilities of the target at every learned position `[n]`, with each position's
/// sequence. The head runs on those positions only (the answer, not the prompt).
fn learned_logprobs(model: &TrainLlama, batch: &Batch) -> Result<(Tensor, Vec<usize>)> {
    let (rows, seqs) = batch.learned()?;
    let hidden = model.hidden(&batch.inputs)?;
    let width = hidden.dim(D::Minus1)?;
    let picked = hidden.reshape(((), width))?.index_select(&rows, 0)?;
    let targets: Vec<u32> = batch
        .targets
        .flatten_all()?
        .index_select(&rows, 0)?
        .to_vec1()?;
    Ok((model.target_logprobs(&picked, &targets)?, seqs))
}

/// Mean cross-entropy over the answer tokens of the batch (the SFT loss).
pub fn sft_loss(model: &TrainLlama, batch: &Batch) -> Result<Tensor> {
    let (logp, seqs) = learned_logprobs(model, batch)?;
    Ok((logp.sum_all()? / -(seqs.len().max(1) as f64))?)
}

/// Per sequence, the mean log-probability of its answer tokens `[b]` (length-normalised
/// log-likelihood: KnowPAT's and length-normalised DPO's building block).
pub fn answer_logprob(model: &TrainLlama, batch: &Batch) -> Result<Tensor> {
    let (logp, seqs) = learned_logprobs(model, batch)?;
    let b = batch.inputs.dim(0)?;
    // A [b, n] matrix of 1/count for the positions of each sequence sums them per sequence.
    let mut counts = vec![0f32; b];
    for &s in &seqs {
        counts[s] += 1.0;
    }
    let mut avg = vec![0f32; b * seqs.len()];
    for (j, &s) in seqs.iter().enumerate() {
        avg[s * seqs.len() + j] = 1.0 / counts[s];
    }
    let avg = Tensor::from_vec(avg, (b, seqs.len()), &Device::Cpu)?;
    Ok(avg.matmul(&logp.unsqueeze(1)?)?.squeeze(1)?)
}
