//! A BERT sequence classifier (the MiniLM fine-tunes) ready for grafting: the fine-tune loaded
//! into the differentiable forward of `train::bert`, and for every eligible tensor (the
//! transformer blocks) its pretrained value and its delta δ = θ_ft − θ_pre. Grafting writes
//! `θ_pre + c ⊙ δ` into the eligible tensors; embeddings and the head keep their fine-tuned
//! values, as the official code does (it loads the fine-tune and resets only the trainable
//! parameters).

use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::VarMap;
use tokenizers::{PaddingParams, Tokenizer};

use super::mask::{Mask, MaskTensor};
use crate::checkpoint::Checkpoint;
use crate::delta::pairing::Pairing;
use crate::eval::metrics::{argmax, reliability, ReliabilityBin};
use crate::train::bert::{id_mask, BertShape, TrainBertClassifier};
use crate::train::vit::classification_loss;

/// Rows scored per forward pass when evaluating.
const EVAL_BATCH: usize = 64;
/// The paper's calibration bins.
pub const ECE_BINS: usize = 15;

/// One tensor the mask ranges over.
pub struct Eligible {
    pub name: String,
    pub shape: Vec<usize>,
    var: Var,
    pub pre: Vec<f32>,
    pub delta: Vec<f32>,
}

/// Accuracy and calibration of one model on one set.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SetScore {
    pub accuracy: f64,
    pub ece: f64,
    pub loss: f64,
    pub reliability: Vec<ReliabilityBin>,
}

pub struct EncoderGraft {
    pub finetuned_dir: PathBuf,
    pub base_dir: PathBuf,
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
    let layer = name
        .split("layer.")
        .nth(1)
        .and_then(|r| r.split('.').next())
        .map_or_else(|| "?".to_string(), |l| format!("layer {l}"));
    let module = if name.contains("LayerNorm") {
        "norm"
    } else if name.contains("self.query") {
        "q"
    } else if name.contains("self.key") {
        "k"
    } else if name.contains("self.value") {
        "v"
    } else if name.contains("attention.output") {
        "o"
    } else if name.contains("intermediate") {
        "mlp in"
    } else {
        "mlp out"
    };
    (layer, module.to_string())
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
                format!("{}: config.json has no id2label: not a classifier", finetuned.display())
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

        let base_ck = Checkpoint::open(base)?;
        let ft_ck = Checkpoint::open(finetuned)?;
        let pairing = Pairing::new(&base_ck, &ft_ck)?;
        let vars = varmap.data().lock().map_err(|_| anyhow::anyhow!("poisoned VarMap"))?;
        let mut eligible = Vec::new();
        for pair in &pairing.pairs {
            let ft = pair.finetuned;
            if !is_eligible(&ft.name) || !ft.is_float() {
                continue;
            }
            let b = pair.base.with_context(|| {
                format!("{}: the base has no {}", base.display(), ft.name)
            })?;
            let var = vars
                .get(&ft.name)
                .with_context(|| format!("the classifier has no variable {}", ft.name))?
                .clone();
            let pre = base_ck.read_f32(b)?;
            let delta: Vec<f32> =
                ft_ck.read_f32(ft)?.iter().zip(&pre).map(|(f, p)| f - p).collect();
            eligible.push(Eligible {
                name: ft.name.clone(),
                shape: ft.shape.clone(),
                var,
                pre,
                delta,
            });
        }
        drop(vars);
        ensure!(
            !eligible.is_empty(),
            "{}: no transformer-block tensors (encoder.layer.*) to graft",
            finetuned.display()
        );
        Ok(Self {
            finetuned_dir: finetuned.to_path_buf(),
            base_dir: base.to_path_buf(),
            varmap,
            model,
            tokenizer,
            config,
            eligible,
            labels,
        })
    }

    /// Parameters the mask ranges over.
    pub fn numel(&self) -> usize {
        self.eligible.iter().map(|e| e.pre.len()).sum()
    }

    pub fn shapes(&self) -> Vec<(String, Vec<usize>)> {
        self.eligible.iter().map(|e| (e.name.clone(), e.shape.clone())).collect()
    }

    /// An all-zero mask over the eligible tensors.
    pub fn empty_mask(&self) -> Mask {
        Mask {
            tensors: self.eligible.iter().map(|e| MaskTensor::zeros(&e.name, &e.shape)).collect(),
            meta: Default::default(),
        }
    }

    /// Sets every eligible tensor to `θ_pre + coef(t, i) · δ` (coefficient 1: the fine-tune).
    pub fn set(&self, coef: impl Fn(usize, usize) -> f32 + Sync) -> Result<()> {
        for (t, e) in self.eligible.iter().enumerate() {
            let values: Vec<f32> = e
                .pre
                .iter()
                .zip(&e.delta)
                .enumerate()
                .map(|(i, (p, d))| p + coef(t, i) * d)
                .collect();
            e.var.set(&Tensor::from_vec(values, e.shape.as_slice(), &Device::Cpu)?)?;
        }
        Ok(())
    }

    /// The grafted model of a binary mask.
    pub fn set_mask(&self, mask: &Mask) -> Result<()> {
        self.set(|t, i| f32::from(u8::from(mask.tensors[t].get(i))))
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

    /// Mean cross-entropy of a batch (labels in the model's own numbering).
    pub fn loss(&self, rows: &[(String, usize)]) -> Result<Tensor> {
        let texts: Vec<&str> = rows.iter().map(|(t, _)| t.as_str()).collect();
        let gold: Vec<u32> = rows.iter().map(|(_, l)| (l - self.labels.start) as u32).collect();
        let gold = Tensor::from_vec(gold, rows.len(), &Device::Cpu)?;
        Ok(classification_loss(&self.logits(&texts)?, &gold)?)
    }

    /// Gradient of the mean loss over `batches` with respect to each eligible tensor.
    pub fn gradients(&self, batches: &[&[(String, usize)]]) -> Result<(f32, Vec<Vec<f32>>)> {
        let mut sum: Vec<Vec<f32>> = self.eligible.iter().map(|e| vec![0.0; e.pre.len()]).collect();
        let mut loss_sum = 0.0;
        for batch in batches {
            let loss = self.loss(batch)?;
            loss_sum += loss.to_scalar::<f32>()?;
            let grads = loss.backward()?;
            for (e, acc) in self.eligible.iter().zip(&mut sum) {
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

    /// Class probabilities (over the task's labels) of each row.
    pub fn probs(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(EVAL_BATCH) {
            let p = candle_nn::ops::softmax(&self.logits(chunk)?, D::Minus1)?;
            out.extend(p.to_vec2::<f32>()?);
        }
        Ok(out)
    }

    /// Accuracy only (the mask search's train and validation checks).
    pub fn accuracy(&self, rows: &[(String, usize)]) -> Result<f64> {
        Ok(self.score(rows)?.accuracy)
    }

    /// Accuracy, ECE over [`ECE_BINS`] bins, the reliability diagram and mean loss.
    pub fn score(&self, rows: &[(String, usize)]) -> Result<SetScore> {
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
            ece: crate::eval::metrics::ece_of_bins(&bins),
            loss: loss / n,
            reliability: bins,
        })
    }

    /// Writes the model as it is now (after [`EncoderGraft::set_mask`]) as a classifier folder
    /// next to the fine-tune's tokenizer and side files, atomically.
    pub fn save(&self, out: &Path) -> Result<()> {
        let sides = Checkpoint::open(&self.finetuned_dir)?.side_files()?;
        crate::zoo::save_checkpoint(out, &self.varmap, &self.config, |dir| {
            for f in sides {
                if f.file_name().is_some_and(|n| n != "config.json") {
                    std::fs::copy(&f, dir.join(f.file_name().unwrap_or_default()))?;
                }
            }
            Ok(())
        })
    }
}
