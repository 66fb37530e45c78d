//! Mask learning as published (Panigrahi et al., 2023): the mask is relaxed to
//! `γ = γ_base + (1 − 2γ_base) ⊙ σ(S − b)` with γ_base the top-k |δ| mask, S drawn uniformly in
//! [0, 1) and b = 10, so γ starts at γ_base. Each step takes the task loss's gradient at the
//! relaxed graft `θ_pre + γ ⊙ δ`, averaged over a few batches and scaled by the learning rate
//! (10⁷ in the official scripts), through the chain rule `∂L/∂S = (∇_θL ⊙ δ)(1 − 2γ_base)σ'`,
//! then rounds γ and keeps the rounded mask with the best train + validation accuracy.

use anyhow::Result;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::mask::Mask;
use super::model::Graftable;
use super::select::{kept_count, top_k};

/// The options of a learned mask; the defaults are the official code's except the learning
/// rate: at the official 1e7 no score S moves far enough to flip a parameter on our MiniLM
/// fine-tunes (largest |ΔS| of a step 0.09 against the bias of 10; docs/graft.md), so the
/// learned mask would be top-k. 1e9 moves the largest by about 9 in the first step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LearnOptions {
    /// Steps on S (the official `num_train_epochs`).
    pub steps: usize,
    pub lr: f64,
    /// b in σ(S − b).
    pub sigmoid_bias: f64,
    /// Rows per gradient batch.
    pub batch: usize,
    /// Batches averaged per step (the official code averages its few-shot training set).
    pub batches_per_step: usize,
    pub seed: u64,
}

impl Default for LearnOptions {
    fn default() -> Self {
        Self {
            steps: 10,
            lr: 1e9,
            sigmoid_bias: 10.0,
            batch: 8,
            batches_per_step: 8,
            seed: 0,
        }
    }
}

/// One step of the search, as it reports it.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LearnStep {
    pub step: usize,
    pub total: usize,
    /// Mean loss of the relaxed graft on the step's batches.
    pub loss: f32,
    /// Accuracy of the rounded mask on the gradient rows and on the validation rows.
    pub train_accuracy: f64,
    pub val_accuracy: f64,
    /// Parameters the rounded mask keeps.
    pub kept: usize,
    /// Parameters flipped relative to γ_base.
    pub changed: usize,
    /// The largest |ΔS| of the step: how far the learning rate moves the scores (about
    /// 10 flips a parameter out of γ_base's state).
    pub max_score_change: f32,
    pub best: bool,
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Learns a mask keeping about `sparsity` of the eligible parameters of `model`, with
/// gradients from `train` and selection on `train` + `val`. `on_step` may stop the search by
/// returning an error. The model is left at the best mask's graft.
pub fn learn_mask<M: Graftable>(
    model: &M,
    train: &[M::Row],
    val: &[M::Row],
    sparsity: f64,
    options: &LearnOptions,
    on_step: &mut dyn FnMut(&LearnStep) -> Result<()>,
) -> Result<Mask> {
    let names = model.shapes();
    let deltas: Vec<&[f32]> = model
        .eligible()
        .iter()
        .map(|e| e.delta.as_slice())
        .collect();
    let k = kept_count(sparsity, model.numel());
    let base = top_k(&names, &deltas, k);
    let base_f: Vec<Vec<f32>> = base.tensors.iter().map(|t| t.to_f32()).collect();
    let mut rng = StdRng::seed_from_u64(options.seed);
    let mut s: Vec<Vec<f32>> = model
        .eligible()
        .iter()
        .map(|e| (0..e.pre.len()).map(|_| rng.random::<f32>()).collect())
        .collect();
    let b = options.sigmoid_bias as f32;
    let relaxed = |s: &[Vec<f32>], t: usize, i: usize| {
        let g = base_f[t][i];
        g + (1.0 - 2.0 * g) * sigmoid(s[t][i] - b)
    };
    // The rows the gradient sees, in a fixed order (the official code's first batches).
    let mut rows: Vec<M::Row> = train.to_vec();
    rows.shuffle(&mut rng);
    rows.truncate(options.batch * options.batches_per_step);
    let batches: Vec<&[M::Row]> = rows.chunks(options.batch.max(1)).collect();

    let mut best = (f64::NEG_INFINITY, base.clone());
    for step in 1..=options.steps {
        model.set(&|t, i| relaxed(&s, t, i))?;
        let (loss, grads) = model.gradients(&batches)?;
        let lr = options.lr as f32;
        let mut max_score_change = 0f32;
        for (t, (st, g)) in s.iter_mut().zip(&grads).enumerate() {
            let delta = &model.eligible()[t].delta;
            for (i, sv) in st.iter_mut().enumerate() {
                let sg = sigmoid(*sv - b);
                let chain = (1.0 - 2.0 * base_f[t][i]) * sg * (1.0 - sg);
                let change = lr * g[i] * delta[i] * chain;
                max_score_change = max_score_change.max(change.abs());
                *sv -= change;
            }
        }
        let mut mask = model.empty_mask();
        let mut changed = 0;
        for (t, mt) in mask.tensors.iter_mut().enumerate() {
            for i in 0..mt.numel() {
                let on = relaxed(&s, t, i) >= 0.5;
                mt.set(i, on);
                changed += usize::from(on != base.tensors[t].get(i));
            }
        }
        model.set_mask(&mask)?;
        let train_accuracy = model.accuracy(&rows)?;
        let val_accuracy = model.accuracy(val)?;
        let is_best = train_accuracy + val_accuracy > best.0;
        let report = LearnStep {
            step,
            total: options.steps,
            loss,
            train_accuracy,
            val_accuracy,
            kept: mask.count(),
            changed,
            max_score_change,
            best: is_best,
        };
        if is_best {
            best = (train_accuracy + val_accuracy, mask);
        }
        on_step(&report)?;
    }
    model.set_mask(&best.1)?;
    Ok(best.1)
}
