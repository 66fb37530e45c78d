//! One-shot adaptation of the source GAN to a target from one reference image.
//!
//! - **GenDA** (Yang et al., ICCV 2023): generator and discriminator frozen. An attribute
//!   adaptor on the latent, `w' = a ⊙ w + b` (a = 1, b = 0 at the start), fed to every layer;
//!   an attribute classifier `φ` (one linear layer) on the frozen discriminator backbone `d`.
//!   `L_A = −E log φ(d(G(w')))`, `L_φ = −log φ(d(x_ref)) − E log(1 − φ(d(G(w'))))`, with the
//!   training latents truncated toward `w̄` by β (the diversity constraint).
//! - **Fine-tune**: generator and discriminator trained with the GAN loss, the real batch being
//!   the reference repeated.
//! - **FreezeD** (Mo et al., 2020): the same with the discriminator's lower layers frozen.
//!
//! All three get the same steps and batch; the adapted generator is sampled on fixed latents
//! while it trains.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Init, VarBuilder, VarMap};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::faces::{Domain, Face};
use super::model::{softplus, to_images, to_tensor, Discriminator, Generator, D_LAYERS};
use super::pretrain::{gan_adam, latents, preview_latents, Gan};
use crate::jobs::{JobBoard, JobCtx, JobHandle, JobSpec, Report};
use crate::train::vit::Dense;
use crate::train::{seeded_builder, Adam, AdamConfig};

crate::named_enum! {
    "method";
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum Method {
        /// Attribute adaptor on the latent and attribute classifier on the frozen
        /// discriminator; nothing else trained.
        Genda = "genda",
        /// The whole generator and discriminator fine-tuned on the one image.
        Finetune = "finetune",
        /// Fine-tuning with the discriminator's lower layers frozen.
        Freezed = "freezed",
    }
}

/// The discriminator layers FreezeD keeps frozen: the input convolutions up to 16×16.
pub const FREEZED_FROZEN: usize = 3;

/// Where the one reference image comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Face `index` of a target domain.
    Domain { domain: Domain, index: u64 },
    /// An image file (PNG or JPEG), centre-cropped and resized.
    Image { path: PathBuf },
}

impl Target {
    pub fn domain(domain: Domain) -> Self {
        Target::Domain { domain, index: 0 }
    }

    /// Its RGB bytes, `SIZE × SIZE × 3`.
    pub fn reference(&self) -> Result<Vec<u8>> {
        match self {
            Target::Domain { domain, index } => Ok(Face::sample(*domain, *index, 0).render()),
            Target::Image { path } => Ok(super::image_file::load_reference(path)?.rgb),
        }
    }

    /// A short name for files and tables: the domain, or the image's file stem.
    pub fn label(&self) -> String {
        match self {
            Target::Domain { domain, .. } => domain.name().to_string(),
            Target::Image { path } => path
                .file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_else(|| "image".into()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaptRequest {
    pub source: PathBuf,
    pub target: Target,
    pub method: Method,
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    /// GenDA's training truncation β: `w ← β·w + (1 − β)·w̄`.
    pub truncation: f64,
    pub seed: u64,
    /// Preview samples every this many steps (0: none).
    pub preview_every: usize,
    /// Where the adapted generator is saved (none: not saved).
    pub out: Option<PathBuf>,
}

impl AdaptRequest {
    /// The defaults of `method`: 300 steps of 16 for all; lr 3e-3 for GenDA's two light
    /// modules (1e-3 barely moves the samples in 300 steps, 1e-2 collapses them onto the
    /// reference), 2e-4 (the pretraining rate) for the fine-tuning baselines.
    pub fn new(method: Method, target: Target) -> Self {
        Self {
            source: super::source_dir(),
            target,
            method,
            steps: 300,
            batch: 16,
            lr: match method {
                Method::Genda => 3e-3,
                _ => 2e-4,
            },
            truncation: 0.7,
            seed: 0,
            preview_every: 10,
            out: None,
        }
    }
}

/// GenDA's attribute adaptor: `w' = scale ⊙ w + shift`.
#[derive(Clone)]
pub struct Adaptor {
    pub scale: Tensor,
    pub shift: Tensor,
}

impl Adaptor {
    pub fn apply(&self, w: &Tensor) -> candle_core::Result<Tensor> {
        w.broadcast_mul(&self.scale)?.broadcast_add(&self.shift)
    }
}

/// A generator after adaptation: the (possibly fine-tuned) GAN and, for GenDA, its adaptor.
pub struct Adapted {
    pub gan: Gan,
    pub adaptor: Option<Adaptor>,
}

impl Adapted {
    /// Images from latents `z` with inference truncation `psi` (1 = none).
    pub fn sample(&self, z: &Tensor, psi: f64) -> Result<Vec<Vec<u8>>> {
        let w = self.gan.truncate(&self.gan.g.map(z)?, psi)?;
        let w = match &self.adaptor {
            Some(a) => a.apply(&w)?,
            None => w,
        };
        Ok(to_images(&self.gan.g.synthesize(&w)?)?)
    }

    /// The generator `gan` samples before any adaptation.
    pub fn source(gan: Gan) -> Self {
        Self { gan, adaptor: None }
    }

    /// An adapted generator saved by [`adapt`].
    pub fn load(dir: &Path) -> Result<Self> {
        let gan = Gan::load(dir, false)?;
        let file = dir.join("model.safetensors");
        let tensors = candle_core::safetensors::load(&file, &Device::Cpu)
            .with_context(|| format!("{}: not a readable safetensors file", file.display()))?;
        let adaptor = match (tensors.get("adaptor.scale"), tensors.get("adaptor.shift")) {
            (Some(scale), Some(shift)) => Some(Adaptor {
                scale: scale.clone(),
                shift: shift.clone(),
            }),
            _ => None,
        };
        Ok(Self { gan, adaptor })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdaptStep {
    pub step: usize,
    pub total: usize,
    /// GenDA: `L_A`; baselines: the generator's GAN loss.
    pub generator_loss: f32,
    /// GenDA: `L_φ`; baselines: the discriminator's GAN loss.
    pub critic_loss: f32,
    pub seconds: f64,
    /// The adapted generator on the preview latents.
    #[serde(skip)]
    pub preview: Option<Vec<Vec<u8>>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdaptOutcome {
    pub method: Method,
    pub target: String,
    pub steps: usize,
    pub seconds: f64,
    pub generator_loss: f32,
    pub critic_loss: f32,
    pub out: Option<PathBuf>,
}

impl Report for AdaptOutcome {
    fn metrics(&self) -> serde_json::Value {
        json!({
            "method": self.method,
            "target": self.target,
            "steps": self.steps,
            "seconds": self.seconds,
            "generator_loss": self.generator_loss,
            "critic_loss": self.critic_loss,
        })
    }
    fn outputs(&self) -> serde_json::Value {
        json!(self.out)
    }
}

/// A generator and discriminator on detached copies of `gan`'s weights: no gradient reaches
/// them and their products skip the weight gradients.
fn frozen(gan: &Gan) -> Result<(Generator, Discriminator)> {
    let data = gan.vars.data().lock().expect("VarMap lock");
    let tensors: HashMap<String, Tensor> = data
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().detach()))
        .collect();
    drop(data);
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
    Ok((
        Generator::new(&vb, &gan.cfg)?,
        Discriminator::new(&vb, "d", &gan.cfg, 1)?,
    ))
}

/// Runs one adaptation and, with `request.out`, saves the adapted generator.
pub fn adapt(
    request: &AdaptRequest,
    on_step: &mut dyn FnMut(AdaptStep) -> Result<()>,
) -> Result<(Adapted, AdaptOutcome)> {
    let reference = request.target.reference()?;
    let gan = Gan::load(&request.source, true)?;
    let started = Instant::now();
    let adapted = match request.method {
        Method::Genda => genda(request, gan, &reference, on_step)?,
        Method::Finetune | Method::Freezed => finetune(request, gan, &reference, on_step)?,
    };
    let (adapted, generator_loss, critic_loss) = adapted;
    if let Some(out) = &request.out {
        save(&adapted, request, out)?;
    }
    Ok((
        adapted,
        AdaptOutcome {
            method: request.method,
            target: request.target.label(),
            steps: request.steps,
            seconds: started.elapsed().as_secs_f64(),
            generator_loss,
            critic_loss,
            out: request.out.clone(),
        },
    ))
}

type Trained = (Adapted, f32, f32);

/// Calls `on_step`, with preview samples when the step is due for them.
fn report(
    request: &AdaptRequest,
    step: usize,
    losses: (f32, f32),
    started: Instant,
    sample: impl FnOnce(&Tensor) -> Result<Vec<Vec<u8>>>,
    on_step: &mut dyn FnMut(AdaptStep) -> Result<()>,
    preview_z: &Tensor,
) -> Result<()> {
    anyhow::ensure!(
        losses.0.is_finite() && losses.1.is_finite(),
        "adaptation diverged at step {step}"
    );
    let due = request.preview_every > 0
        && (step.is_multiple_of(request.preview_every) || step == request.steps);
    on_step(AdaptStep {
        step,
        total: request.steps,
        generator_loss: losses.0,
        critic_loss: losses.1,
        seconds: started.elapsed().as_secs_f64(),
        preview: if due { Some(sample(preview_z)?) } else { None },
    })
}

fn genda(
    request: &AdaptRequest,
    gan: Gan,
    reference: &[u8],
    on_step: &mut dyn FnMut(AdaptStep) -> Result<()>,
) -> Result<Trained> {
    let (g, d) = frozen(&gan)?;
    let vars = VarMap::new();
    let vb = seeded_builder(&vars, request.seed);
    let latent = gan.cfg.latent;
    let adaptor = Adaptor {
        scale: vb.get_with_hints(latent, "adaptor.scale", Init::Const(1.0))?,
        shift: vb.get_with_hints(latent, "adaptor.shift", Init::Const(0.0))?,
    };
    let classifier = Dense::new(&vb.pp("classifier"), 1, gan.cfg.features, 0.01)?;
    let named = |prefix: &str| -> Vec<Var> {
        let data = vars.data().lock().expect("VarMap lock");
        data.iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect()
    };
    let plain = AdamConfig {
        clip_norm: None,
        ..AdamConfig::default()
    };
    let mut adaptor_opt = Adam::new(named("adaptor."), plain)?;
    let mut classifier_opt = Adam::new(named("classifier."), plain)?;
    let reference_features = d.backbone(&to_tensor(&[reference.to_vec()])?)?;
    let mut rng = StdRng::seed_from_u64(request.seed ^ 0x6E0A);
    let preview_z = preview_latents(16, latent)?;
    let started = Instant::now();
    let mut losses = (f32::NAN, f32::NAN);
    for step in 1..=request.steps {
        let z = latents(&mut rng, request.batch, latent)?;
        let w = gan.truncate(&g.map(&z)?, request.truncation)?;
        let features = d.backbone(&g.synthesize(&adaptor.apply(&w)?)?)?;
        let adaptor_loss = softplus(&classifier.forward(&features)?.neg()?)?.mean_all()?;
        adaptor_opt.step(&adaptor_loss.backward()?, request.lr)?;
        let classifier_loss = (softplus(&classifier.forward(&reference_features)?.neg()?)?
            .mean_all()?
            + softplus(&classifier.forward(&features.detach())?)?.mean_all()?)?;
        classifier_opt.step(&classifier_loss.backward()?, request.lr)?;
        losses = (adaptor_loss.to_scalar()?, classifier_loss.to_scalar()?);
        let sample = |z: &Tensor| -> Result<Vec<Vec<u8>>> {
            let w = gan.truncate(&g.map(z)?, 1.0)?;
            Ok(to_images(&g.synthesize(&adaptor.apply(&w)?)?)?)
        };
        report(request, step, losses, started, sample, on_step, &preview_z)?;
    }
    let adaptor = Adaptor {
        scale: adaptor.scale.detach(),
        shift: adaptor.shift.detach(),
    };
    let adapted = Adapted {
        gan,
        adaptor: Some(adaptor),
    };
    Ok((adapted, losses.0, losses.1))
}

fn finetune(
    request: &AdaptRequest,
    gan: Gan,
    reference: &[u8],
    on_step: &mut dyn FnMut(AdaptStep) -> Result<()>,
) -> Result<Trained> {
    let mut g_opt = gan_adam(gan.vars_under("g."))?;
    let frozen_layers = match request.method {
        Method::Freezed => FREEZED_FROZEN,
        _ => 0,
    };
    let d_vars: Vec<Var> = D_LAYERS[frozen_layers..]
        .iter()
        .flat_map(|layer| gan.vars_under(&format!("d.{layer}.")))
        .collect();
    let mut d_opt = gan_adam(d_vars)?;
    let real = to_tensor(&vec![reference.to_vec(); request.batch])?;
    let mut rng = StdRng::seed_from_u64(request.seed ^ 0xF1E7);
    let preview_z = preview_latents(16, gan.cfg.latent)?;
    let started = Instant::now();
    let mut losses = (f32::NAN, f32::NAN);
    for step in 1..=request.steps {
        let z = latents(&mut rng, request.batch, gan.cfg.latent)?;
        let fake = gan.g.synthesize(&gan.g.map(&z)?)?;
        let d_loss = (softplus(&gan.d.forward(&real)?.neg()?)?.mean_all()?
            + softplus(&gan.d.forward(&fake.detach())?)?.mean_all()?)?;
        d_opt.step(&d_loss.backward()?, request.lr)?;
        let g_loss = softplus(&gan.d.forward(&fake)?.neg()?)?.mean_all()?;
        g_opt.step(&g_loss.backward()?, request.lr)?;
        losses = (g_loss.to_scalar()?, d_loss.to_scalar()?);
        report(
            request,
            step,
            losses,
            started,
            |z| gan.sample(z, 1.0),
            on_step,
            &preview_z,
        )?;
    }
    Ok((Adapted::source(gan), losses.0, losses.1))
}

/// The adapted generator (`g.*`, with GenDA's `adaptor.*`) and the request, as a model folder
/// [`Adapted::load`] reads.
fn save(adapted: &Adapted, request: &AdaptRequest, out: &Path) -> Result<()> {
    let vars = VarMap::new();
    {
        let mut data = vars.data().lock().expect("VarMap lock");
        let source = adapted.gan.vars.data().lock().expect("VarMap lock");
        for (name, var) in source.iter().filter(|(k, _)| k.starts_with("g.")) {
            data.insert(name.clone(), var.clone());
        }
        if let Some(a) = &adapted.adaptor {
            data.insert("adaptor.scale".into(), Var::from_tensor(&a.scale)?);
            data.insert("adaptor.shift".into(), Var::from_tensor(&a.shift)?);
        }
    }
    let recipe = json!({
        "gan": adapted.gan.cfg,
        "method": request.method,
        "target": request.target.label(),
        "steps": request.steps,
        "batch": request.batch,
        "lr": request.lr,
        "truncation": request.truncation,
        "seed": request.seed,
    });
    crate::train::model_folder::save_model(out, &vars, super::pretrain::KIND, &recipe)
}

/// A finished adaptation: the record and the adapted generator itself.
pub struct AdaptDone {
    pub outcome: AdaptOutcome,
    pub adapted: Adapted,
}

impl Report for AdaptDone {
    fn metrics(&self) -> serde_json::Value {
        self.outcome.metrics()
    }
    fn outputs(&self) -> serde_json::Value {
        self.outcome.outputs()
    }
}

pub fn spawn_adapt(board: &JobBoard, request: AdaptRequest) -> JobHandle<AdaptStep, AdaptDone> {
    let spec = JobSpec {
        kind: "gan-adapt".into(),
        title: format!("{} to {}", request.method, request.target.label()),
        inputs: serde_json::to_value(&request).unwrap_or_default(),
        seed: Some(request.seed),
    };
    board.spawn(spec, move |ctx: &JobCtx<AdaptStep>| {
        let (adapted, outcome) = adapt(&request, &mut |s| {
            ctx.check()?;
            ctx.progress(
                Some(s.step as f32 / s.total.max(1) as f32),
                format!(
                    "step {}/{} · G {:.3} · D {:.3}",
                    s.step, s.total, s.generator_loss, s.critic_loss
                ),
            );
            ctx.send(s);
            Ok(())
        })?;
        Ok(AdaptDone { outcome, adapted })
    })
}
