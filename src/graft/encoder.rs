//! A BERT sequence classifier (the MiniLM fine-tunes) ready for grafting: the fine-tune loaded
//! into the differentiable forward of `train::bert`, and for every eligible tensor (the
//! transformer blocks) its pretrained value and its delta δ = θ_ft − θ_pre. Grafting writes
//! `θ_pre + c ⊙ δ` into the eligible tensors; embeddings and the head keep their fine-tuned
//! values, as the official code does (it loads the fine-tune and resets only the trainable
//! parameters).

use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarMap;
use tokenizers::{PaddingParams, Tokenizer};

use super::model::{eligible_tensors, place_in, save_folder, Eligible, Graftable, SetScore};
use crate::eval::metrics::{argmax, ece_of_bins, reliability};
use crate::train::bert::{id_mask, BertShape, TrainBertClassifier};
use crate::train::vit::classification_loss;

/// Rows scored per forward pass when evaluating.
const EVAL_BATCH: usize = 64;
/// The paper's calibration bins.
pub const ECE_BINS: usize = 15;

pub struct EncoderGraft {
    pub finetuned_dir: PathBuf,
    varmap: VarMap,
    model: TrainBertClassifier,
    tokenizer: Tokenizer,
    config: serde_json::Value,
    pub eligible: Vec<Eligible>,
    /// The task's place in the model's labels (a slice of a multi-task model's joint labels).
    pub labels: Range<usize>,
}

/// Tensors of the transformer blocks: the part of the model grafting ranges over.
pub fn is_eligible(name: &str) -> bool {
    name.contains("encoder.layer.")
}

/// `(layer, module)` of an eligible tensor, for the density heatmap: `layer 3`, and `q`, `k`,
/// `v`, `o`, `mlp in`, `mlp out` or `norm`.
pub fn place(name: &str) -> (String, String) {
    place_in(
        name,
        "layer.",
        &[
            ("LayerNorm", "norm"),
            ("self.query", "q"),
            ("self.key", "k"),
            ("self.value", "v"),
            ("attention.output", "o"),
            ("intermediate", "mlp in"),
        ],
    )
}

impl EncoderGraft {
    /// Loads the fine-tune at `finetuned` (a BERT classifier folder) and its pretrained `base`.
    pub fn load(base: &Path, finetuned: &Path, labels: Option<Range<usize>>) -> Result<Self> {
        let (shape, config): (BertShape, _) = crate::eval::classifier::read_config(finetuned)?;
        let num_labels = config["id2label"]
            .as_object()
            .map(|m| m.len())
            .filter(|&n| n > 0)
            .with_context(|| {
                format!(
                    "{}: config.json has no id2label: not a classifier",
                    finetuned.display()
                )
            })?;
        let labels = labels.unwrap_or(0..num_labels);
        ensure!(
            labels.end <= num_labels && !labels.is_empty(),
            "{}: labels {labels:?} outside the model's {num_labels}",
            finetuned.display()
        );
        let varmap = VarMap::new();
        let model =
            TrainBertClassifier::new(shape, num_labels, crate::train::seeded_builder(&varmap, 0))?;
        let weights = finetuned.join(crate::checkpoint::SINGLE_FILE);
        let missing = crate::train::load_into(&varmap, &weights, "")?;
        ensure!(
            missing.is_empty(),
            "{}: not a BERT classifier, it lacks {}",
            weights.display(),
            crate::text::elide(&missing.join(", "), 200)
        );
        let tok_path = finetuned.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tok_path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", tok_path.display()))?;
        tokenizer.with_padding(Some(PaddingParams::default()));

        let eligible = eligible_tensors(&varmap, base, finetuned, is_eligible)?;
        Ok(Self {
            finetuned_dir: finetuned.to_path_buf(),
            varmap,
            model,
            tokenizer,
            config,
            eligible,
            labels,
        })
    }

    /// Logits over the task's labels for `texts`.
    fn logits(&self, texts: &[&str]) -> Result<Tensor> {
        let enc = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| anyhow::anyhow!("tokenizer: {e}"))?;
        let (ids, mask) = id_mask(&enc)?;
        let logits = self.model.forward(&ids, &mask.to_dtype(DType::F32)?)?;
        Ok(logits.narrow(1, self.labels.start, self.labels.len())?)
    }

    /// Class probabilities (over the task's labels) of each row.
    pub fn probs(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(EVAL_BATCH) {
            let p = candle_nn::ops::softmax(&self.logits(chunk)?, D::Minus1)?;
            out.extend(p.to_vec2::<f32>()?);
        }
        Ok(out)
    }
}

impl Graftable for EncoderGraft {
    type Row = (String, usize);

    fn eligible(&self) -> &[Eligible] {
        &self.eligible
    }

    /// Mean cross-entropy of a batch (labels in the model's own numbering).
    fn loss(&self, rows: &[(String, usize)]) -> Result<Tensor> {
        let texts: Vec<&str> = rows.iter().map(|(t, _)| t.as_str()).collect();
        let gold: Vec<u32> = rows
            .iter()
            .map(|(_, l)| (l - self.labels.start) as u32)
            .collect();
        let gold = Tensor::from_vec(gold, rows.len(), &Device::Cpu)?;
        Ok(classification_loss(&self.logits(&texts)?, &gold)?)
    }

    fn accuracy(&self, rows: &[(String, usize)]) -> Result<f64> {
        Ok(self.score(rows)?.accuracy)
    }

    /// Accuracy, ECE over [`ECE_BINS`] bins, the reliability diagram and mean loss.
    fn score(&self, rows: &[(String, usize)]) -> Result<SetScore> {
        let texts: Vec<&str> = rows.iter().map(|(t, _)| t.as_str()).collect();
        let probs = self.probs(&texts)?;
        let mut confidence = Vec::with_capacity(rows.len());
        let mut correct = Vec::with_capacity(rows.len());
        let mut loss = 0.0;
        for (p, (_, l)) in probs.iter().zip(rows) {
            let gold = l - self.labels.start;
            let pred = argmax(p);
            confidence.push(p[pred]);
            correct.push(pred == gold);
            loss -= (p[gold].max(1e-12) as f64).ln();
        }
        let bins = reliability(&confidence, &correct, ECE_BINS);
        let n = rows.len().max(1) as f64;
        Ok(SetScore {
            accuracy: correct.iter().filter(|&&c| c).count() as f64 / n,
            ece: ece_of_bins(&bins),
            loss: loss / n,
            reliability: bins,
        })
    }

    fn save(&self, out: &Path) -> Result<()> {
        save_folder(&self.varmap, &self.config, &self.finetuned_dir, out)
    }

    fn place(&self, name: &str) -> (String, String) {
        place(name)
    }
}
