//! Adam with an optional pull on the weights: none (plain Adam), decoupled weight decay toward
//! zero (AdamW), or toward the pretrained weights (AdamR, the DAREx-L2 regulariser:
//! `θ ← θ − λ·lr/√mean(v̂)·(θ − θ_pre)` before each Adam update, with the mean of the
//! bias-corrected second moment taken over all parameters, as in the stable weight decay it
//! follows), so that the fine-tuning deltas stay small.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Pull {
    None,
    /// AdamW: `θ ← θ − lr·λ·θ`.
    WeightDecay {
        lambda: f64,
    },
    /// AdamR: toward the weights the optimiser started from.
    TowardPretrained {
        lambda: f64,
    },
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct AdamConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Gradients are rescaled so that their global L2 norm is at most this.
    pub clip_norm: Option<f64>,
    pub pull: Pull,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            clip_norm: Some(1.0),
            pull: Pull::None,
        }
    }
}

struct Slot {
    var: Var,
    m: Tensor,
    v: Tensor,
    anchor: Option<Tensor>,
}

pub struct Adam {
    slots: Vec<Slot>,
    cfg: AdamConfig,
    step: i32,
}

impl Adam {
    pub fn new(vars: Vec<Var>, cfg: AdamConfig) -> Result<Self> {
        let anchored = matches!(cfg.pull, Pull::TowardPretrained { .. });
        let slots = vars
            .into_iter()
            .map(|var| {
                let t = var.as_tensor();
                Ok(Slot {
                    m: t.zeros_like()?,
                    v: t.zeros_like()?,
                    anchor: if anchored { Some(t.copy()?) } else { None },
                    var,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            slots,
            cfg,
            step: 0,
        })
    }

    /// Global L2 norm of the gradients of this optimiser's variables.
    fn grad_norm(&self, grads: &GradStore) -> Result<f64> {
        let mut sum = 0f64;
        for s in &self.slots {
            if let Some(g) = grads.get(s.var.as_tensor()) {
                sum += g.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
            }
        }
        Ok(sum.sqrt())
    }

    /// One update with learning rate `lr`; returns the gradient norm before clipping.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<f64> {
        self.step += 1;
        let c = self.cfg;
        let norm = self.grad_norm(grads)?;
        let scale = match c.clip_norm {
            Some(max) if norm > max => max / norm,
            _ => 1.0,
        };
        let bc1 = 1.0 - c.beta1.powi(self.step);
        let bc2 = 1.0 - c.beta2.powi(self.step);
        let mut grads_of = Vec::with_capacity(self.slots.len());
        let (mut v_sum, mut count) = (0f64, 0usize);
        for s in &mut self.slots {
            let Some(g) = grads.get(s.var.as_tensor()) else {
                grads_of.push(false);
                continue;
            };
            let g = (g * scale)?;
            s.m = ((&s.m * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
            s.v = ((&s.v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            v_sum += s.v.sum_all()?.to_scalar::<f32>()? as f64 / bc2;
            count += s.v.elem_count();
            grads_of.push(true);
        }
        let rms_v = (v_sum / count.max(1) as f64).sqrt();
        for (s, has_grad) in self.slots.iter_mut().zip(grads_of) {
            if !has_grad {
                continue;
            }
            let mut theta = s.var.as_tensor().clone();
            match (c.pull, &s.anchor) {
                (Pull::WeightDecay { lambda }, _) => theta = (&theta * (1.0 - lr * lambda))?,
                (Pull::TowardPretrained { lambda }, Some(anchor)) if rms_v > 0.0 => {
                    let k = lambda * lr / rms_v;
                    theta = (&theta - ((&theta - anchor)? * k)?)?;
                }
                _ => {}
            }
            let v_hat = (&s.v / bc2)?;
            let update = ((&s.m / bc1)? / (v_hat.sqrt()? + c.eps)?)?;
            s.var.set(&(theta - (update * lr)?)?)?;
        }
        Ok(norm)
    }
}

/// Linear warm-up over the first `warmup` steps, then cosine decay to 10% of `peak`.
pub fn lr_at(step: usize, total: usize, warmup: usize, peak: f64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let t = (step - warmup) as f64 / (total - warmup).max(1) as f64;
    peak * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Minimising ‖θ − target‖² from θ₀: AdamR ends nearer θ₀ than plain Adam.
    #[test]
    fn adamr_keeps_weights_near_the_start() -> Result<()> {
        let dev = Device::Cpu;
        let target = Tensor::new(&[1f32, -2.0, 3.0], &dev)?;
        let run = |pull: Pull| -> Result<f32> {
            let var = Var::new(&[0f32, 0.0, 0.0], &dev)?;
            let cfg = AdamConfig {
                pull,
                ..Default::default()
            };
            let mut opt = Adam::new(vec![var.clone()], cfg)?;
            for _ in 0..200 {
                let loss = (var.as_tensor() - &target)?.sqr()?.sum_all()?;
                opt.step(&loss.backward()?, 0.05)?;
            }
            var.as_tensor().sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()
        };
        let plain = run(Pull::None)?;
        let pulled = run(Pull::TowardPretrained { lambda: 5.0 })?;
        assert!(
            (plain - 14f32.sqrt()).abs() < 0.1,
            "plain Adam reaches the target: {plain}"
        );
        assert!(
            pulled < 0.8 * plain,
            "AdamR stays nearer the start: {pulled} vs {plain}"
        );
        Ok(())
    }
}
