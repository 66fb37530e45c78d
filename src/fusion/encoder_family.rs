//! BERT classifiers in the fusion experiment: activations on training sentences no parent saw,
//! accuracy on the zoo encoders' held-out sentences, a short fine-tune on fresh sentences.

use std::path::Path;

use anyhow::Result;
use candle_core::DType;
use tokenizers::Tokenizer;

use super::activations::{record_encoder, Activations};
use super::bert_fusion;
use super::encoder_weights::EncoderWeights;
use super::family::{Family, OnMap, Score};
use super::options::FuseOptions;
use super::params::NamedParams;
use super::walk::Fusion;
use crate::eval::classifier::ClassifierScore;
use crate::train::bert::{batch_loss, id_mask};
use crate::train::{train_loop, Pull, Schedule, StepReport};
use crate::zoo::encoder::SentimentSentences;
use crate::zoo::minilm::padded_tokenizer;

/// Fine-tuning an encoder after fusion: the zoo's batch, a tenth of its peak learning rate.
const FINETUNE_BATCH: usize = 32;
const FINETUNE_LR: f64 = 1e-4;
/// Sentence streams neither the zoo's training (seed · 1 000 003 + step) nor each other use.
const SAMPLE_STREAM: u64 = 0xAC75_0000_0000;
const FINETUNE_STREAM: u64 = 0xF17E_0000_0000;
const SCORE_BATCH: usize = 100;

pub struct SentenceData {
    sentences: SentimentSentences,
    tokenizer: Tokenizer,
    /// Activation inputs: token ids with the special tokens.
    samples: Vec<Vec<u32>>,
    eval: Vec<(String, usize)>,
}

/// Accuracy and mean loss of `model` on labelled sentences.
fn classify(w: &EncoderWeights, tokenizer: &Tokenizer, rows: &[(String, usize)]) -> Result<Score> {
    let model = w.model()?;
    let mut probs = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(SCORE_BATCH) {
        let texts: Vec<&str> = chunk.iter().map(|(t, _)| t.as_str()).collect();
        let enc = tokenizer
            .encode_batch(texts, true)
            .map_err(anyhow::Error::msg)?;
        let (ids, mask) = id_mask(&enc)?;
        let logits = model.forward(&ids, &mask.to_dtype(DType::F32)?)?;
        probs.extend(candle_nn::ops::softmax(&logits, candle_core::D::Minus1)?.to_vec2::<f32>()?);
    }
    let labels: Vec<usize> = rows.iter().map(|(_, l)| *l).collect();
    let s = ClassifierScore::from_probs(&probs, &labels);
    Ok(Score {
        score: s.accuracy,
        loss: s.loss,
    })
}

impl Family for EncoderWeights {
    type Data = SentenceData;
    const METRIC: &'static str = "accuracy";
    const HELD_OUT: &'static str = "held-out sentences";
    const HIGHER_IS_BETTER: bool = true;

    fn load(dir: &Path) -> Result<Self> {
        EncoderWeights::load(dir)
    }
    fn width(&self) -> usize {
        self.shape.hidden_size
    }
    fn same_shape(&self, other: &Self) -> bool {
        self.shape == other.shape && self.labels == other.labels
    }
    fn data(anchor: &Path, samples: usize, eval: usize) -> Result<SentenceData> {
        let sentences = SentimentSentences::load()?;
        let tokenizer = padded_tokenizer(anchor)?;
        let samples = sentences
            .train_rows(SAMPLE_STREAM, samples)
            .iter()
            .map(|(text, _)| {
                Ok(tokenizer
                    .encode(text.as_str(), true)
                    .map_err(anyhow::Error::msg)?
                    .get_ids()
                    .to_vec())
            })
            .collect::<Result<_>>()?;
        let eval_set = sentences.eval().iter().take(eval).cloned().collect();
        Ok(SentenceData {
            sentences,
            tokenizer,
            samples,
            eval: eval_set,
        })
    }
    fn activations(&self, data: &SentenceData) -> Result<Activations> {
        record_encoder(self, &data.samples)
    }
    fn fuse(
        a: &Self,
        b: &Self,
        acts: (&Activations, &Activations),
        opts: FuseOptions,
        on_map: &mut OnMap,
    ) -> Result<Fusion<Self>> {
        bert_fusion::fuse(a, b, acts, opts, on_map)
    }
    fn score(&self, data: &SentenceData) -> Result<Option<Score>> {
        if data.eval.is_empty() {
            return Ok(None);
        }
        Ok(Some(classify(self, &data.tokenizer, &data.eval)?))
    }
    fn fine_tune(
        &self,
        data: &SentenceData,
        steps: usize,
        seed: u64,
        on_step: &mut dyn FnMut(StepReport) -> Result<()>,
    ) -> Result<Self> {
        let (varmap, model) = self.trainable()?;
        train_loop(
            &varmap,
            Pull::WeightDecay { lambda: 0.01 },
            Schedule::new(steps, FINETUNE_LR, 0.05),
            |step| {
                let stream = FINETUNE_STREAM + seed * 1_000_003 + step as u64;
                let rows = data.sentences.train_rows(stream, FINETUNE_BATCH);
                batch_loss(&model, &data.tokenizer, &rows.iter().collect::<Vec<_>>())
            },
            on_step,
        )?;
        self.with_values(&varmap)
    }
    fn save(&self, out: &Path) -> Result<()> {
        EncoderWeights::save(self, out)
    }
}
