//! What the fusion experiment needs from each model family: loading, the inputs activations
//! are measured on, fusion itself, the task metric and a short fine-tune. ViT classifiers
//! score accuracy on held-out scenes; decoders score perplexity on held-out mixture text.

use std::path::Path;

use anyhow::{Context, Result};
use candle_core::Tensor;

use super::activations::{activation_scenes, record, record_tokens, Activations};
use super::decoder_fusion;
use super::decoder_weights::DecoderWeights;
use super::options::FuseOptions;
use super::params::NamedParams;
use super::transport::TransportMap;
use super::vit_fusion;
use super::vit_weights::VitWeights;
use super::walk::Fusion;
use crate::data::{Sources, TextTasks};
use crate::eval::classifier::{eval_scenes, score_scenes};
use crate::train::nn::masked_cross_entropy;
use crate::train::{train_loop, Pull, Schedule, StepReport};
use crate::zoo::decoder::{mixture_texts, HELD_OUT_SEED};
use crate::zoo::vision::{train_steps, VitRecipe};

/// A family's score on its task: the metric, and the mean loss beside it.
#[derive(Debug, Clone, Copy)]
pub struct Score {
    pub score: f64,
    pub loss: f64,
}

pub type OnMap<'a> = dyn FnMut(&TransportMap, usize, usize) -> Result<()> + 'a;

/// One model family in the fusion experiment.
pub trait Family: NamedParams + Sized {
    /// The task's data: activation inputs, held-out items and the fine-tune stream's source.
    type Data;
    /// The task metric the results table shows.
    const METRIC: &'static str;
    /// What it is measured on, for the table's title.
    const HELD_OUT: &'static str;
    const HIGHER_IS_BETTER: bool;

    fn load(dir: &Path) -> Result<Self>;
    /// The residual stream's width (the fused model takes the anchor's).
    fn width(&self) -> usize;
    /// Whether the vanilla average is defined (every tensor the same shape).
    fn same_shape(&self, other: &Self) -> bool;
    /// `samples` inputs for the activation cost and `eval` held-out items, read with the
    /// anchor's tokenizer where there is one.
    fn data(anchor: &Path, samples: usize, eval: usize) -> Result<Self::Data>;
    fn activations(&self, data: &Self::Data) -> Result<Activations>;
    fn fuse(
        a: &Self,
        b: &Self,
        acts: (&Activations, &Activations),
        opts: FuseOptions,
        on_map: &mut OnMap,
    ) -> Result<Fusion<Self>>;
    /// `None` when there are no held-out items.
    fn score(&self, data: &Self::Data) -> Result<Option<Score>>;
    /// A short fine-tune on training data no parent saw (`seed` picks the stream).
    fn fine_tune(
        &self,
        data: &Self::Data,
        steps: usize,
        seed: u64,
        on_step: &mut dyn FnMut(StepReport) -> Result<()>,
    ) -> Result<Self>;
    fn save(&self, out: &Path) -> Result<()>;
}

/// Fusion of more than two models (the paper's extension): every other model is aligned onto
/// the anchor by its own pairwise fusion, then the anchor and all aligned models are averaged
/// with equal weights. A pairwise fusion `F_i = ½(Ã_i + B)` holds `Ã_i = 2F_i − B`, so the
/// mean of B and the N − 1 aligned models is `(2·ΣF_i − (N − 2)·B) / N`.
pub fn average_fusions<F: NamedParams>(anchor: &F, pairs: &[F]) -> Result<F> {
    anyhow::ensure!(!pairs.is_empty(), "no fused pairs to average");
    let n = pairs.len() as f32 + 1.0;
    let mut out = anchor.clone();
    for (name, p) in out.params_mut().iter_mut() {
        let mut sum = vec![0f32; p.data.len()];
        for pair in pairs {
            let q = pair.get(name)?;
            anyhow::ensure!(q.shape == p.shape, "{name}: a fused pair has another shape");
            sum.iter_mut().zip(&q.data).for_each(|(s, x)| *s += x);
        }
        for (x, s) in p.data.iter_mut().zip(sum) {
            *x = (2.0 * s - (n - 2.0) * *x) / n;
        }
    }
    Ok(out)
}

/// Fine-tuning a ViT after fusion: batch 64, a tenth of the zoo's peak learning rate.
const VIT_FINETUNE_BATCH: usize = 64;
const VIT_FINETUNE_LR: f64 = 2e-4;

pub struct SceneData {
    samples: usize,
    eval: usize,
}

impl Family for VitWeights {
    type Data = SceneData;
    const METRIC: &'static str = "accuracy";
    const HELD_OUT: &'static str = "held-out scenes";
    const HIGHER_IS_BETTER: bool = true;

    fn load(dir: &Path) -> Result<Self> {
        VitWeights::load(dir)
    }
    fn width(&self) -> usize {
        self.shape.hidden_size
    }
    fn same_shape(&self, other: &Self) -> bool {
        self.shape == other.shape
    }
    fn data(_: &Path, samples: usize, eval: usize) -> Result<SceneData> {
        Ok(SceneData { samples, eval })
    }
    fn activations(&self, data: &SceneData) -> Result<Activations> {
        record(self, &activation_scenes(data.samples))
    }
    fn fuse(
        a: &Self,
        b: &Self,
        acts: (&Activations, &Activations),
        opts: FuseOptions,
        on_map: &mut OnMap,
    ) -> Result<Fusion<Self>> {
        vit_fusion::fuse(a, b, acts, opts, on_map)
    }
    fn score(&self, data: &SceneData) -> Result<Option<Score>> {
        if data.eval == 0 {
            return Ok(None);
        }
        let model = self.model()?;
        let s = score_scenes(&eval_scenes(data.eval), |x| model.forward(x))?;
        Ok(Some(Score {
            score: s.accuracy,
            loss: s.loss,
        }))
    }
    fn fine_tune(
        &self,
        _: &SceneData,
        steps: usize,
        seed: u64,
        on_step: &mut dyn FnMut(StepReport) -> Result<()>,
    ) -> Result<Self> {
        let (varmap, model) = self.trainable()?;
        let recipe = VitRecipe {
            shape: self.shape,
            steps,
            batch: VIT_FINETUNE_BATCH,
            peak_lr: VIT_FINETUNE_LR,
            weight_decay: 0.05,
            seed,
        };
        train_steps(&recipe, &varmap, &model, on_step)?;
        self.with_values(&varmap)
    }
    fn save(&self, out: &Path) -> Result<()> {
        VitWeights::save(self, out)
    }
}

/// Decoders: token rows for activations are cut to this many tokens, so all rows have one
/// length.
const ACTIVATION_TOKENS: usize = 32;
/// Fine-tuning a decoder after fusion: the zoo's batch, a tenth of its peak learning rate.
const DECODER_FINETUNE_BATCH: usize = 32;
const DECODER_FINETUNE_LR: f64 = 3e-4;
/// Activation text: a generator neither the zoo nor the held-out rows use.
const SAMPLE_TEXT_SEED: u64 = 0xAC75;

pub struct TextData {
    tasks: TextTasks,
    tokenizer: crate::lm::tokenizer::TextTokenizer,
    /// Activation inputs, all [`ACTIVATION_TOKENS`] long.
    samples: Vec<Vec<u32>>,
    eval: Vec<Vec<u32>>,
}

impl TextData {
    fn rows(&self, seed: u64, n: usize) -> Result<Vec<Vec<u32>>> {
        mixture_texts(&self.tasks, seed, n)
            .iter()
            .map(|text| Ok(self.tokenizer.encode_prompt(text)?))
            .collect()
    }
}

fn text_tasks() -> Result<TextTasks> {
    Ok(TextTasks::new(Sources::load(
        &crate::zoo::dir().join("data"),
    )?))
}

/// The held-out mixture rows decoders are scored on (the first 200 are the zoo's).
pub fn eval_texts(n: usize) -> Result<Vec<String>> {
    Ok(mixture_texts(&text_tasks()?, HELD_OUT_SEED, n))
}

/// Sum of next-token negative log-likelihoods of `rows` and the number of tokens predicted.
fn nll(model: &crate::train::llama::TrainLlama, rows: &[Vec<u32>]) -> Result<(f64, usize)> {
    let (mut total, mut count) = (0.0, 0);
    for chunk in rows.chunks(DECODER_FINETUNE_BATCH) {
        let (loss, n) = batch_loss(model, chunk)?;
        total += loss.to_scalar::<f32>()? as f64 * n as f64;
        count += n;
    }
    Ok((total, count))
}

/// Mean next-token loss of a padded batch, and its token count.
fn batch_loss(
    model: &crate::train::llama::TrainLlama,
    rows: &[Vec<u32>],
) -> Result<(Tensor, usize)> {
    let rows: Vec<(Vec<u32>, usize)> = rows.iter().map(|r| (r.clone(), 1)).collect();
    let (inputs, targets, weights) = crate::zoo::decoder::batch_tensors(&rows)?;
    let n = rows.iter().map(|(r, _)| r.len().saturating_sub(1)).sum();
    let logits = model.forward(&inputs)?.flatten_to(1)?;
    Ok((masked_cross_entropy(&logits, &targets, &weights)?, n))
}

impl Family for DecoderWeights {
    type Data = TextData;
    const METRIC: &'static str = "perplexity";
    const HELD_OUT: &'static str = "held-out text";
    const HIGHER_IS_BETTER: bool = false;

    fn load(dir: &Path) -> Result<Self> {
        DecoderWeights::load(dir)
    }
    fn width(&self) -> usize {
        self.shape.intermediate_size
    }
    fn same_shape(&self, other: &Self) -> bool {
        self.shape == other.shape
    }
    fn data(anchor: &Path, samples: usize, eval: usize) -> Result<TextData> {
        let tokenizer = crate::lm::hf::load_tokenizer(anchor)
            .with_context(|| format!("{}: the anchor's tokenizer", anchor.display()))?;
        let mut data = TextData {
            tasks: text_tasks()?,
            tokenizer,
            samples: Vec::new(),
            eval: Vec::new(),
        };
        data.samples = data
            .rows(SAMPLE_TEXT_SEED, samples)?
            .into_iter()
            .filter(|r| r.len() >= ACTIVATION_TOKENS)
            .map(|r| r[..ACTIVATION_TOKENS].to_vec())
            .collect();
        anyhow::ensure!(
            samples == 0 || !data.samples.is_empty(),
            "the sample texts are shorter than {ACTIVATION_TOKENS} tokens"
        );
        data.eval = data.rows(HELD_OUT_SEED, eval)?;
        Ok(data)
    }
    fn activations(&self, data: &TextData) -> Result<Activations> {
        record_tokens(self, &data.samples)
    }
    fn fuse(
        a: &Self,
        b: &Self,
        acts: (&Activations, &Activations),
        opts: FuseOptions,
        on_map: &mut OnMap,
    ) -> Result<Fusion<Self>> {
        decoder_fusion::fuse(a, b, acts, opts, on_map)
    }
    fn score(&self, data: &TextData) -> Result<Option<Score>> {
        if data.eval.is_empty() {
            return Ok(None);
        }
        let (total, count) = nll(&self.model()?, &data.eval)?;
        let loss = total / count.max(1) as f64;
        Ok(Some(Score {
            score: loss.exp(),
            loss,
        }))
    }
    fn fine_tune(
        &self,
        data: &TextData,
        steps: usize,
        seed: u64,
        on_step: &mut dyn FnMut(StepReport) -> Result<()>,
    ) -> Result<Self> {
        let (varmap, model) = self.trainable()?;
        let schedule = Schedule::new(steps, DECODER_FINETUNE_LR, 0.05);
        train_loop(
            &varmap,
            Pull::None,
            schedule,
            |step| {
                // Each fine-tune seed and step draws its own rows.
                let rows = data
                    .rows(seed * 1_000_003 + step as u64, DECODER_FINETUNE_BATCH)
                    .map_err(|e| candle_core::Error::Msg(format!("{e:#}")))?;
                Ok(batch_loss(&model, &rows)
                    .map_err(|e| candle_core::Error::Msg(format!("{e:#}")))?
                    .0)
            },
            on_step,
        )?;
        self.with_values(&varmap)
    }
    fn save(&self, out: &Path) -> Result<()> {
        DecoderWeights::save(self, out)
    }
}
