//! A ViT classifier folder as plain f32 arrays by name: what fusion reads, averages and writes.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};

use super::params::{load_safetensors, NamedParams, Params};

use crate::eval::classifier::read_config;
use crate::train::vit::{TrainVit, VitShape};

#[derive(Debug, Clone)]
pub struct VitWeights {
    pub shape: VitShape,
    pub labels: Vec<String>,
    pub params: Params,
}

impl NamedParams for VitWeights {
    fn params(&self) -> &Params {
        &self.params
    }
    fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }
}

pub const EMBEDDINGS: &str = "vit.embeddings";

impl VitWeights {
    pub fn load(dir: &Path) -> Result<Self> {
        let (raw, _): (serde_json::Value, _) = read_config(dir)?;
        let config = dir.join("config.json");
        ensure!(
            raw["model_type"] == "vit",
            "{}: not a ViT (model_type {})",
            config.display(),
            raw["model_type"]
        );
        let (shape, labels) = VitShape::from_hf_config(&raw)
            .map_err(|e| anyhow::anyhow!("{}: {e}", config.display()))?;
        let file = dir.join("model.safetensors");
        let params = load_safetensors(&file)?;
        let weights = Self {
            shape,
            labels,
            params,
        };
        // Building the model checks every name and shape against the config.
        weights
            .model()
            .with_context(|| format!("{}: weights do not match config.json", file.display()))?;
        Ok(weights)
    }

    /// A model over a copy of these weights.
    pub fn model(&self) -> Result<TrainVit> {
        Ok(self.trainable()?.1)
    }

    /// A trainable model over a copy of these weights, with the variables it trains.
    pub fn trainable(&self) -> Result<(VarMap, TrainVit)> {
        let varmap = self.varmap()?;
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let model = TrainVit::new(self.shape, vb)?;
        Ok((varmap, model))
    }

    /// Writes `config.json` and `model.safetensors` into `out`, atomically.
    pub fn save(&self, out: &Path) -> Result<()> {
        let config = self.shape.hf_config(&self.labels);
        self.save_folder(out, &config, |_| Ok(()))
    }
}
