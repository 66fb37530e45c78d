//! Training with candle autograd: differentiable llama, ViT and BERT-classifier forward passes
//! that carry Hugging Face tensor names, Adam/AdamW/AdamR, and the step loop with progress
//! reports. The model zoo is built with it.

pub mod adapter;
pub mod bert;
pub mod finetune;
pub mod llama;
pub mod model_folder;
pub mod nn;
pub mod optim;
pub mod pretrained;
pub mod sft;
pub mod sgemm;
pub mod site;
pub mod vit;

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use std::sync::Mutex;

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use optim::{Adam, AdamConfig, Pull};

/// What one optimiser step reports to its caller (progress bar, loss curve).
#[derive(Debug, Clone, Copy)]
pub struct StepReport {
    pub step: usize,
    pub total: usize,
    pub loss: f32,
    pub lr: f64,
    pub seconds: f64,
}

#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub steps: usize,
    pub warmup: usize,
    pub peak_lr: f64,
}

impl Schedule {
    /// Warm-up over `warmup_fraction` of the steps (at least one), then cosine decay.
    pub fn new(steps: usize, peak_lr: f64, warmup_fraction: f64) -> Self {
        Self {
            steps,
            warmup: ((steps as f64 * warmup_fraction) as usize).max(1),
            peak_lr,
        }
    }
}

/// Runs `schedule.steps` Adam steps (with `pull`, otherwise defaults) on the loss
/// `batch_loss(step)` returns. `on_step` sees every step and stops training by returning an
/// error (cancellation).
pub fn train_loop(
    varmap: &VarMap,
    pull: Pull,
    schedule: Schedule,
    mut batch_loss: impl FnMut(usize) -> candle_core::Result<Tensor>,
    on_step: &mut dyn FnMut(StepReport) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<f32>> {
    let opt_cfg = AdamConfig {
        pull,
        ..Default::default()
    };
    let mut opt = Adam::new(varmap.all_vars(), opt_cfg)?;
    let start = Instant::now();
    let mut losses = Vec::with_capacity(schedule.steps);
    for step in 0..schedule.steps {
        let lr = optim::lr_at(step, schedule.steps, schedule.warmup, schedule.peak_lr);
        let loss = batch_loss(step)?;
        let value = loss.to_scalar::<f32>()?;
        anyhow::ensure!(
            value.is_finite(),
            "training diverged at step {step}: loss {value}"
        );
        opt.step(&loss.backward()?, lr)?;
        losses.push(value);
        on_step(StepReport {
            step: step + 1,
            total: schedule.steps,
            loss: value,
            lr,
            seconds: start.elapsed().as_secs_f64(),
        })?;
    }
    Ok(losses)
}

/// Sets every variable of `varmap` from the safetensors file (any float dtype, read as f32),
/// where the file names it as the variable does, without `prefix` (`bert.` variables from a
/// bare BERT file) or with it (PEFT's `base_model.model.` names). Returns the variables the
/// file did not have.
pub fn load_into(varmap: &VarMap, file: &Path, prefix: &str) -> anyhow::Result<Vec<String>> {
    let tensors = candle_core::safetensors::load(file, &Device::Cpu)
        .with_context(|| format!("{}: not a readable safetensors file", file.display()))?;
    let by_name: HashMap<&str, &Tensor> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut missing = Vec::new();
    let data = varmap
        .data()
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned VarMap"))?;
    for (name, var) in data.iter() {
        let key = name.strip_prefix(prefix).unwrap_or(name);
        let prefixed = format!("{prefix}{name}");
        let found = by_name
            .get(key)
            .or_else(|| by_name.get(name.as_str()))
            .or_else(|| by_name.get(prefixed.as_str()));
        match found {
            Some(t) => {
                let t = t.to_dtype(DType::F32)?;
                anyhow::ensure!(
                    t.dims() == var.dims(),
                    "{}: tensor {key} has shape {:?}, the model needs {:?}",
                    file.display(),
                    t.dims(),
                    var.dims()
                );
                var.set(&t)?;
            }
            None => missing.push(name.clone()),
        }
    }
    missing.sort();
    Ok(missing)
}

/// A VarMap builder whose random initial values come from a seeded generator (candle's CPU
/// `randn` uses an unseedable thread-local one), so a recipe and its seed fix the weights.
struct SeededInit {
    varmap: VarMap,
    rng: Mutex<StdRng>,
}

impl SimpleBackend for SeededInit {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut data = self.varmap.data().lock().expect("VarMap lock");
        if let Some(v) = data.get(name) {
            if v.shape() != &s {
                candle_core::bail!("{name}: shape {:?}, asked for {s:?}", v.shape());
            }
            return Ok(v.as_tensor().clone());
        }
        let n = s.elem_count();
        let mut rng = self.rng.lock().expect("rng lock");
        let values: Vec<f32> = match h {
            Init::Const(c) => vec![c as f32; n],
            Init::Randn { mean, stdev } => (0..n)
                .map(|_| {
                    // Box–Muller.
                    let u1: f64 = rng.random_range(f64::EPSILON..1.0);
                    let u2: f64 = rng.random();
                    let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                    (mean + stdev * z) as f32
                })
                .collect(),
            Init::Uniform { lo, up } => (0..n).map(|_| rng.random_range(lo..up) as f32).collect(),
            Init::Kaiming { .. } => candle_core::bail!("{name}: Kaiming init is not used here"),
        };
        let var = Var::from_tensor(&Tensor::from_vec(values, s, dev)?.to_dtype(dtype)?)?;
        let t = var.as_tensor().clone();
        data.insert(name.to_string(), var);
        Ok(t)
    }

    fn get_unchecked(
        &self,
        name: &str,
        _dtype: DType,
        _dev: &Device,
    ) -> candle_core::Result<Tensor> {
        candle_core::bail!("{name}: variables need a shape")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.varmap
            .data()
            .lock()
            .expect("VarMap lock")
            .contains_key(name)
    }
}

/// f32 variables created in `varmap`, initialised from `seed`.
pub fn seeded_builder(varmap: &VarMap, seed: u64) -> VarBuilder<'static> {
    let backend = SeededInit {
        varmap: varmap.clone(),
        rng: Mutex::new(StdRng::seed_from_u64(seed)),
    };
    VarBuilder::from_backend(Box::new(backend), DType::F32, Device::Cpu)
}
