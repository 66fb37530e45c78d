//! Per-neuron activation vectors over a sample of inputs (a ViT's training scenes, a decoder's
//! token rows, an encoder's sentences): the activation-based cost compares neuron i of one
//! model with neuron j of the other by the distance between these vectors (one entry per
//! sample and token).

use std::collections::BTreeMap;

use anyhow::Result;

use candle_core::{Device, Tensor};

use super::decoder_weights::DecoderWeights;
use super::encoder_weights::EncoderWeights;
use super::transport::Mat;
use super::vit_weights::VitWeights;
use crate::data::shapes::{scene, Scene, Split};
use crate::eval::classifier::scene_tensor;
use crate::train::site::Site;

/// Scenes seen by the activation cost (the paper uses about 200 validation samples).
pub const DEFAULT_SAMPLES: usize = 200;
const BATCH: usize = 50;
/// Far from the training streams of the zoo seeds (seed · 10⁷ onwards).
const SCENE_OFFSET: u64 = 7_000_000_000;

/// Activations of one site: `values` is `neurons × samples`, standardised.
#[derive(Debug, Clone)]
pub struct NeuronActs {
    pub values: Mat,
    /// Mean |activation| before standardising (the "weighted" residual policy uses it).
    pub mean_abs: f64,
}

/// Zero mean, unit variance over the whole layer, so layers of different scale (and the two
/// models) compare on one footing.
fn standardise(data: &mut [f32]) {
    let n = data.len().max(1) as f64;
    let mean = data.iter().map(|&x| x as f64).sum::<f64>() / n;
    let var = data.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
    let scale = 1.0 / var.sqrt().max(1e-12);
    for x in data {
        *x = ((*x as f64 - mean) * scale) as f32;
    }
}

pub type Activations = BTreeMap<Site, NeuronActs>;

/// Scenes the activation costs use: the same for both models.
pub fn activation_scenes(n: usize) -> Vec<Scene> {
    (0..n as u64)
        .map(|i| scene(Split::Train, SCENE_OFFSET + i))
        .collect()
}

/// Every tapped site's standardised activations on `scenes`.
pub fn record(weights: &VitWeights, scenes: &[Scene]) -> Result<Activations> {
    let model = weights.model()?;
    let mut taps = TokenMajor::new();
    for batch in scenes.chunks(BATCH) {
        let refs: Vec<&Scene> = batch.iter().collect();
        model.forward_tapped(&scene_tensor(&refs)?, &mut |site, t| taps.add(site, t))?;
    }
    Ok(taps.finish())
}

/// Every site's standardised activations of a decoder on token rows of one length.
pub fn record_tokens(weights: &DecoderWeights, rows: &[Vec<u32>]) -> Result<Activations> {
    let model = weights.model()?;
    let mut taps = TokenMajor::new();
    for batch in rows.chunks(BATCH) {
        model.forward_sites(&token_tensor(batch)?, &mut |site, t| taps.add(site, t))?;
    }
    Ok(taps.finish())
}

/// Every site's standardised activations of an encoder on tokenised sentences (special
/// tokens included). Sentences of one length run as one batch, so no padding enters the cost.
pub fn record_encoder(weights: &EncoderWeights, rows: &[Vec<u32>]) -> Result<Activations> {
    let model = weights.model()?;
    let mut by_len: BTreeMap<usize, Vec<Vec<u32>>> = BTreeMap::new();
    for r in rows {
        by_len.entry(r.len()).or_default().push(r.clone());
    }
    let mut taps = TokenMajor::new();
    for group in by_len.values() {
        for batch in group.chunks(BATCH) {
            let ids = token_tensor(batch)?;
            let mask = Tensor::ones(ids.dims(), candle_core::DType::F32, &Device::Cpu)?;
            model.forward_tapped(&ids, &mask, &mut |site, t| taps.add(site, t))?;
        }
    }
    Ok(taps.finish())
}

/// Token rows as a `[rows, len]` tensor (all rows one length).
pub fn token_tensor(rows: &[Vec<u32>]) -> Result<Tensor> {
    let len = rows.first().map_or(0, Vec::len);
    let flat: Vec<u32> = rows.iter().flatten().copied().collect();
    anyhow::ensure!(
        flat.len() == len * rows.len(),
        "token rows differ in length"
    );
    Ok(Tensor::from_vec(flat, (rows.len(), len), &Device::Cpu)?)
}

/// Token-major values per site (`[sample·token, neuron]`), transposed once at the end.
struct TokenMajor(BTreeMap<Site, (usize, Vec<f32>)>);

impl TokenMajor {
    fn new() -> Self {
        Self(BTreeMap::new())
    }

    fn add(&mut self, site: Site, t: &Tensor) -> candle_core::Result<()> {
        let neurons = t.dim(candle_core::D::Minus1)?;
        let entry = self.0.entry(site).or_insert((neurons, Vec::new()));
        entry.1.extend(t.flatten_all()?.to_vec1::<f32>()?);
        Ok(())
    }

    fn finish(self) -> Activations {
        let mut out = Activations::new();
        for (site, (neurons, data)) in self.0 {
            let mean_abs =
                data.iter().map(|x| x.abs() as f64).sum::<f64>() / data.len().max(1) as f64;
            let mut values = Mat::new(data.len() / neurons, neurons, data).transpose();
            standardise(&mut values.data);
            out.insert(site, NeuronActs { values, mean_abs });
        }
        out
    }
}
