//! Sentence embeddings with a BERT-style sentence-transformer (the shipped all-MiniLM-L6-v2):
//! mean pooling over tokens, then L2 normalisation, as the model's sentence-transformers config
//! prescribes. RAIN's similarity update and the retrieval labs use it.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, Tokenizer, TruncationParams};

use crate::lm::LmError;

/// Sentences longer than this many tokens are cut (the model was trained on 256).
const MAX_TOKENS: usize = 256;

pub struct SentenceEmbedder {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
}

impl SentenceEmbedder {
    /// Loads a folder with config.json, tokenizer.json and model.safetensors (f32 or f16).
    pub fn load(dir: &Path) -> Result<Self, LmError> {
        let device = Device::Cpu;
        let config_path = dir.join("config.json");
        let text = std::fs::read_to_string(&config_path)
            .map_err(|e| LmError::file(&config_path, format!("cannot read: {e}")))?;
        let config: Config = serde_json::from_str(&text)
            .map_err(|e| LmError::file(&config_path, format!("not a BERT config: {e}")))?;
        let tok_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tok_path)
            .map_err(|e| LmError::file(&tok_path, format!("cannot read tokenizer: {e}")))?;
        tokenizer.with_padding(Some(PaddingParams::default()));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| LmError::file(&tok_path, e))?;
        let weights = dir.join("model.safetensors");
        // SAFETY: mapped read-only; nothing writes the file while it is open.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &device) }
            .map_err(|e| {
            LmError::file(&weights, format!("not a valid safetensors file: {e}"))
        })?;
        let model = BertModel::load(vb, &config).map_err(|e| LmError::file(&weights, e))?;
        Ok(Self {
            model,
            tokenizer,
            device,
        })
    }

    /// Unit-length embeddings, one per sentence.
    pub fn embed(&self, sentences: &[&str]) -> Result<Vec<Vec<f32>>, LmError> {
        if sentences.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = self
            .tokenizer
            .encode_batch(sentences.to_vec(), true)
            .map_err(|e| LmError::Tokenizer(e.to_string()))?;
        let ids: Vec<Tensor> = encodings
            .iter()
            .map(|e| Tensor::new(e.get_ids(), &self.device))
            .collect::<candle_core::Result<_>>()?;
        let masks: Vec<Tensor> = encodings
            .iter()
            .map(|e| Tensor::new(e.get_attention_mask(), &self.device))
            .collect::<candle_core::Result<_>>()?;
        let ids = Tensor::stack(&ids, 0)?;
        let mask = Tensor::stack(&masks, 0)?;
        let token_types = ids.zeros_like()?;
        let hidden = self.model.forward(&ids, &token_types, Some(&mask))?;
        // Mean over real tokens only.
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
        let counts = mask.sum(1)?;
        let mean = summed.broadcast_div(&counts)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?;
        Ok(mean.broadcast_div(&norm)?.to_vec2::<f32>()?)
    }
}

/// Cosine similarity of two vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb).max(f32::MIN_POSITIVE)
}
