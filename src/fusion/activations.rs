//! Per-neuron activation vectors of a ViT over a batch of its own training scenes: the
//! activation-based cost compares neuron i of one model with neuron j of the other by the
//! distance between these vectors (one entry per scene and token).

use std::collections::BTreeMap;

use anyhow::Result;

use super::transport::Mat;
use super::vit_weights::VitWeights;
use crate::data::shapes::{scene, Scene, Split};
use crate::eval::classifier::scene_tensor;
use crate::train::vit::Site;

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
    // Token-major values per site (`[scene·token, neuron]`), transposed once at the end.
    let mut token_major: BTreeMap<Site, (usize, Vec<f32>)> = BTreeMap::new();
    for batch in scenes.chunks(BATCH) {
        let refs: Vec<&Scene> = batch.iter().collect();
        model.forward_tapped(&scene_tensor(&refs)?, &mut |site, t| {
            let neurons = t.dim(candle_core::D::Minus1)?;
            let entry = token_major.entry(site).or_insert((neurons, Vec::new()));
            entry.1.extend(t.flatten_all()?.to_vec1::<f32>()?);
            Ok(())
        })?;
    }
    let mut out = Activations::new();
    for (site, (neurons, data)) in token_major {
        let mean_abs = data.iter().map(|x| x.abs() as f64).sum::<f64>() / data.len().max(1) as f64;
        let mut values = Mat::new(data.len() / neurons, neurons, data).transpose();
        standardise(&mut values.data);
        out.insert(site, NeuronActs { values, mean_abs });
    }
    Ok(out)
}
