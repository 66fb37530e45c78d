//! The source GAN: trained on procedural source faces with the non-saturating logistic loss
//! (StyleGAN's), Adam (lr 2e-4, β = (0.5, 0.99)) and an exponential moving average of the
//! generator, which is what is saved and sampled. No R1 penalty: candle has no double
//! backward. Faces are rendered on the fly, so no face is seen twice.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::faces::{render_many, Domain};
use super::model::{softplus, to_images, to_tensor, Discriminator, GanConfig, Generator};
use crate::jobs::Report;
use crate::train::{seeded_builder, Adam, AdamConfig, Pull};

pub const KIND: &str = "gan";

/// What every `gan` folder's recipe holds: the architecture.
#[derive(Deserialize)]
struct Shape {
    gan: GanConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PretrainRecipe {
    pub gan: GanConfig,
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    /// Decay of the generator's moving average per step.
    pub ema: f64,
    pub seed: u64,
}

impl Default for PretrainRecipe {
    fn default() -> Self {
        Self {
            gan: GanConfig::default(),
            steps: 5000,
            batch: 16,
            lr: 2e-4,
            ema: 0.999,
            seed: 0,
        }
    }
}

/// The optimiser GANs are trained with: Adam with β₁ = 0.5, no clipping.
pub fn gan_adam(vars: Vec<Var>) -> Result<Adam> {
    Ok(Adam::new(
        vars,
        AdamConfig {
            beta1: 0.5,
            beta2: 0.99,
            eps: 1e-8,
            clip_norm: None,
            pull: Pull::None,
        },
    )?)
}

/// `n` latent codes `[n, dim]`, standard normal from `rng` (Box–Muller).
pub fn latents(rng: &mut StdRng, n: usize, dim: usize) -> Result<Tensor> {
    let values: Vec<f32> = (0..n * dim)
        .map(|_| {
            let u1: f64 = rng.random_range(f64::EPSILON..1.0);
            let u2: f64 = rng.random();
            ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
        })
        .collect();
    Ok(Tensor::from_vec(values, (n, dim), &Device::Cpu)?)
}

/// The fixed latents every preview grid of the lab uses, so the same faces change style.
pub fn preview_latents(n: usize, dim: usize) -> Result<Tensor> {
    latents(&mut StdRng::seed_from_u64(0x5EED), n, dim)
}

/// A trained generator and discriminator, with the generator's mean latent `w̄`.
pub struct Gan {
    pub cfg: GanConfig,
    pub vars: VarMap,
    pub g: Generator,
    pub d: Discriminator,
    pub w_mean: Tensor,
}

impl Gan {
    /// Fresh weights from `seed`.
    pub fn new(cfg: GanConfig, seed: u64) -> Result<Self> {
        let vars = VarMap::new();
        let vb = seeded_builder(&vars, seed);
        let g = Generator::new(&vb, &cfg)?;
        let d = Discriminator::new(&vb, "d", &cfg, 1)?;
        let w_mean = Tensor::zeros(cfg.latent, candle_core::DType::F32, &Device::Cpu)?;
        let mut gan = Self {
            cfg,
            vars,
            g,
            d,
            w_mean,
        };
        gan.update_w_mean()?;
        Ok(gan)
    }

    /// The GAN saved in `dir` (a `gan` model folder: a source GAN, or an adapted generator
    /// when `with_discriminator` is false).
    pub fn load(dir: &Path, with_discriminator: bool) -> Result<Self> {
        let shape: Shape = crate::train::model_folder::read_config(dir, KIND)?;
        let mut gan = Self::new(shape.gan, 0)?;
        let file = dir.join("model.safetensors");
        let missing = crate::train::load_into(&gan.vars, &file, "")?;
        let missing: Vec<String> = missing
            .into_iter()
            .filter(|name| with_discriminator || name.starts_with("g."))
            .collect();
        anyhow::ensure!(
            missing.is_empty(),
            "{}: missing tensors {}",
            file.display(),
            missing.join(", ")
        );
        gan.update_w_mean()?;
        Ok(gan)
    }

    /// `w̄`, the mean of 4096 mapped latents (the truncation centre).
    fn update_w_mean(&mut self) -> Result<()> {
        let z = latents(&mut StdRng::seed_from_u64(0x3EA7), 4096, self.cfg.latent)?;
        self.w_mean = self.g.map(&z)?.mean(0)?.detach();
        Ok(())
    }

    /// The variables whose names start with `prefix` (`g.`, `d.`, `d.conv2` …).
    pub fn vars_under(&self, prefix: &str) -> Vec<Var> {
        let data = self.vars.data().lock().expect("VarMap lock");
        let mut named: Vec<(&String, &Var)> =
            data.iter().filter(|(k, _)| k.starts_with(prefix)).collect();
        named.sort_by(|a, b| a.0.cmp(b.0));
        named.into_iter().map(|(_, v)| v.clone()).collect()
    }

    /// Images from latents `z`, with truncation `psi` toward `w̄` (1 = none).
    pub fn sample(&self, z: &Tensor, psi: f64) -> Result<Vec<Vec<u8>>> {
        let w = self.truncate(&self.g.map(z)?, psi)?;
        Ok(to_images(&self.g.synthesize(&w)?)?)
    }

    /// `ψ·w + (1 − ψ)·w̄`.
    pub fn truncate(&self, w: &Tensor, psi: f64) -> Result<Tensor> {
        Ok(((w * psi)?.broadcast_add(&(&self.w_mean * (1.0 - psi))?))?)
    }

    pub fn save(&self, out: &Path, recipe: &PretrainRecipe) -> Result<()> {
        crate::train::model_folder::save_model(out, &self.vars, KIND, recipe)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PretrainStep {
    pub step: usize,
    pub total: usize,
    pub d_loss: f32,
    pub g_loss: f32,
    pub seconds: f64,
    /// The moving-average generator on the preview latents, now and then.
    #[serde(skip)]
    pub preview: Option<Vec<Vec<u8>>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PretrainOutcome {
    pub steps: usize,
    pub seconds: f64,
    pub d_loss: f32,
    pub g_loss: f32,
}

impl Report for PretrainOutcome {
    fn metrics(&self) -> serde_json::Value {
        json!(self)
    }
}

/// Copies `from`'s values into `to`'s variables of the same names, as `to ← k·to + (1−k)·from`.
fn blend_into(to: &Gan, from: &Gan, keep: f64) -> Result<()> {
    let src = from.vars.data().lock().expect("VarMap lock");
    let dst = to.vars.data().lock().expect("VarMap lock");
    for (name, var) in dst.iter().filter(|(k, _)| k.starts_with("g.")) {
        if let Some(s) = src.get(name) {
            let mixed = ((var.as_tensor() * keep)? + (s.as_tensor() * (1.0 - keep))?)?;
            var.set(&mixed)?;
        }
    }
    Ok(())
}

/// Trains the source GAN and saves it (moving-average generator) to `out`.
pub fn pretrain(
    recipe: &PretrainRecipe,
    out: &Path,
    on_step: &mut dyn FnMut(PretrainStep) -> Result<()>,
) -> Result<PretrainOutcome> {
    let gan = Gan::new(recipe.gan, recipe.seed)?;
    let average = Gan::new(recipe.gan, recipe.seed)?;
    blend_into(&average, &gan, 0.0)?;
    let mut g_opt = gan_adam(gan.vars_under("g."))?;
    let mut d_opt = gan_adam(gan.vars_under("d."))?;
    let mut rng = StdRng::seed_from_u64(recipe.seed ^ 0x6A4);
    let preview_z = preview_latents(16, recipe.gan.latent)?;
    let started = Instant::now();
    let (mut d_loss, mut g_loss) = (f32::NAN, f32::NAN);
    for step in 0..recipe.steps {
        let first = (step * recipe.batch) as u64;
        let real = to_tensor(&render_many(
            Domain::Source,
            first,
            recipe.batch,
            recipe.seed,
        ))?;
        let z = latents(&mut rng, recipe.batch, recipe.gan.latent)?;
        let fake = gan.g.synthesize(&gan.g.map(&z)?)?;
        let d = (softplus(&gan.d.forward(&real)?.neg()?)?.mean_all()?
            + softplus(&gan.d.forward(&fake.detach())?)?.mean_all()?)?;
        d_opt.step(&d.backward()?, recipe.lr)?;
        let g = softplus(&gan.d.forward(&fake)?.neg()?)?.mean_all()?;
        g_opt.step(&g.backward()?, recipe.lr)?;
        blend_into(&average, &gan, recipe.ema)?;
        d_loss = d.to_scalar()?;
        g_loss = g.to_scalar()?;
        anyhow::ensure!(
            d_loss.is_finite() && g_loss.is_finite(),
            "GAN training diverged at step {step}"
        );
        let done = step + 1;
        let preview = if done % 100 == 0 || done == recipe.steps {
            Some(average.sample(&preview_z, 1.0)?)
        } else {
            None
        };
        on_step(PretrainStep {
            step: done,
            total: recipe.steps,
            d_loss,
            g_loss,
            seconds: started.elapsed().as_secs_f64(),
            preview,
        })?;
    }
    // The saved discriminator is the trained one; the generator the moving average.
    blend_into(&gan, &average, 0.0)?;
    gan.save(out, recipe)?;
    Ok(PretrainOutcome {
        steps: recipe.steps,
        seconds: started.elapsed().as_secs_f64(),
        d_loss,
        g_loss,
    })
}

pub fn spawn_pretrain(
    board: &crate::jobs::JobBoard,
    recipe: PretrainRecipe,
    out: std::path::PathBuf,
) -> crate::jobs::JobHandle<PretrainStep, PretrainOutcome> {
    let spec = crate::jobs::JobSpec {
        kind: "gan-pretrain".into(),
        title: "source GAN".into(),
        inputs: json!({ "recipe": recipe, "out": out }),
        seed: Some(recipe.seed),
    };
    board.spawn(spec, move |ctx: &crate::jobs::JobCtx<PretrainStep>| {
        pretrain(&recipe, &out, &mut |s| {
            ctx.check()?;
            ctx.progress(
                Some(s.step as f32 / s.total.max(1) as f32),
                format!(
                    "step {}/{} · D {:.3} · G {:.3}",
                    s.step, s.total, s.d_loss, s.g_loss
                ),
            );
            ctx.send(s);
            Ok(())
        })
    })
}
