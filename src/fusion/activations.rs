//! Per-neuron activation vectors of a ViT over a batch of its own training scenes: the
//! activation-based cost compares neuron i of one model with neuron j of the other by the
//! distance between these vectors (one entry per scene and token).

use std::collections::BTreeMap;

use anyhow::Result;

use super::vit_weights::VitWeights;
use crate::eval::classifier::scene_tensor;
use crate::train::vit::Site;
use crate::zoo::data::shapes::{scene, Scene, Split};

/// Scenes seen by the activation cost (the paper uses about 200 validation samples).
pub const DEFAULT_SAMPLES: usize = 200;
const BATCH: usize = 50;
/// Far from the training streams of the zoo seeds (seed · 10⁷ onwards).
const SCENE_OFFSET: u64 = 7_000_000_000;

/// Neuron-major activations of one site, `neurons × samples`.
#[derive(Debug, Clone)]
pub struct NeuronActs {
    pub neurons: usize,
    pub samples: usize,
    pub data: Vec<f32>,
    /// Mean |activation| before standardising (the "weighted" residual policy uses it).
    pub mean_abs: f64,
}

impl NeuronActs {
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.samples..(i + 1) * self.samples]
    }

    /// Zero mean, unit variance over the whole layer, so layers of different scale (and the two
    /// models) compare on one footing.
    fn standardise(&mut self) {
        let n = self.data.len().max(1) as f64;
        let mean = self.data.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = self
            .data
            .iter()
            .map(|&x| (x as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        let scale = 1.0 / var.sqrt().max(1e-12);
        for x in &mut self.data {
            *x = ((*x as f64 - mean) * scale) as f32;
        }
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
    // Token-major chunks per site, transposed once at the end.
    let mut chunks: BTreeMap<Site, Vec<Vec<f32>>> = BTreeMap::new();
    let mut widths: BTreeMap<Site, usize> = BTreeMap::new();
    for batch in scenes.chunks(BATCH) {
        let refs: Vec<&Scene> = batch.iter().collect();
        model.forward_tapped(&scene_tensor(&refs)?, &mut |site, t| {
            let n = t.dim(candle_core::D::Minus1)?;
            widths.insert(site, n);
            chunks
                .entry(site)
                .or_default()
                .push(t.flatten_all()?.to_vec1::<f32>()?);
            Ok(())
        })?;
    }
    let mut out = Activations::new();
    for (site, parts) in chunks {
        let neurons = widths[&site];
        let rows: usize = parts.iter().map(|p| p.len() / neurons).sum();
        let mut data = vec![0f32; neurons * rows];
        let mut r0 = 0;
        for part in &parts {
            for (r, token) in part.chunks(neurons).enumerate() {
                for (i, &x) in token.iter().enumerate() {
                    data[i * rows + r0 + r] = x;
                }
            }
            r0 += part.len() / neurons;
        }
        let mean_abs = data.iter().map(|x| x.abs() as f64).sum::<f64>() / data.len().max(1) as f64;
        let mut acts = NeuronActs {
            neurons,
            samples: rows,
            data,
            mean_abs,
        };
        acts.standardise();
        out.insert(site, acts);
    }
    Ok(out)
}
