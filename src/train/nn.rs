//! Differentiable building blocks made of candle's primitive ops only. candle-nn's fused
//! kernels (`softmax_last_dim`, `layer_norm`, `rms_norm`, `rope`) have no backward pass, so the
//! training forward passes use these instead; the inference paths keep the fused kernels.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Device, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

/// `x · wᵀ (+ b)` with PyTorch's `[out, in]` weight layout. A weight that is not trained (no
/// gradient reaches it: a frozen base) goes through [`FrozenMatmul`].
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    // One 2-D product over all leading dimensions: broadcasting the weight over the batch
    // would copy it once per sequence, forward and backward.
    let mut dims = x.dims().to_vec();
    let inputs = dims.pop().unwrap_or(1);
    let rows: usize = dims.iter().product();
    let x2 = x.reshape((rows, inputs))?;
    let y = if w.track_op() || !x.track_op() {
        x2.matmul(&w.t()?)?
    } else {
        x2.contiguous()?.apply_op1(FrozenMatmul(w.clone()))?
    };
    dims.push(w.dim(0)?);
    let y = y.reshape(dims)?;
    match b {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

/// `x · wᵀ` whose backward pass returns the gradient of `x` only. candle's matmul computes the
/// weight's gradient too, even for a detached weight, which for LoRA and prompt tuning on a
/// frozen base is a third of the arithmetic and a gradient-sized buffer per weight.
struct FrozenMatmul(Tensor);

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("frozen matmul: input not contiguous".into()))?;
        let CpuStorage::F32(values) = storage else {
            candle_core::bail!("frozen matmul: f32 inputs only");
        };
        let x = Tensor::from_slice(&values[start..end], layout.shape(), &Device::Cpu)?;
        let y = x.matmul(&self.0.t()?)?;
        let shape = y.shape().clone();
        Ok((CpuStorage::F32(y.flatten_all()?.to_vec1()?), shape))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.matmul(&self.0)?))
    }
}

pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    x.broadcast_div(&(ms + eps)?.sqrt()?)?.broadcast_mul(w)
}

pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    let centred = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
    let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
    centred
        .broadcast_div(&(var + eps)?.sqrt()?)?
        .broadcast_mul(w)?
        .broadcast_add(b)
}

pub fn softmax(x: &Tensor) -> Result<Tensor> {
    candle_nn::ops::softmax(x, D::Minus1)
}

/// Multi-head attention over `[batch, heads, time, head_dim]`; `mask` is added to the scores
/// (0 or −∞, broadcast over batch and heads).
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    let scale = 1.0 / (q.dim(D::Minus1)? as f64).sqrt();
    let scores = (q.matmul(&k.t()?)? * scale)?;
    let scores = match mask {
        Some(m) => scores.broadcast_add(m)?,
        None => scores,
    };
    softmax(&scores)?.matmul(v)
}

/// `[batch, time, heads·head_dim]` → `[batch, heads, time, head_dim]`.
pub fn split_heads(x: &Tensor, heads: usize) -> Result<Tensor> {
    let (b, t, width) = x.dims3()?;
    x.reshape((b, t, heads, width / heads))?
        .transpose(1, 2)?
        .contiguous()
}

/// The inverse of [`split_heads`].
pub fn merge_heads(x: &Tensor) -> Result<Tensor> {
    let (b, h, t, d) = x.dims4()?;
    x.transpose(1, 2)?.contiguous()?.reshape((b, t, h * d))
}

/// Mean cross-entropy over the positions where `weights` is 1 (`logits [n, vocab]`,
/// `targets [n]` u32, `weights [n]` f32).
pub fn masked_cross_entropy(logits: &Tensor, targets: &Tensor, weights: &Tensor) -> Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let picked = logp.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?;
    let total = weights.sum_all()?.to_scalar::<f32>()?.max(1.0);
    (picked * weights)?.sum_all()? / (-total as f64)
}

/// `log softmax(h · wᵀ)[i, targets[i]]` for every row `i` of `h` `[n, in]` (`w` `[vocab, in]`):
/// the language-model head and its loss in one op. The composed version keeps the logits, the
/// log-softmax and every intermediate of its backward pass, each `[n, vocab]` (200 MB for a
/// batch of 1 024 SmolLM2 tokens); this one keeps the probabilities once and turns them into
/// the logits' gradient in place.
pub fn target_logprobs(h: &Tensor, w: &Tensor, targets: &[u32]) -> Result<Tensor> {
    let (n, _) = h.dims2()?;
    if targets.len() != n {
        candle_core::bail!("target log-probs: {} targets for {n} rows", targets.len());
    }
    let op = TargetLogprobs {
        h: h.contiguous()?.detach(),
        w: w.detach(),
        targets: targets.to_vec(),
        probs: Mutex::new(None),
    };
    h.apply_op2(w, op)
}

struct TargetLogprobs {
    h: Tensor,
    w: Tensor,
    targets: Vec<u32>,
    /// The softmax `[n, vocab]`, from the forward pass until the backward pass takes it.
    probs: Mutex<Option<Vec<f32>>>,
}

impl CustomOp2 for TargetLogprobs {
    fn name(&self) -> &'static str {
        "target-logprobs"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        _: &CpuStorage,
        _: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, vocab) = (self.h.dim(0)?, self.w.dim(0)?);
        if let Some(&t) = self.targets.iter().find(|&&t| t as usize >= vocab) {
            candle_core::bail!("target log-probs: target {t} outside a vocabulary of {vocab}");
        }
        let wt = self.w.t()?;
        let mut probs = vec![0f32; n * vocab];
        let mut out = vec![0f32; n];
        // A few rows of logits at a time, so they never exist all at once.
        const ROWS: usize = 64;
        for r0 in (0..n).step_by(ROWS) {
            let len = ROWS.min(n - r0);
            let logits: Vec<f32> = self
                .h
                .narrow(0, r0, len)?
                .matmul(&wt)?
                .flatten_all()?
                .to_vec1()?;
            probs[r0 * vocab..(r0 + len) * vocab]
                .par_chunks_mut(vocab)
                .zip(logits.par_chunks(vocab))
                .zip(
                    out[r0..r0 + len]
                        .par_iter_mut()
                        .zip(&self.targets[r0..r0 + len]),
                )
                .for_each(|((p, row), (o, &t))| {
                    let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
                    let mut sum = 0f64;
                    for (p, &x) in p.iter_mut().zip(row) {
                        *p = (x - max).exp();
                        sum += *p as f64;
                    }
                    let inv = (1.0 / sum) as f32;
                    p.iter_mut().for_each(|p| *p *= inv);
                    *o = row[t as usize] - max - sum.ln() as f32;
                });
        }
        *self.probs.lock().expect("probabilities lock") = Some(probs);
        Ok((CpuStorage::F32(out), Shape::from(n)))
    }

    /// d logp_i / d logits_i = onehot(target_i) − softmax_i, scaled by the incoming gradient.
    fn bwd(
        &self,
        _: &Tensor,
        w: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let mut probs = self
            .probs
            .lock()
            .expect("probabilities lock")
            .take()
            .ok_or_else(|| {
                candle_core::Error::Msg("target log-probs: backward ran twice".into())
            })?;
        let g: Vec<f32> = grad.to_vec1()?;
        let vocab = self.w.dim(0)?;
        probs
            .par_chunks_mut(vocab)
            .zip(g.par_iter().zip(&self.targets))
            .for_each(|(row, (&g, &t))| {
                row.iter_mut().for_each(|p| *p *= -g);
                row[t as usize] += g;
            });
        let dlogits = Tensor::from_vec(probs, (g.len(), vocab), &Device::Cpu)?;
        let dh = dlogits.matmul(&self.w)?;
        let dw = if w.track_op() {
            Some(dlogits.t()?.matmul(&self.h)?)
        } else {
            None
        };
        Ok((Some(dh), dw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fused_target_logprobs_equal_the_composed_head_with_gradients() -> Result<()> {
        let dev = Device::Cpu;
        let h = candle_core::Var::from_tensor(&Tensor::randn(0f32, 1.0, (5, 8), &dev)?)?;
        let w = candle_core::Var::from_tensor(&Tensor::randn(0f32, 1.0, (11, 8), &dev)?)?;
        let targets = [3u32, 0, 10, 3, 7];
        // Unequal weights per row, so the incoming gradient is a vector, not a constant.
        let g = Tensor::new(&[1f32, -0.5, 2.0, 0.25, 1.5], &dev)?;
        let diff = |a: &Tensor, b: &Tensor| -> Result<f32> {
            (a - b)?.abs()?.max_all()?.to_scalar::<f32>()
        };
        for frozen in [false, true] {
            let wt = if frozen {
                w.as_tensor().detach()
            } else {
                w.as_tensor().clone()
            };
            let fused = target_logprobs(h.as_tensor(), &wt, &targets)?;
            let logp = candle_nn::ops::log_softmax(&linear(h.as_tensor(), &wt, None)?, D::Minus1)?;
            let ids = Tensor::new(&targets, &dev)?.unsqueeze(1)?;
            let composed = logp.gather(&ids, 1)?.squeeze(1)?;
            assert!(diff(&fused, &composed)? < 1e-5, "values");
            let gf = (fused * &g)?.sum_all()?.backward()?;
            let gc = (composed * &g)?.sum_all()?.backward()?;
            let grad = |gs: &candle_core::backprop::GradStore, t: &Tensor| gs.get(t).cloned();
            let (hf, hc) = (grad(&gf, h.as_tensor()), grad(&gc, h.as_tensor()));
            assert!(diff(&hf.unwrap(), &hc.unwrap())? < 1e-5, "input gradient");
            let (wf, wc) = (grad(&gf, w.as_tensor()), grad(&gc, w.as_tensor()));
            if frozen {
                assert!(
                    wf.is_none() && wc.is_none(),
                    "a frozen head has no gradient"
                );
            } else {
                assert!(diff(&wf.unwrap(), &wc.unwrap())? < 1e-5, "head gradient");
            }
        }
        assert!(target_logprobs(h.as_tensor(), w.as_tensor(), &[11, 0, 0, 0, 0]).is_err());
        Ok(())
    }

    #[test]
    fn a_frozen_weight_gives_the_same_values_and_input_gradient() -> Result<()> {
        let dev = Device::Cpu;
        let x = candle_core::Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 8), &dev)?)?;
        let w = Tensor::randn(0f32, 1.0, (5, 8), &dev)?;
        let frozen = linear(x.as_tensor(), &w.detach(), None)?;
        let trained = candle_core::Var::from_tensor(&w)?;
        let plain = linear(x.as_tensor(), trained.as_tensor(), None)?;
        let diff = |a: &Tensor, b: &Tensor| -> Result<f32> {
            (a - b)?.abs()?.max_all()?.to_scalar::<f32>()
        };
        assert!(diff(&frozen, &plain)? < 1e-5);
        let gf = frozen.sum_all()?.backward()?;
        let gp = plain.sum_all()?.backward()?;
        assert!(
            diff(
                gf.get(x.as_tensor()).unwrap(),
                gp.get(x.as_tensor()).unwrap()
            )? < 1e-5
        );
        assert!(gp.get(trained.as_tensor()).is_some());
        Ok(())
    }

    #[test]
    fn composed_norms_match_candle_kernels() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (3, 5, 16), &dev)?;
        let w = Tensor::randn(1f32, 0.1, 16, &dev)?;
        let b = Tensor::randn(0f32, 0.1, 16, &dev)?;
        let diff =
            |a: Tensor, b: Tensor| -> Result<f32> { (a - b)?.abs()?.max_all()?.to_scalar::<f32>() };
        assert!(
            diff(
                rms_norm(&x, &w, 1e-5)?,
                candle_nn::ops::rms_norm(&x, &w, 1e-5)?
            )? < 1e-5
        );
        let ln = candle_nn::ops::layer_norm(&x, &w, &b, 1e-5)?;
        assert!(diff(layer_norm(&x, &w, &b, 1e-5)?, ln)? < 1e-5);
        Ok(())
    }
}
