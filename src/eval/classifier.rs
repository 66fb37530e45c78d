//! Classifier evaluation through candle-transformers' own models (`vit::Model`, `BertModel`),
//! so the zoo checkpoints are checked in the architecture other tools load them as.

use std::path::Path;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;
use candle_transformers::models::{bert, vit};
use serde::Serialize;

use super::metrics::{accuracy, argmax, expected_calibration_error, softmax};
use crate::data::classify::ClassData;
use crate::data::shapes::{scene, Scene, Split};
use crate::embed::{cosine, SentenceEmbedder};

pub const ECE_BINS: usize = 10;
const BATCH: usize = 100;

#[derive(Debug, Clone, Serialize)]
pub struct ClassifierScore {
    pub accuracy: f64,
    pub ece: f64,
    pub loss: f64,
    #[serde(skip)]
    pub predictions: Vec<usize>,
}

impl ClassifierScore {
    /// Scores rows of class probabilities against `labels`.
    pub fn from_probs(probs: &[Vec<f32>], labels: &[usize]) -> Self {
        let predictions: Vec<usize> = probs.iter().map(|p| argmax(p)).collect();
        let confidence: Vec<f32> = probs.iter().zip(&predictions).map(|(p, &i)| p[i]).collect();
        let correct: Vec<bool> = predictions
            .iter()
            .zip(labels)
            .map(|(p, l)| p == l)
            .collect();
        let loss = probs
            .iter()
            .zip(labels)
            .map(|(p, &l)| -(p[l].max(1e-12) as f64).ln())
            .sum::<f64>()
            / labels.len().max(1) as f64;
        Self {
            accuracy: accuracy(&predictions, labels),
            ece: expected_calibration_error(&confidence, &correct, ECE_BINS),
            loss,
            predictions,
        }
    }
}

/// `dir/config.json` as `T`, and as raw JSON; errors name the file.
pub(crate) fn read_config<T: serde::de::DeserializeOwned>(
    dir: &Path,
) -> Result<(T, serde_json::Value)> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let raw: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", path.display()))?;
    let cfg = serde_json::from_value(raw.clone())
        .with_context(|| format!("{}: unexpected config", path.display()))?;
    Ok((cfg, raw))
}

fn weights(dir: &Path) -> Result<VarBuilder<'static>> {
    let path = dir.join("model.safetensors");
    anyhow::ensure!(path.exists(), "{}: no such file", path.display());
    // SAFETY: mapped read-only; nothing writes the file while it is open.
    unsafe { VarBuilder::from_mmaped_safetensors(&[&path], DType::F32, &Device::Cpu) }
        .with_context(|| format!("{}: not a valid safetensors file", path.display()))
}

fn num_labels(raw: &serde_json::Value, dir: &Path) -> Result<usize> {
    raw["id2label"]
        .as_object()
        .map(|m| m.len())
        .filter(|&n| n > 0)
        .with_context(|| format!("{}: config.json has no id2label", dir.display()))
}

/// The first `n` held-out scenes.
pub fn eval_scenes(n: usize) -> Vec<Scene> {
    (0..n as u64).map(|i| scene(Split::Eval, i)).collect()
}

/// Pixels of scenes as the ViT input: `[n, 3, size, size]`, scaled to −1..1.
pub fn scene_tensor(scenes: &[&Scene]) -> candle_core::Result<Tensor> {
    let size = crate::data::shapes::IMAGE_SIZE;
    let data: Vec<f32> = scenes
        .iter()
        .flat_map(|s| s.pixels.iter().map(|p| p * 2.0 - 1.0))
        .collect();
    Tensor::from_vec(data, (scenes.len(), 3, size, size), &Device::Cpu)
}

/// A ViT classifier folder on held-out scenes.
pub fn vit_eval(dir: &Path, scenes: &[Scene]) -> Result<ClassifierScore> {
    let (cfg, raw): (vit::Config, _) = read_config(dir)?;
    let model = vit::Model::new(&cfg, num_labels(&raw, dir)?, weights(dir)?)
        .with_context(|| format!("{}: not a ViT classifier", dir.display()))?;
    score_scenes(scenes, |x| model.forward(x))
}

/// Accuracy, loss and calibration of a pixels → logits function on `scenes`.
pub fn score_scenes(
    scenes: &[Scene],
    logits: impl Fn(&Tensor) -> candle_core::Result<Tensor>,
) -> Result<ClassifierScore> {
    let mut probs = Vec::with_capacity(scenes.len());
    for chunk in scenes.chunks(BATCH) {
        let refs: Vec<&Scene> = chunk.iter().collect();
        let logits = logits(&scene_tensor(&refs)?)?;
        probs.extend(candle_nn::ops::softmax(&logits, D::Minus1)?.to_vec2::<f32>()?);
    }
    let labels: Vec<usize> = scenes.iter().map(Scene::label).collect();
    Ok(ClassifierScore::from_probs(&probs, &labels))
}

/// A BERT sequence-classification folder (`bert.*` encoder, pooler, `classifier`).
pub struct BertClassifier {
    encoder: bert::BertModel,
    pooler: candle_nn::Linear,
    classifier: candle_nn::Linear,
    tokenizer: tokenizers::Tokenizer,
}

impl BertClassifier {
    pub fn load(dir: &Path) -> Result<Self> {
        let (cfg, raw): (bert::Config, _) = read_config(dir)?;
        let labels = num_labels(&raw, dir)?;
        let vb = weights(dir)?;
        let h = cfg.hidden_size;
        let bad = |e| anyhow::anyhow!("{}: not a BERT classifier: {e}", dir.display());
        let encoder = bert::BertModel::load(vb.pp("bert"), &cfg).map_err(bad)?;
        let pooler = candle_nn::linear(h, h, vb.pp("bert.pooler.dense")).map_err(bad)?;
        let classifier = candle_nn::linear(h, labels, vb.pp("classifier")).map_err(bad)?;
        let tok_path = dir.join("tokenizer.json");
        let mut tokenizer = tokenizers::Tokenizer::from_file(&tok_path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", tok_path.display()))?;
        tokenizer.with_padding(Some(tokenizers::PaddingParams::default()));
        Ok(Self {
            encoder,
            pooler,
            classifier,
            tokenizer,
        })
    }

    /// The encoder's last hidden states of a batch of texts, `[batch, time, hidden]`.
    fn hidden(&self, texts: &[&str]) -> Result<Tensor> {
        let enc = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(anyhow::Error::msg)?;
        let (ids, mask) = crate::train::bert::id_mask(&enc)?;
        Ok(self
            .encoder
            .forward(&ids, &ids.zeros_like()?, Some(&mask))?)
    }

    /// Class probabilities for each text.
    pub fn probs(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        use candle_core::Module;
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(BATCH) {
            let first = self.hidden(chunk)?.narrow(1, 0, 1)?.squeeze(1)?;
            let logits = self
                .classifier
                .forward(&self.pooler.forward(&first)?.tanh()?)?;
            out.extend(candle_nn::ops::softmax(&logits, D::Minus1)?.to_vec2::<f32>()?);
        }
        Ok(out)
    }

    /// The last hidden layer of every token of `texts`, flattened (DAREx's unsupervised
    /// objective for encoders compares these).
    pub fn last_hidden(&self, texts: &[&str]) -> Result<Vec<f32>> {
        let mut out = Vec::new();
        for chunk in texts.chunks(BATCH) {
            out.extend(self.hidden(chunk)?.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(out)
    }
}

pub fn bert_eval(dir: &Path, data: &[(String, usize)]) -> Result<ClassifierScore> {
    let model = BertClassifier::load(dir)?;
    let texts: Vec<&str> = data.iter().map(|(t, _)| t.as_str()).collect();
    let labels: Vec<usize> = data.iter().map(|(_, l)| *l).collect();
    Ok(ClassifierScore::from_probs(&model.probs(&texts)?, &labels))
}

/// The pretrained sentence encoder with no head: each text gets the label whose description
/// embeds nearest (cosine), probabilities a softmax over cosines at temperature 0.05.
pub fn zero_shot_eval(embedder: &SentenceEmbedder, data: &ClassData) -> Result<ClassifierScore> {
    let descriptions: Vec<&str> = data.label_descriptions.iter().map(String::as_str).collect();
    let label_vecs = embedder.embed(&descriptions)?;
    let texts: Vec<&str> = data.eval.iter().map(|(t, _)| t.as_str()).collect();
    let probs: Vec<Vec<f32>> = embedder
        .embed(&texts)?
        .iter()
        .map(|v| {
            softmax(
                &label_vecs
                    .iter()
                    .map(|l| cosine(v, l) / 0.05)
                    .collect::<Vec<_>>(),
            )
        })
        .collect();
    let labels: Vec<usize> = data.eval.iter().map(|(_, l)| *l).collect();
    Ok(ClassifierScore::from_probs(&probs, &labels))
}

/// Retrieval precision@1: each query's nearest document (cosine) must be its own.
pub fn retrieval_eval(
    embedder: &SentenceEmbedder,
    queries: &[String],
    docs: &[String],
) -> Result<f64> {
    let q: Vec<&str> = queries.iter().map(String::as_str).collect();
    let d: Vec<&str> = docs.iter().map(String::as_str).collect();
    let (qv, dv) = (embedder.embed(&q)?, embedder.embed(&d)?);
    let scores: Vec<Vec<f32>> = qv
        .iter()
        .map(|q| dv.iter().map(|d| cosine(q, d)).collect())
        .collect();
    let relevant: Vec<usize> = (0..queries.len()).collect();
    Ok(super::metrics::precision_at_1(&scores, &relevant))
}
