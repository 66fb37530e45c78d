//! A llama-family decoder folder (llama, mistral, qwen2: `config.json`, `model.safetensors`,
//! tokenizer files) as plain f32 arrays by name: what decoder fusion reads, averages and writes.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};

use super::params::{load_safetensors, NamedParams, Params};
use crate::train::llama::{LlamaShape, TrainLlama};

/// Files a saved fusion copies from the anchor's folder, when it has them.
const TOKENIZER_FILES: [&str; 4] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
];

#[derive(Debug, Clone)]
pub struct DecoderWeights {
    pub shape: LlamaShape,
    /// config.json as read, written back unchanged (the widths fusion keeps are the anchor's).
    pub config: serde_json::Value,
    pub params: Params,
    /// The folder it was read from: its tokenizer goes with every saved copy.
    pub source: PathBuf,
}

impl NamedParams for DecoderWeights {
    fn params(&self) -> &Params {
        &self.params
    }
    fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }
}

/// The name of a parameter of decoder layer `l`, e.g. `layer(2, "self_attn.q_proj")`.
pub fn layer(l: usize, module: &str) -> String {
    format!("model.layers.{l}.{module}")
}

/// Whether `dir` holds a decoder this module reads (by config.json's `model_type`).
pub fn is_decoder(dir: &Path) -> bool {
    crate::fs::read_json::<serde_json::Value>(&dir.join("config.json"), "JSON")
        .map(|c| {
            matches!(
                c["model_type"].as_str(),
                Some("llama" | "mistral" | "qwen2")
            )
        })
        .unwrap_or(false)
}

impl DecoderWeights {
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let config: serde_json::Value = crate::fs::read_json(&path, "a JSON config")?;
        ensure!(
            matches!(
                config["model_type"].as_str(),
                Some("llama" | "mistral" | "qwen2")
            ),
            "{}: not a llama-family decoder (model_type {})",
            path.display(),
            config["model_type"]
        );
        let shape = LlamaShape::from_hf_config(&config)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let file = dir.join("model.safetensors");
        let weights = Self {
            shape,
            config,
            params: load_safetensors(&file)?,
            source: dir.to_path_buf(),
        };
        // Building the model checks every name and shape against the config.
        weights
            .model()
            .with_context(|| format!("{}: weights do not match config.json", file.display()))?;
        Ok(weights)
    }

    /// A model over a copy of these weights (dropout off).
    pub fn model(&self) -> Result<TrainLlama> {
        let mut model = self.trainable()?.1;
        model.train = false;
        Ok(model)
    }

    /// A trainable model over a copy of these weights, with the variables it trains.
    pub fn trainable(&self) -> Result<(VarMap, TrainLlama)> {
        let varmap = self.varmap()?;
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let model = TrainLlama::new(self.shape, vb)?;
        self.ensure_complete(&varmap)?;
        Ok((varmap, model))
    }

    /// Writes `config.json`, `model.safetensors` and the source's tokenizer files into `out`,
    /// atomically: a folder our runtime, candle-transformers and transformers load.
    pub fn save(&self, out: &Path) -> Result<()> {
        self.save_folder(out, &self.config, |dir| {
            crate::fs::copy_present(&self.source, dir, &TOKENIZER_FILES)
        })
    }
}
