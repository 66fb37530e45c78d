//! The captioner, ClipCap-style: the frozen retriever's image embedding goes through an MLP
//! mapper (`Linear → tanh → Linear`, as ClipCap's) to a prefix of embeddings, and a small
//! llama decoder writes the caption after it. Cross-entropy training on the reference
//! captions; decoding greedy, by beam search (ranked by mean log-probability, as ClipCap's
//! `generate_beam`) or by sampling.

use std::path::Path;

use anyhow::Result;
use candle_core::{Device, Tensor, D};
use candle_nn::{VarBuilder, VarMap};
use rand::rngs::StdRng;
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::retriever::{padded, pixels, Retriever};
use super::scenes::{scene, Domain, Scene, Split};
use super::vocab::{self, BOS, EOS, PAD};
use crate::train::llama::{LlamaShape, TrainLlama};
use crate::train::vit::Dense;
use crate::train::{train_loop, Pull, Schedule, StepReport};

/// Longest caption decoded, in words.
pub const MAX_WORDS: usize = 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaptionerRecipe {
    pub width: usize,
    pub layers: usize,
    /// Prefix embeddings the mapper makes.
    pub prefix: usize,
    pub steps: usize,
    pub batch: usize,
    pub peak_lr: f64,
    pub seed: u64,
}

impl Default for CaptionerRecipe {
    fn default() -> Self {
        Self {
            width: 128,
            layers: 2,
            prefix: 4,
            steps: 2000,
            batch: 64,
            peak_lr: 1e-3,
            seed: 0,
        }
    }
}

impl CaptionerRecipe {
    fn decoder(&self) -> LlamaShape {
        LlamaShape {
            vocab_size: vocab::size(),
            hidden_size: self.width,
            intermediate_size: 2 * self.width,
            num_layers: self.layers,
            num_heads: 4,
            num_kv_heads: 4,
            max_positions: self.prefix + MAX_WORDS + 4,
            rope_theta: 10_000.0,
            rms_norm_eps: 1e-5,
            tie_embeddings: true,
            qkv_bias: false,
        }
    }
}

crate::named_enum! {
    "decoding";
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum Decoding {
        /// The most likely word at each step (the paper's training decoding).
        Greedy = "greedy",
        /// Beam search, width 5 (the paper's test decoding).
        Beam = "beam",
        /// Sampling at temperature 1 (DiscriTune's training decoding here).
        Sample = "sample",
    }
}

pub struct Captioner {
    pub recipe: CaptionerRecipe,
    map_in: Dense,
    map_out: Dense,
    decoder: TrainLlama,
}

impl Captioner {
    /// `embed`: the image embedding's size.
    pub fn new(recipe: CaptionerRecipe, embed: usize, vb: VarBuilder) -> Result<Self> {
        let (p, h) = (recipe.prefix, recipe.width);
        let m = vb.pp("mapper");
        Ok(Self {
            map_in: Dense::new(&m.pp("0"), p * h / 2, embed, 0.05)?,
            map_out: Dense::new(&m.pp("2"), p * h, p * h / 2, 0.05)?,
            decoder: TrainLlama::new(recipe.decoder(), vb.pp("decoder"))?,
            recipe,
        })
    }

    /// Prefix embeddings `[n, prefix, width]` of image embeddings `[n, embed]`.
    fn prefix(&self, features: &Tensor) -> Result<Tensor> {
        let n = features.dim(0)?;
        let x = self
            .map_out
            .forward(&self.map_in.forward(features)?.tanh()?)?;
        Ok(x.reshape((n, self.recipe.prefix, self.recipe.width))?)
    }

    /// Log-probabilities `[n, t, vocab]` of the next word at every position of `ids [n, t]`.
    fn next_logprobs(&self, prefix: &Tensor, ids: &Tensor) -> Result<Tensor> {
        let hidden = self.decoder.hidden_after(prefix, ids)?;
        Ok(candle_nn::ops::log_softmax(
            &self.decoder.logits(&hidden)?,
            D::Minus1,
        )?)
    }

    /// Mean log-probability per word (end included) of each caption `[n]` given its image,
    /// and the number of predicted tokens — log π as DiscriTune averages it.
    pub fn caption_logprob(&self, features: &Tensor, captions: &[Vec<u32>]) -> Result<Tensor> {
        let prefix = self.prefix(features)?;
        let (ids, ends) = padded(captions)?;
        let t = ids.dim(1)?;
        let inputs = ids.narrow(1, 0, t - 1)?;
        let targets = ids.narrow(1, 1, t - 1)?;
        let logp = self
            .next_logprobs(&prefix, &inputs)?
            .gather(&targets.contiguous()?.unsqueeze(2)?, 2)?
            .squeeze(2)?;
        let n = captions.len();
        let mask: Vec<f32> = (0..n)
            .flat_map(|i| {
                let end = ends[i];
                (1..t).map(move |j| (j <= end) as u8 as f32)
            })
            .collect();
        let mask = Tensor::from_vec(mask, (n, t - 1), &Device::Cpu)?;
        let lengths: Vec<f32> = ends.iter().map(|&e| e.max(1) as f32).collect();
        let lengths = Tensor::from_vec(lengths, n, &Device::Cpu)?;
        Ok((logp * mask)?.sum(1)?.div(&lengths)?)
    }

    /// Captions (word ids after `<s>`, up to and without `</s>`) of image embeddings.
    pub fn decode(
        &self,
        features: &Tensor,
        decoding: Decoding,
        rng: &mut StdRng,
    ) -> Result<Vec<Vec<u32>>> {
        match decoding {
            Decoding::Beam => self.beam(features, 5),
            Decoding::Greedy => self.step_wise(features, |row| Ok(argmax(row))),
            Decoding::Sample => self.step_wise(features, |row| Ok(sample(row, rng))),
        }
    }

    /// Greedy or sampled decoding, all images at once; `pick` chooses a word from a row of
    /// log-probabilities.
    fn step_wise(
        &self,
        features: &Tensor,
        mut pick: impl FnMut(&[f32]) -> Result<u32>,
    ) -> Result<Vec<Vec<u32>>> {
        let n = features.dim(0)?;
        let prefix = self.prefix(features)?;
        let mut seqs: Vec<Vec<u32>> = vec![vec![BOS]; n];
        let mut done = vec![false; n];
        for _ in 0..=MAX_WORDS {
            let rows = self.last_logprobs(&prefix, &seqs)?;
            for (i, mut row) in rows.into_iter().enumerate() {
                block_repeats(&seqs[i], &mut row);
                let w = if done[i] { PAD } else { pick(&row)? };
                done[i] |= w == EOS;
                seqs[i].push(w);
            }
            if done.iter().all(|&d| d) {
                break;
            }
        }
        Ok(seqs.iter().map(|s| words_of(s)).collect())
    }

    /// Log-probabilities of the next word after each of `seqs` (equal lengths).
    fn last_logprobs(&self, prefix: &Tensor, seqs: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        let t = seqs[0].len();
        let flat: Vec<u32> = seqs.iter().flatten().copied().collect();
        let ids = Tensor::from_vec(flat, (seqs.len(), t), &Device::Cpu)?;
        let hidden = self
            .decoder
            .hidden_after(prefix, &ids)?
            .narrow(1, t - 1, 1)?;
        let logits = self.decoder.logits(&hidden)?.squeeze(1)?;
        Ok(candle_nn::ops::log_softmax(&logits, D::Minus1)?.to_vec2()?)
    }

    /// Beam search of `width` per image; hypotheses ranked by mean log-probability.
    fn beam(&self, features: &Tensor, width: usize) -> Result<Vec<Vec<u32>>> {
        let n = features.dim(0)?;
        let prefix = self.prefix(features)?;
        // Per image: (ids, summed log-probability, finished).
        let mut beams: Vec<Vec<(Vec<u32>, f32, bool)>> = vec![vec![(vec![BOS], 0.0, false)]; n];
        for _ in 0..=MAX_WORDS {
            let open: Vec<(usize, usize)> = beams
                .iter()
                .enumerate()
                .flat_map(|(i, b)| (0..b.len()).filter(move |&k| !b[k].2).map(move |k| (i, k)))
                .collect();
            if open.is_empty() {
                break;
            }
            let seqs: Vec<Vec<u32>> = open.iter().map(|&(i, k)| beams[i][k].0.clone()).collect();
            let rows: Vec<u32> = open.iter().map(|&(i, _)| i as u32).collect();
            let p = prefix.index_select(&Tensor::new(rows.as_slice(), &Device::Cpu)?, 0)?;
            let logps = self.last_logprobs(&p, &seqs)?;
            let mut next: Vec<Vec<(Vec<u32>, f32, bool)>> = beams
                .iter()
                .map(|b| b.iter().filter(|h| h.2).cloned().collect())
                .collect();
            for (&(i, k), mut row) in open.iter().zip(logps) {
                let (ids, score, _) = &beams[i][k];
                block_repeats(ids, &mut row);
                for w in top_k(&row, width) {
                    let mut ids = ids.clone();
                    ids.push(w);
                    next[i].push((ids, score + row[w as usize], w == EOS));
                }
            }
            for b in &mut next {
                b.sort_by(|x, y| mean(y).total_cmp(&mean(x)));
                b.truncate(width);
            }
            beams = next;
        }
        Ok(beams.iter().map(|b| words_of(&b[0].0)).collect())
    }

    pub fn load(dir: &Path) -> Result<Self> {
        Ok(Self::trainable(dir)?.0)
    }

    /// The captioner of a folder, its weights in their own VarMap (what DiscriTune trains).
    pub fn trainable(dir: &Path) -> Result<(Self, VarMap)> {
        let (recipe, embed): (CaptionerRecipe, usize) =
            super::read_config(dir, "caption-captioner")?;
        let vars = VarMap::new();
        let model = Self::new(recipe, embed, crate::train::seeded_builder(&vars, 0))?;
        super::load_weights(&vars, dir)?;
        Ok((model, vars))
    }
}

/// No word that would repeat a bigram of `seq` (transformers' `no_repeat_ngram_size = 2`):
/// without it, reward-tuned captions drift into "a blue a green a a a a".
fn block_repeats(seq: &[u32], row: &mut [f32]) {
    let Some(&last) = seq.last() else {
        return;
    };
    for pair in seq.windows(2) {
        if pair[0] == last {
            if let Some(x) = row.get_mut(pair[1] as usize) {
                *x = f32::NEG_INFINITY;
            }
        }
    }
}

fn mean(h: &(Vec<u32>, f32, bool)) -> f32 {
    h.1 / (h.0.len() - 1).max(1) as f32
}

fn words_of(ids: &[u32]) -> Vec<u32> {
    ids.iter()
        .skip(1)
        .take_while(|&&w| w != EOS && w != PAD)
        .copied()
        .collect()
}

fn argmax(row: &[f32]) -> u32 {
    top_k(row, 1)[0]
}

fn top_k(row: &[f32], k: usize) -> Vec<u32> {
    let mut ix: Vec<u32> = (0..row.len() as u32)
        .filter(|&w| w != PAD && w != BOS)
        .collect();
    ix.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]));
    ix.truncate(k);
    ix
}

fn sample(row: &[f32], rng: &mut StdRng) -> u32 {
    let allowed = |w: usize| w as u32 != PAD && w as u32 != BOS;
    let total: f32 = (0..row.len())
        .filter(|&w| allowed(w))
        .map(|w| row[w].exp())
        .sum();
    let mut u: f32 = rng.random::<f32>() * total;
    for (w, lp) in row.iter().enumerate() {
        if !allowed(w) {
            continue;
        }
        u -= lp.exp();
        if u <= 0.0 {
            return w as u32;
        }
    }
    EOS
}

/// `<s> words </s>` of decoded word ids.
pub fn framed(words: &[u32]) -> Vec<u32> {
    let mut ids = Vec::with_capacity(words.len() + 2);
    ids.push(BOS);
    ids.extend_from_slice(words);
    ids.push(EOS);
    ids
}

/// Image embeddings `[n, embed]` of scenes by the frozen retriever (no gradient).
pub fn features(retriever: &Retriever, scenes: &[&Scene]) -> Result<Tensor> {
    Ok(retriever.images(&pixels(scenes)?)?.detach())
}

/// Trains a captioner by `recipe` on the source domain's reference captions, on the image
/// embeddings of `retriever` (saved beside it in `out`).
pub fn train(
    recipe: &CaptionerRecipe,
    retriever: &Retriever,
    out: &Path,
    on_step: &mut dyn FnMut(StepReport) -> Result<()>,
) -> Result<Vec<f32>> {
    let vars = VarMap::new();
    let embed = retriever.recipe.embed;
    let model = Captioner::new(
        recipe.clone(),
        embed,
        crate::train::seeded_builder(&vars, recipe.seed),
    )?;
    let mut rng: StdRng = rand::SeedableRng::seed_from_u64(recipe.seed);
    let io = |e: anyhow::Error| candle_core::Error::Msg(e.to_string());
    let losses = train_loop(
        &vars,
        Pull::WeightDecay { lambda: 0.01 },
        Schedule::new(recipe.steps, recipe.peak_lr, 0.05),
        |step| {
            let batch: Vec<Scene> = (0..recipe.batch)
                .map(|k| {
                    scene(
                        Domain::Source,
                        Split::Train,
                        (step * recipe.batch + k) as u64,
                    )
                })
                .collect();
            let refs: Vec<&Scene> = batch.iter().collect();
            let captions = batch
                .iter()
                .enumerate()
                .map(|(k, s)| {
                    let r = s.references((step * recipe.batch + k) as u64);
                    vocab::encode(&r[rng.random_range(0..r.len())])
                })
                .collect::<Result<Vec<_>>>()
                .map_err(io)?;
            let f = features(retriever, &refs).map_err(io)?;
            model
                .caption_logprob(&f, &captions)
                .map_err(io)?
                .mean_all()?
                .neg()
        },
        on_step,
    )?;
    super::save_model(out, &vars, "caption-captioner", &(recipe, embed))?;
    Ok(losses)
}
