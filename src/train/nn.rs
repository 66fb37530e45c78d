//! Differentiable building blocks made of candle's primitive ops only. candle-nn's fused
//! kernels (`softmax_last_dim`, `layer_norm`, `rms_norm`, `rope`) have no backward pass, so the
//! training forward passes use these instead; the inference paths keep the fused kernels.

use candle_core::{CpuStorage, CustomOp1, Device, Layout, Result, Shape, Tensor, D};

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

#[cfg(test)]
mod tests {
    use super::*;

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
