//! What grafting needs from a model family: the eligible tensors (each a candle variable with its
//! pretrained value and delta), a task loss and a task accuracy. Setting coefficients, gradients
//! with respect to the eligible tensors, and saving are shared here.

use std::path::Path;

use anyhow::{Context, Result};
use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use serde::Serialize;

use super::mask::{Mask, MaskTensor};
use crate::checkpoint::Checkpoint;
use crate::delta::pairing::Pairing;
use crate::eval::metrics::ReliabilityBin;

/// One tensor the mask ranges over.
pub struct Eligible {
    pub name: String,
    pub shape: Vec<usize>,
    pub(super) var: Var,
    pub pre: Vec<f32>,
    pub delta: Vec<f32>,
}

/// Accuracy and calibration of one model on one set (decoders: exact match and answer loss;
/// no calibration, `ece` is NaN and the reliability diagram empty).
#[derive(Debug, Clone, Serialize)]
pub struct SetScore {
    pub accuracy: f64,
    pub ece: f64,
    pub loss: f64,
    pub reliability: Vec<ReliabilityBin>,
}

/// For every float tensor of the fine-tune that `eligible(name)` selects: its variable in
/// `varmap`, its base value and δ. Errors name the folders.
pub fn eligible_tensors(
    varmap: &VarMap,
    base: &Path,
    finetuned: &Path,
    eligible: impl Fn(&str) -> bool,
) -> Result<Vec<Eligible>> {
    let base_ck = Checkpoint::open(base)?;
    let ft_ck = Checkpoint::open(finetuned)?;
    let pairing = Pairing::new(&base_ck, &ft_ck)?;
    let vars = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned VarMap"))?;
    let mut out = Vec::new();
    for pair in &pairing.pairs {
        let ft = pair.finetuned;
        if !eligible(&ft.name) || !ft.is_float() {
            continue;
        }
        let b = pair
            .base
            .with_context(|| format!("{}: the base has no {}", base.display(), ft.name))?;
        let var = vars
            .get(&ft.name)
            .with_context(|| format!("the model has no variable {}", ft.name))?
            .clone();
        let pre = base_ck.read_f32(b)?;
        let delta: Vec<f32> = ft_ck
            .read_f32(ft)?
            .iter()
            .zip(&pre)
            .map(|(f, p)| f - p)
            .collect();
        out.push(Eligible {
            name: ft.name.clone(),
            shape: ft.shape.clone(),
            var,
            pre,
            delta,
        });
    }
    anyhow::ensure!(
        !out.is_empty(),
        "{}: no transformer-block tensors to graft",
        finetuned.display()
    );
    Ok(out)
}

/// `(layer, module)` of a block tensor for the density heatmap: `layer N` from the number after
/// `layer_key`, and the module of the first `(pattern, module)` the name contains, else
/// `mlp out`.
pub fn place_in(name: &str, layer_key: &str, modules: &[(&str, &str)]) -> (String, String) {
    let layer = name
        .split(layer_key)
        .nth(1)
        .and_then(|r| r.split('.').next())
        .map_or_else(|| "?".to_string(), |l| format!("layer {l}"));
    let module = modules
        .iter()
        .find(|(pattern, _)| name.contains(pattern))
        .map_or("mlp out", |(_, m)| m);
    (layer, module.to_string())
}

/// A model whose transformer blocks can be grafted.
pub trait Graftable {
    /// One labelled example.
    type Row: Clone + Send + Sync;

    fn eligible(&self) -> &[Eligible];
    /// Mean task loss of a batch (differentiable).
    fn loss(&self, rows: &[Self::Row]) -> Result<Tensor>;
    /// Task accuracy of the model as it is set.
    fn accuracy(&self, rows: &[Self::Row]) -> Result<f64>;
    /// Accuracy with calibration where the family has it.
    fn score(&self, rows: &[Self::Row]) -> Result<SetScore>;
    /// Writes the model as it is set as a folder beside the fine-tune's side files.
    fn save(&self, out: &Path) -> Result<()>;
    /// `(layer, module)` of an eligible tensor, for the density heatmap.
    fn place(&self, name: &str) -> (String, String);

    /// Parameters the mask ranges over.
    fn numel(&self) -> usize {
        self.eligible().iter().map(|e| e.pre.len()).sum()
    }

    fn shapes(&self) -> Vec<(String, Vec<usize>)> {
        self.eligible()
            .iter()
            .map(|e| (e.name.clone(), e.shape.clone()))
            .collect()
    }

    /// An all-zero mask over the eligible tensors.
    fn empty_mask(&self) -> Mask {
        Mask {
            tensors: self
                .eligible()
                .iter()
                .map(|e| MaskTensor::zeros(&e.name, &e.shape))
                .collect(),
            meta: Default::default(),
        }
    }

    /// Sets every eligible tensor to `θ_pre + coef(t, i) · δ` (coefficient 1: the fine-tune).
    fn set(&self, coef: &dyn Fn(usize, usize) -> f32) -> Result<()> {
        for (t, e) in self.eligible().iter().enumerate() {
            let values: Vec<f32> = e
                .pre
                .iter()
                .zip(&e.delta)
                .enumerate()
                .map(|(i, (p, d))| p + coef(t, i) * d)
                .collect();
            e.var
                .set(&Tensor::from_vec(values, e.shape.as_slice(), &Device::Cpu)?)?;
        }
        Ok(())
    }

    /// The grafted model of a binary mask.
    fn set_mask(&self, mask: &Mask) -> Result<()> {
        self.set(&|t, i| f32::from(u8::from(mask.tensors[t].get(i))))
    }

    /// Mean loss over `batches` and its gradient with respect to each eligible tensor.
    fn gradients(&self, batches: &[&[Self::Row]]) -> Result<(f32, Vec<Vec<f32>>)> {
        let mut sum: Vec<Vec<f32>> = self
            .eligible()
            .iter()
            .map(|e| vec![0.0; e.pre.len()])
            .collect();
        let mut loss_sum = 0.0;
        for batch in batches {
            let loss = self.loss(batch)?;
            loss_sum += loss.to_scalar::<f32>()?;
            let grads = loss.backward()?;
            for (e, acc) in self.eligible().iter().zip(&mut sum) {
                if let Some(g) = grads.get(e.var.as_tensor()) {
                    for (a, v) in acc.iter_mut().zip(g.flatten_all()?.to_vec1::<f32>()?) {
                        *a += v;
                    }
                }
            }
        }
        let n = batches.len().max(1) as f32;
        for acc in &mut sum {
            acc.iter_mut().for_each(|a| *a /= n);
        }
        Ok((loss_sum / n, sum))
    }
}

/// Writes `varmap` with `config` into `out` (atomically), with the fine-tune's side files
/// (tokenizer and the like) copied beside.
pub fn save_folder(
    varmap: &VarMap,
    config: &serde_json::Value,
    finetuned: &Path,
    out: &Path,
) -> Result<()> {
    let sides = Checkpoint::open(finetuned)?.side_files()?;
    crate::train::model_folder::save_checkpoint(out, varmap, config, |dir| {
        for f in sides {
            if let Some(name) = f.file_name().filter(|n| *n != "config.json") {
                std::fs::copy(&f, dir.join(name))?;
            }
        }
        Ok(())
    })
}
