//! Merges of several fine-tunes of one base with mergekit's semantics (its
//! `generalized_task_arithmetic`): task arithmetic, TIES, dare_linear and dare_ties.
//! δ_i is sparsified (magnitude for TIES, random for DARE with the kept L1 norm matched to the
//! original), weighted, optionally sign-elected (TIES: the sign of Σ w_i δ_i), summed, optionally
//! divided by the summed weights of the entries kept, scaled by λ and added to the base.

use std::path::Path;

use anyhow::{ensure, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::pairing::{Pairing, TensorPair};
use super::prune::{stream_out, Engine, Output, Produced, Progress, RunSummary};
use crate::checkpoint::stats::TensorStats;
use crate::checkpoint::Checkpoint;
use crate::counter_rng::{drop_threshold, MaskKey};

crate::named_enum! {
    "merge method";
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum MergeMethod {
        TaskArithmetic = "task_arithmetic",
        Ties = "ties",
        DareLinear = "dare_linear",
        DareTies = "dare_ties",
    }
}

impl MergeMethod {
    fn sign_election(self) -> bool {
        matches!(self, MergeMethod::Ties | MergeMethod::DareTies)
    }

    fn random_drop(self) -> bool {
        matches!(self, MergeMethod::DareLinear | MergeMethod::DareTies)
    }

    /// mergekit's defaults: only TIES normalises; only the DARE variants rescale.
    pub fn default_normalize(self) -> bool {
        self == MergeMethod::Ties
    }

    pub fn default_rescale(self) -> bool {
        self.random_drop()
    }
}

/// One fine-tune in a merge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergeInput {
    pub weight: f64,
    /// Fraction of δ kept (1 − drop rate).
    pub density: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MergeSpec {
    pub method: MergeMethod,
    pub inputs: Vec<MergeInput>,
    pub normalize: bool,
    pub rescale: bool,
    pub lambda: f64,
    pub seed: u64,
}

impl MergeSpec {
    pub fn new(method: MergeMethod, inputs: Vec<MergeInput>) -> Self {
        Self {
            method,
            inputs,
            normalize: method.default_normalize(),
            rescale: method.default_rescale(),
            lambda: 1.0,
            seed: 0,
        }
    }

    pub fn validate(&self) -> Result<()> {
        ensure!(
            !self.inputs.is_empty(),
            "a merge needs at least one fine-tuned model"
        );
        for (i, m) in self.inputs.iter().enumerate() {
            ensure!(
                (0.0..=1.0).contains(&m.density),
                "model {}: density {} is outside [0, 1]",
                i + 1,
                m.density
            );
            ensure!(
                m.weight.is_finite(),
                "model {}: weight is not a number",
                i + 1
            );
        }
        Ok(())
    }
}

/// Sparsifies one model's δ in place, as mergekit's `sparsify` does.
fn sparsify(method: MergeMethod, delta: &mut [f32], density: f64, rescale: bool, key: MaskKey) {
    if density >= 1.0 {
        return;
    }
    if method.random_drop() {
        let t = drop_threshold(1.0 - density);
        let before: f64 = delta.iter().map(|d| d.abs() as f64).sum();
        delta.par_iter_mut().enumerate().for_each(|(i, d)| {
            if !key.keeps(i as u64, t) {
                *d = 0.0;
            }
        });
        if rescale {
            let after: f64 = delta.iter().map(|d| d.abs() as f64).sum();
            if before >= 1e-7 && after >= 1e-7 {
                let s = (before / after) as f32;
                delta.par_iter_mut().for_each(|d| *d *= s);
            }
        }
    } else if method == MergeMethod::Ties || method == MergeMethod::TaskArithmetic {
        if density <= 0.0 {
            delta.fill(0.0);
            return;
        }
        // mergekit keeps max(1, ⌊density·n⌋) entries of largest |δ|.
        let k = ((density * delta.len() as f64) as usize).max(1);
        let mut order: Vec<u32> = (0..delta.len() as u32).collect();
        if k < delta.len() {
            order.select_nth_unstable_by(k, |&a, &b| {
                delta[b as usize].abs().total_cmp(&delta[a as usize].abs())
            });
            let mut keep = vec![false; delta.len()];
            for &i in &order[..k] {
                keep[i as usize] = true;
            }
            for (d, k) in delta.iter_mut().zip(keep) {
                if !k {
                    *d = 0.0;
                }
            }
        }
    }
}

/// Merges one tensor. `deltas[i]` = θ_i − θ_base, overwritten in the process.
pub fn merge_tensor(
    spec: &MergeSpec,
    name: &str,
    base: &[f32],
    deltas: &mut [Vec<f32>],
) -> Vec<f32> {
    for (i, (d, m)) in deltas.iter_mut().zip(&spec.inputs).enumerate() {
        let key = MaskKey::new(spec.seed.wrapping_add(i as u64), name);
        sparsify(spec.method, d, m.density, spec.rescale, key);
        let w = m.weight as f32;
        d.par_iter_mut().for_each(|x| *x *= w);
    }
    let weights: Vec<f32> = spec.inputs.iter().map(|m| m.weight as f32).collect();
    let lambda = spec.lambda as f32;
    let elect = spec.method.sign_election();
    let normalize = spec.normalize;
    (0..base.len())
        .into_par_iter()
        .map(|j| {
            let sum: f32 = deltas.iter().map(|d| d[j]).sum();
            let (mixed, divisor) = if elect {
                let majority = if sum >= 0.0 { 1.0 } else { -1.0 };
                let mut mixed = 0.0f32;
                let mut div = 0.0f32;
                for (d, w) in deltas.iter().zip(&weights) {
                    if sign(d[j]) == majority {
                        mixed += d[j];
                        div += w;
                    }
                }
                (mixed, if div == 0.0 { 1.0 } else { div })
            } else {
                let div: f32 = weights.iter().sum();
                (sum, if div.abs() < 1e-8 { 1.0 } else { div })
            };
            let mut m = if normalize { mixed / divisor } else { mixed };
            if lambda != 1.0 {
                m *= lambda;
            }
            base[j] + m
        })
        .collect()
}

fn sign(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// Merges `finetuned` onto `base` and writes the checkpoint to `out` (side files from the first
/// fine-tune; tensors only the fine-tunes have are taken from the first).
pub fn merge_checkpoints(
    base: &Checkpoint,
    finetuned: &[Checkpoint],
    spec: &MergeSpec,
    output: &Output,
    progress: &mut Progress,
) -> Result<RunSummary> {
    spec.validate()?;
    ensure!(
        spec.inputs.len() == finetuned.len(),
        "{} models but parameters for {}",
        finetuned.len(),
        spec.inputs.len()
    );
    let pairings = Pairing::many(base, finetuned)?;
    let mut inputs: Vec<&Path> = vec![&base.dir];
    inputs.extend(finetuned.iter().map(|f| f.dir.as_path()));
    let compute = |first: &TensorPair, summary: &mut RunSummary| -> Result<Produced<'_>> {
        let ft = first.finetuned;
        match first.base {
            Some(b) if ft.is_float() => {
                let bv = base.read_f32(b)?;
                let mut deltas = Vec::with_capacity(finetuned.len());
                for (ck, p) in finetuned.iter().zip(&pairings) {
                    let t = p.get(&ft.name).expect("checked by Pairing::many").finetuned;
                    let mut v = ck.read_f32(t)?;
                    v.par_iter_mut().zip(&bv).for_each(|(x, b)| *x -= b);
                    deltas.push(v);
                    ck.release(t);
                }
                let merged = merge_tensor(spec, &ft.name, &bv, &mut deltas);
                base.release(b);
                summary
                    .tensors
                    .push(TensorStats::measure(&ft.name, &bv, &merged, &merged, false));
                Ok(Produced::Values(merged))
            }
            _ => {
                summary.carried.push(ft.name.clone());
                Ok(Produced::Copied(finetuned[0].raw(ft)))
            }
        }
    };
    stream_out(
        &finetuned[0],
        &pairings[0],
        &inputs,
        output,
        &Engine::default(),
        progress,
        compute,
    )
}
