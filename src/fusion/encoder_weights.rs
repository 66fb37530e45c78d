//! A BERT sequence-classifier folder (`config.json` with `id2label`, `model.safetensors` with
//! `BertForSequenceClassification` names, tokenizer files) as plain f32 arrays by name: what
//! encoder fusion reads, averages and writes.

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};

use super::params::{load_safetensors, NamedParams, Params};
use crate::train::bert::{BertShape, TrainBertClassifier};
use crate::train::model_folder::label_names;

#[derive(Debug, Clone)]
pub struct EncoderWeights {
    pub shape: BertShape,
    pub labels: Vec<String>,
    /// config.json as read, written back with the anchor's widths.
    pub config: serde_json::Value,
    pub params: Params,
    /// The folder it was read from: its tokenizer goes with every saved copy.
    pub source: PathBuf,
}

impl NamedParams for EncoderWeights {
    fn params(&self) -> &Params {
        &self.params
    }
    fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }
}

impl EncoderWeights {
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let config: serde_json::Value = crate::fs::read_json(&path, "a JSON config")?;
        ensure!(
            config["model_type"] == "bert",
            "{}: not a BERT encoder (model_type {})",
            path.display(),
            config["model_type"]
        );
        let shape: BertShape = serde_json::from_value(config.clone())
            .with_context(|| format!("{}: not a BERT config", path.display()))?;
        let labels = label_names(&config)
            .map_err(|e| anyhow::anyhow!("{}: not a classifier: {e}", path.display()))?;
        let file = dir.join("model.safetensors");
        let weights = Self {
            shape,
            labels,
            config,
            params: load_safetensors(&file)?,
            source: dir.to_path_buf(),
        };
        // Building the model checks every name and shape against the config.
        weights
            .trainable()
            .with_context(|| format!("{}: weights do not match config.json", file.display()))?;
        Ok(weights)
    }

    /// A model over a copy of these weights.
    pub fn model(&self) -> Result<TrainBertClassifier> {
        Ok(self.trainable()?.1)
    }

    /// A trainable model over a copy of these weights, with the variables it trains.
    pub fn trainable(&self) -> Result<(VarMap, TrainBertClassifier)> {
        let varmap = self.varmap()?;
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let model = TrainBertClassifier::new(self.shape.clone(), self.labels.len(), vb)?;
        self.ensure_complete(&varmap)?;
        Ok((varmap, model))
    }

    /// Writes `config.json`, `model.safetensors` and the source's tokenizer files into `out`,
    /// atomically: a folder candle-transformers' BERT and transformers load.
    pub fn save(&self, out: &Path) -> Result<()> {
        self.save_folder(out, &self.config, |dir| {
            crate::zoo::minilm::copy_tokenizer_files(&self.source, dir)
        })
    }
}
