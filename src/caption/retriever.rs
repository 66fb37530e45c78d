//! The retriever: a CLIP-style dual encoder. A ViT with one patch per cell of the scenes' 3×3
//! layout encodes the image (its CLS state, normed and projected), a small causal transformer
//! encodes the text (the mean of its token states, normed and projected), and the score is
//! `exp(t) · cos(text, image)`. Trained with symmetric InfoNCE on batches of one domain at a
//! time, texts being full descriptions (70 %) or partial ones, plus a per-cell object loss on
//! the image tower's patch states; frozen afterwards.

use std::path::Path;

use anyhow::Result;
use candle_core::{Device, Tensor, D};
use candle_nn::{Init, VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use super::scenes::{self, Domain, Scene, Split, COLOURS, SHAPES, SIZE, TEXTURES};
use super::vocab;
use crate::train::llama::{LlamaShape, TrainLlama};
use crate::train::nn::linear;
use crate::train::site::Site;
use crate::train::vit::{Dense, Norm, TrainVit, VitShape};
use crate::train::{train_loop, Pull, Schedule, StepReport};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RetrieverRecipe {
    /// Width of both towers.
    pub width: usize,
    /// Size of the joint embedding.
    pub embed: usize,
    pub steps: usize,
    pub batch: usize,
    pub peak_lr: f64,
    pub weight_decay: f64,
    pub seed: u64,
}

impl RetrieverRecipe {
    /// The training retriever (`seed` 0) and the held-out judge (another seed) differ in seed
    /// only: initialisation and the stream of scenes.
    pub fn new(seed: u64) -> Self {
        Self {
            width: 64,
            embed: 64,
            steps: 1500,
            batch: 64,
            peak_lr: 2e-3,
            weight_decay: 0.05,
            seed,
        }
    }

    fn vit(&self) -> VitShape {
        VitShape {
            image_size: SIZE,
            // One patch per cell of the scenes' 3×3 layout.
            patch_size: SIZE / 3,
            channels: 3,
            hidden_size: self.width,
            num_layers: 4,
            num_heads: 4,
            intermediate_size: 2 * self.width,
            // The classifier head is CLIP's image projection.
            num_labels: self.embed,
        }
    }

    fn text(&self) -> LlamaShape {
        LlamaShape {
            vocab_size: vocab::size(),
            hidden_size: self.width,
            intermediate_size: 2 * self.width,
            num_layers: 2,
            num_heads: 4,
            num_kv_heads: 4,
            max_positions: 80,
            rope_theta: 10_000.0,
            rms_norm_eps: 1e-5,
            tie_embeddings: true,
            qkv_bias: false,
        }
    }
}

pub struct Retriever {
    pub recipe: RetrieverRecipe,
    image: TrainVit,
    text: TrainLlama,
    text_norm: Norm,
    text_projection: Tensor,
    logit_scale: Tensor,
    /// A training-only head reading each cell's object from the image's patch states (see
    /// [`CELL_CLASSES`]): dense supervision that teaches the image tower the objects fast.
    cells_from_image: Dense,
}

/// Per cell of the 3×3 layout: shape or empty (5), colour (6), size (2), texture (3).
const CELL_CLASSES: [usize; 4] = [1 + SHAPES.len(), COLOURS.len(), 2, TEXTURES.len()];
const CELL_LOGITS: usize = 16;
const CELLS: usize = 9;

impl Retriever {
    pub fn new(recipe: RetrieverRecipe, vb: VarBuilder) -> Result<Self> {
        let (h, e) = (recipe.width, recipe.embed);
        Ok(Self {
            image: TrainVit::new(recipe.vit(), vb.pp("image"))?,
            text: TrainLlama::new(recipe.text(), vb.pp("text"))?,
            text_norm: Norm::new(&vb.pp("text_norm"), h, 1e-5)?,
            text_projection: vb.get_with_hints(
                (e, h),
                "text_projection",
                Init::Randn {
                    mean: 0.0,
                    stdev: 0.02,
                },
            )?,
            // CLIP's initial temperature, 1 / 0.07.
            logit_scale: vb.get_with_hints(1, "logit_scale", Init::Const((1.0f64 / 0.07).ln()))?,
            cells_from_image: Dense::new(&vb.pp("cells_from_image"), CELL_LOGITS, h, 0.02)?,
            recipe,
        })
    }

    /// Unit image embeddings `[n, embed]` of `pixels [n, 3, SIZE, SIZE]`.
    pub fn images(&self, pixels: &Tensor) -> Result<Tensor> {
        Ok(self.image_states(pixels)?.0)
    }

    /// Unit image embeddings and the last layer's patch states `[n, cells, width]`.
    fn image_states(&self, pixels: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let last = self.recipe.vit().num_layers - 1;
        let mut states = None;
        let projected = self.image.forward_tapped(pixels, &mut |site, x| {
            if site == Site::AfterFeedForward(last) {
                states = Some(x.narrow(1, 1, CELLS)?);
            }
            Ok(())
        })?;
        let states = states.ok_or_else(|| candle_core::Error::Msg("no patch states".into()))?;
        Ok((unit(&projected)?, states))
    }

    /// Unit text embeddings `[n, embed]` of encoded texts (each `<s> … </s>`).
    pub fn encoded(&self, ids: &[Vec<u32>]) -> Result<Tensor> {
        Ok(self.text_states(ids)?)
    }

    /// Unit text embeddings: the mean of the text's token states, normed and projected (CLIP
    /// reads the end token; for a small tower trained from scratch the mean learns far
    /// faster, each object phrase's last words carrying the phrase).
    fn text_states(&self, ids: &[Vec<u32>]) -> candle_core::Result<Tensor> {
        let (batch, ends) = padded(ids)?;
        let (n, t) = batch.dims2()?;
        let hidden = self.text.hidden(&batch)?;
        let mask: Vec<f32> = ends
            .iter()
            .flat_map(|&e| (0..t).map(move |j| (j <= e) as u8 as f32))
            .collect();
        let mask = Tensor::from_vec(mask, (n, t, 1), &Device::Cpu)?;
        let counts: Vec<f32> = ends.iter().map(|&e| (e + 1) as f32).collect();
        let counts = Tensor::from_vec(counts, (n, 1), &Device::Cpu)?;
        let pooled = hidden
            .broadcast_mul(&mask)?
            .sum(1)?
            .broadcast_div(&counts)?;
        let projected = linear(
            &self.text_norm.forward(&pooled)?,
            &self.text_projection,
            None,
        )?;
        unit(&projected)
    }

    /// Scores `[texts, images]`: `exp(t) · cos`.
    pub fn scores(&self, texts: &Tensor, images: &Tensor) -> Result<Tensor> {
        let scale = self.logit_scale.exp()?;
        Ok(texts.matmul(&images.t()?)?.broadcast_mul(&scale)?)
    }

    /// Symmetric InfoNCE of matched texts and images (row i with row i).
    fn contrastive_loss(&self, texts: &Tensor, images: &Tensor) -> candle_core::Result<Tensor> {
        let s = self
            .scores(texts, images)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let n = s.dim(0)?;
        let targets = Tensor::arange(0u32, n as u32, &Device::Cpu)?;
        let a = crate::train::vit::classification_loss(&s, &targets)?;
        let b = crate::train::vit::classification_loss(&s.t()?, &targets)?;
        (a + b)? / 2.0
    }

    pub fn load(dir: &Path) -> Result<Self> {
        let recipe: RetrieverRecipe = super::read_config(dir, "caption-retriever")?;
        let vars = VarMap::new();
        let model = Self::new(recipe, crate::train::seeded_builder(&vars, 0))?;
        super::load_weights(&vars, dir)?;
        Ok(model)
    }
}

/// Rows scaled to unit length.
fn unit(x: &Tensor) -> candle_core::Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
    x.broadcast_div(&(norm + 1e-8)?)
}

/// Right-padded ids `[n, longest]` and each row's last position.
pub fn padded(ids: &[Vec<u32>]) -> candle_core::Result<(Tensor, Vec<usize>)> {
    let t = ids.iter().map(Vec::len).max().unwrap_or(1).max(1);
    let mut flat = Vec::with_capacity(ids.len() * t);
    for row in ids {
        flat.extend_from_slice(row);
        flat.extend(std::iter::repeat_n(vocab::PAD, t - row.len()));
    }
    let ends = ids.iter().map(|r| r.len().max(1) - 1).collect();
    Ok((Tensor::from_vec(flat, (ids.len(), t), &Device::Cpu)?, ends))
}

/// Pixels `[n, 3, SIZE, SIZE]` of scenes.
pub fn pixels(scenes: &[&Scene]) -> candle_core::Result<Tensor> {
    let flat: Vec<f32> = scenes
        .iter()
        .flat_map(|s| s.pixels.iter().copied())
        .collect();
    Tensor::from_vec(flat, (scenes.len(), 3, SIZE, SIZE), &Device::Cpu)
}

/// Each cell's class per group `[n, cells, groups]` (u32) and which groups are known
/// `[n, cells, groups]` (an empty cell has a shape class only).
fn cell_labels(scenes: &[&Scene]) -> candle_core::Result<(Tensor, Tensor)> {
    let groups = CELL_CLASSES.len();
    let mut labels = vec![0u32; scenes.len() * CELLS * groups];
    let mut mask = vec![0f32; scenes.len() * CELLS * groups];
    for (i, s) in scenes.iter().enumerate() {
        for c in 0..CELLS {
            mask[(i * CELLS + c) * groups] = 1.0;
        }
        for o in &s.objects {
            let at = (i * CELLS + o.row * 3 + o.col) * groups;
            let classes = [o.shape + 1, o.colour, o.large as usize, o.texture];
            for (g, class) in classes.into_iter().enumerate() {
                labels[at + g] = class as u32;
                mask[at + g] = 1.0;
            }
        }
    }
    let shape = (scenes.len(), CELLS, groups);
    Ok((
        Tensor::from_vec(labels, shape, &Device::Cpu)?,
        Tensor::from_vec(mask, shape, &Device::Cpu)?,
    ))
}

/// Masked cross-entropy of cell logits `[n, cells, CELL_LOGITS]` against [`cell_labels`],
/// summed over groups, averaged over the known ones.
fn cell_loss(logits: &Tensor, labels: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    let mut start = 0;
    let mut total = Tensor::zeros((), candle_core::DType::F32, &Device::Cpu)?;
    for (g, &k) in CELL_CLASSES.iter().enumerate() {
        let logp = candle_nn::ops::log_softmax(&logits.narrow(2, start, k)?, D::Minus1)?;
        let picked = logp.gather(&labels.narrow(2, g, 1)?.contiguous()?, 2)?;
        let m = mask.narrow(2, g, 1)?;
        let known = (m.sum_all()? + 1.0)?;
        total = (total - (picked * &m)?.sum_all()?.div(&known)?)?;
        start += k;
    }
    Ok(total)
}

/// Trains a retriever by `recipe` into `out` (config.json + model.safetensors); returns the
/// losses.
pub fn train(
    recipe: &RetrieverRecipe,
    out: &Path,
    on_step: &mut dyn FnMut(StepReport) -> Result<()>,
) -> Result<Vec<f32>> {
    let vars = VarMap::new();
    let model = Retriever::new(
        recipe.clone(),
        crate::train::seeded_builder(&vars, recipe.seed),
    )?;
    let offset = recipe.seed * 10_000_000;
    let mut rng: rand::rngs::StdRng = rand::SeedableRng::seed_from_u64(recipe.seed);
    let losses = train_loop(
        &vars,
        Pull::WeightDecay {
            lambda: recipe.weight_decay,
        },
        Schedule::new(recipe.steps, recipe.peak_lr, 0.05),
        |step| {
            // One domain per batch: negatives that share the domain's background and object
            // count make the towers learn the objects, not the domain.
            let domain = Domain::ALL[step % Domain::ALL.len()];
            let batch: Vec<Scene> = (0..recipe.batch)
                .map(|k| {
                    let i = (step * recipe.batch + k) as u64;
                    scenes::scene(domain, Split::Train, offset + i)
                })
                .collect();
            let texts: Vec<String> = batch
                .iter()
                .map(|s| match rand::Rng::random_bool(&mut rng, 0.7) {
                    true => s.description(),
                    false => s.partial_description(&mut rng),
                })
                .collect();
            let refs: Vec<&Scene> = batch.iter().collect();
            let ids = texts
                .iter()
                .map(|t| vocab::encode(t))
                .collect::<Result<Vec<_>>>()
                .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
            let (images, patches) = model.image_states(&pixels(&refs)?)?;
            let texts_emb = model.text_states(&ids)?;
            let (labels, mask) = cell_labels(&refs)?;
            let from_image = model.cells_from_image.forward(&patches)?;
            model.contrastive_loss(&texts_emb, &images)? + cell_loss(&from_image, &labels, &mask)?
        },
        on_step,
    )?;
    super::save_model(out, &vars, "caption-retriever", recipe)?;
    Ok(losses)
}
