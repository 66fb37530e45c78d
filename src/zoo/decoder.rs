//! The decoder family: a byte-level llama pre-trained on the mixture, and fine-tunes of it on
//! the text tasks (plain Adam, AdamR, multi-task).

use std::path::Path;

use anyhow::Result;
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::byte_tokenizer::{self, BOS, EOS, PAD, VOCAB_SIZE};
use crate::data::{TextTask, TextTasks};
use crate::train::llama::{LlamaShape, TrainLlama};
use crate::train::nn::masked_cross_entropy;
use crate::train::{train_loop, Pull, Schedule, StepReport};

pub const SHAPE: LlamaShape = LlamaShape {
    vocab_size: VOCAB_SIZE,
    hidden_size: 128,
    intermediate_size: 512,
    num_layers: 4,
    num_heads: 4,
    num_kv_heads: 4,
    max_positions: 256,
    rope_theta: 10_000.0,
    rms_norm_eps: 1e-5,
    tie_embeddings: false,
    qkv_bias: false,
};

/// Bytes of mixture text per pre-training row.
pub const MIXTURE_LEN: usize = 95;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DecoderRecipe {
    /// Empty: pre-training on the mixture.
    pub tasks: Vec<TextTask>,
    pub steps: usize,
    pub batch: usize,
    pub peak_lr: f64,
    pub pull: Pull,
    pub seed: u64,
}

/// The generator of held-out mixture rows (perplexity), one the training never uses.
pub const HELD_OUT_SEED: u64 = 0xE7A1;

/// `n` rows of mixture text from the generator seeded with `seed`.
pub fn mixture_texts(tasks: &TextTasks, seed: u64, n: usize) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| tasks.mixture_text(&mut rng, MIXTURE_LEN))
        .collect()
}

/// One padded batch: inputs `[b, t]`, next-token targets `[b·t]`, loss weights `[b·t]`.
pub fn batch_tensors(rows: &[(Vec<u32>, usize)]) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let t = rows.iter().map(|(ids, _)| ids.len() - 1).max().unwrap_or(1);
    let (mut inputs, mut targets, mut weights) = (Vec::new(), Vec::new(), Vec::new());
    for (ids, loss_from) in rows {
        for p in 0..t {
            inputs.push(ids.get(p).copied().unwrap_or(PAD));
            targets.push(ids.get(p + 1).copied().unwrap_or(PAD));
            let counted = p + 1 < ids.len() && p + 1 >= *loss_from;
            weights.push(if counted { 1f32 } else { 0.0 });
        }
    }
    let dev = Device::Cpu;
    let b = rows.len();
    Ok((
        Tensor::from_vec(inputs, (b, t), &dev)?,
        Tensor::from_vec(targets, b * t, &dev)?,
        Tensor::from_vec(weights, b * t, &dev)?,
    ))
}

/// `<s>` prompt answer `</s>`, with the loss on the answer and `</s>` only.
pub fn example_ids(prompt: &str, answer: &str) -> (Vec<u32>, usize) {
    let mut ids = vec![BOS];
    ids.extend(byte_tokenizer::encode(prompt));
    let loss_from = ids.len();
    ids.extend(byte_tokenizer::encode(answer));
    ids.push(EOS);
    (ids, loss_from)
}

/// Trains one decoder into `out` (a Hugging Face llama folder); `base` is the folder to start
/// from (`None`: random initialisation). Returns the loss of every step.
pub fn train(
    recipe: &DecoderRecipe,
    tasks: &TextTasks,
    base: Option<&Path>,
    out: &Path,
    on_step: &mut dyn FnMut(StepReport) -> Result<()>,
) -> Result<Vec<f32>> {
    let varmap = VarMap::new();
    let model = TrainLlama::new(SHAPE, crate::train::seeded_builder(&varmap, recipe.seed))?;
    if let Some(base) = base {
        let missing = crate::train::load_into(&varmap, &base.join("model.safetensors"), "")?;
        anyhow::ensure!(
            missing.is_empty(),
            "{}: missing {missing:?}",
            base.display()
        );
    }
    let mut rng = StdRng::seed_from_u64(recipe.seed);
    let schedule = Schedule::new(recipe.steps, recipe.peak_lr, 0.05);
    let losses = train_loop(
        &varmap,
        recipe.pull,
        schedule,
        |_| {
            let rows: Vec<(Vec<u32>, usize)> = (0..recipe.batch)
                .map(|_| match recipe.tasks.choose(&mut rng) {
                    None => {
                        let mut ids = vec![BOS];
                        ids.extend(byte_tokenizer::encode(
                            &tasks.mixture_text(&mut rng, MIXTURE_LEN),
                        ));
                        (ids, 1)
                    }
                    Some(&task) => {
                        let ex = tasks.sample_train(task, &mut rng);
                        example_ids(&ex.prompt, &ex.answer)
                    }
                })
                .collect();
            let (inputs, targets, weights) = batch_tensors(&rows)?;
            let logits = model.forward(&inputs)?.flatten_to(1)?;
            masked_cross_entropy(&logits, &targets, &weights)
        },
        on_step,
    )?;
    crate::train::model_folder::save_checkpoint(out, &varmap, &SHAPE.hf_config(BOS, EOS), |dir| {
        byte_tokenizer::write(dir, SHAPE.max_positions)
    })?;
    Ok(losses)
}
