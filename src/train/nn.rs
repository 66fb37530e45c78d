//! Differentiable building blocks for the training forward passes. candle-nn's fused kernels
//! (`softmax_last_dim`, `layer_norm`, `rms_norm`, `rope`) have no backward pass; the inference
//! paths keep them. Here the decoder's hot spots (RMSNorm, rotary embeddings, causal attention,
//! the head with its log-softmax, the linear layers' products) are CPU custom ops with backward passes of
//! their own, which keep far fewer intermediates than the same maths composed of candle ops;
//! the rest is composed.

use std::sync::Mutex;

use candle_core::{
    CpuStorage, CustomOp1, CustomOp2, CustomOp3, Device, Layout, Result, Shape, Tensor, D,
};
use rayon::prelude::*;

use super::sgemm;
use crate::lm::kernels::dot::f32_dot;

/// `x · wᵀ (+ b)` with PyTorch's `[out, in]` weight layout, as a [`MatmulT`].
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    // One 2-D product over all leading dimensions: broadcasting the weight over the batch
    // would copy it once per sequence, forward and backward.
    let mut dims = x.dims().to_vec();
    let inputs = dims.pop().unwrap_or(1);
    let rows: usize = dims.iter().product();
    let x2 = x.reshape((rows, inputs))?;
    let y = x2.apply_op2(w, MatmulT)?;
    dims.push(w.dim(0)?);
    let y = y.reshape(dims)?;
    match b {
        Some(b) => y.broadcast_add(b),
        None => Ok(y),
    }
}

/// `x · wᵀ` for `x [rows, in]` and `w [out, in]`, its products by [`sgemm`]. The backward
/// pass computes a gradient only for an argument that is trained: candle's matmul computes the
/// weight's gradient even for a frozen base, which for LoRA and prompt tuning is a third of the
/// arithmetic and a weight-sized buffer per matrix.
struct MatmulT;

impl CustomOp2 for MatmulT {
    fn name(&self) -> &'static str {
        "matmul-t"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        w: &CpuStorage,
        w_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let wt = w_layout.transpose(0, 1)?;
        let (y, shape) = sgemm::product_of(x, x_layout, w, &wt)?;
        Ok((CpuStorage::F32(y), Shape::from(shape)))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let dx = x.track_op().then(|| sgemm::product(grad, w)).transpose()?;
        let dw = w
            .track_op()
            .then(|| sgemm::product(&grad.t()?, x))
            .transpose()?;
        Ok((dx, dw))
    }
}

/// `x / rms(x) · w` over the last dimension, as one op: the composed version kept five
/// intermediates of `x`'s size per norm for the backward pass, this one recomputes each row's
/// scale from `x`.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?.apply_op2(w, RmsNorm { eps })
}

struct RmsNorm {
    eps: f64,
}

impl RmsNorm {
    /// 1 / sqrt(mean(x²) + ε) of one row.
    fn scale(&self, row: &[f32]) -> f32 {
        let ms = row.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / row.len() as f64;
        (1.0 / (ms + self.eps).sqrt()) as f32
    }
}

/// The contiguous f32 values of a custom op's argument.
pub(super) fn f32_values<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
) -> Result<&'a [f32]> {
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{op}: input not contiguous")))?;
    match storage {
        CpuStorage::F32(v) => Ok(&v[start..end]),
        _ => candle_core::bail!("{op}: f32 inputs only"),
    }
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms-norm"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w) = (
            f32_values(xs, xl, "rms norm")?,
            f32_values(ws, wl, "rms norm")?,
        );
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(w.len())
            .zip(x.par_chunks(w.len()))
            .for_each(|(y, x)| {
                let r = self.scale(x);
                for ((y, &x), &w) in y.iter_mut().zip(x).zip(w) {
                    *y = x * r * w;
                }
            });
        Ok((CpuStorage::F32(y), xl.shape().clone()))
    }

    /// With u = g·w: dx = r·u − r³·x·mean(u·x); dw = Σ over rows of g·x·r.
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let d = w.dim(0)?;
        let xv: Vec<f32> = x.flatten_all()?.to_vec1()?;
        let gv: Vec<f32> = g.flatten_all()?.to_vec1()?;
        let wv: Vec<f32> = w.to_vec1()?;
        // Each row's scale, computed once for both gradients.
        let rs: Vec<f32> = xv.par_chunks(d).map(|x| self.scale(x)).collect();
        let mut dx = vec![0f32; xv.len()];
        dx.par_chunks_mut(d)
            .zip(xv.par_chunks(d).zip(gv.par_chunks(d)).zip(&rs))
            .for_each(|(dx, ((x, g), &r))| {
                let ux: f32 = x.iter().zip(g).zip(&wv).map(|((x, g), w)| g * w * x).sum();
                let c = r * r * r * ux / d as f32;
                for (((dx, &x), &g), &w) in dx.iter_mut().zip(x).zip(g).zip(&wv) {
                    *dx = r * g * w - c * x;
                }
            });
        let dw = if w.track_op() {
            let sums = xv
                .par_chunks(d)
                .zip(gv.par_chunks(d))
                .zip(&rs)
                .fold(
                    || vec![0f32; d],
                    |mut acc, ((x, g), &r)| {
                        for ((a, &x), &g) in acc.iter_mut().zip(x).zip(g) {
                            *a += g * x * r;
                        }
                        acc
                    },
                )
                .reduce(
                    || vec![0f32; d],
                    |a, b| a.iter().zip(&b).map(|(a, b)| a + b).collect(),
                );
            Some(Tensor::from_vec(sums, d, &Device::Cpu)?)
        } else {
            None
        };
        Ok((Some(Tensor::from_vec(dx, x.shape(), &Device::Cpu)?), dw))
    }
}

/// Rotary embeddings over `[batch, heads, time, head_dim]`: `x·cos + rotate_half(x)·sin` with
/// `cos`, `sin` `[time, head_dim]` (HF llama's rotate-half layout), as one op. Its backward pass
/// is the opposite rotation; the composed version kept six intermediates per call.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let op = Rope {
        cos: cos.flatten_all()?.to_vec1()?,
        sin: sin.flatten_all()?.to_vec1()?,
        width: x.dim(D::Minus1)?,
    };
    if op.cos.len() != x.dim(2)? * op.width {
        candle_core::bail!("rope: tables do not match {:?}", x.shape());
    }
    x.contiguous()?.apply_op1(op)
}

struct Rope {
    cos: Vec<f32>,
    sin: Vec<f32>,
    width: usize,
}

impl Rope {
    /// Rotates every row of `x` (its time is the row's index modulo the table's length), or
    /// for the gradient applies the rotation's transpose.
    fn rotate(&self, x: &[f32], transpose: bool) -> Vec<f32> {
        let (d, half) = (self.width, self.width / 2);
        let positions = self.cos.len() / d;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(d)
            .zip(x.par_chunks(d))
            .enumerate()
            .for_each(|(i, (y, x))| {
                let p = (i % positions) * d;
                let (cos, sin) = (&self.cos[p..p + d], &self.sin[p..p + d]);
                for j in 0..half {
                    let k = j + half;
                    if transpose {
                        y[j] = x[j] * cos[j] + x[k] * sin[k];
                        y[k] = x[k] * cos[k] - x[j] * sin[j];
                    } else {
                        y[j] = x[j] * cos[j] - x[k] * sin[j];
                        y[k] = x[k] * cos[k] + x[j] * sin[k];
                    }
                }
            });
        y
    }
}

impl CustomOp1 for Rope {
    fn name(&self) -> &'static str {
        "rope"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_values(storage, layout, "rope")?;
        Ok((
            CpuStorage::F32(self.rotate(x, false)),
            layout.shape().clone(),
        ))
    }

    fn bwd(&self, x: &Tensor, _: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        let gv: Vec<f32> = g.flatten_all()?.to_vec1()?;
        Ok(Some(Tensor::from_vec(
            self.rotate(&gv, true),
            x.shape(),
            &Device::Cpu,
        )?))
    }
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

/// Causal multi-head attention with grouped keys and values: `q` `[batch, heads, time, d]`,
/// `k` and `v` `[batch, kv_heads, time, d]`, each group of `heads / kv_heads` query heads
/// reading one key/value head (Llama's grouped-query attention), as one op. The composed
/// version copied the keys and values once per query head and kept the scores, the masked
/// scores and the softmax's intermediates; this one keeps the attention weights only.
pub fn causal_attention(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Tensor> {
    let (b, heads, t, d) = q.dims4()?;
    let (kb, kv_heads, kt, kd) = k.dims4()?;
    if (kb, kt, kd) != (b, t, d) || v.dims4()? != (b, kv_heads, t, d) || heads % kv_heads != 0 {
        candle_core::bail!(
            "causal attention: q {:?}, k {:?}, v {:?} do not fit",
            q.shape(),
            k.shape(),
            v.shape()
        );
    }
    let op = CausalAttention {
        group: heads / kv_heads,
        t,
        d,
        weights: Mutex::new(None),
    };
    q.contiguous()?
        .apply_op3(&k.contiguous()?, &v.contiguous()?, op)
}

struct CausalAttention {
    /// Query heads per key/value head.
    group: usize,
    t: usize,
    d: usize,
    /// The softmax `[batch, heads, time, time]`, from the forward pass to the backward pass.
    weights: Mutex<Option<Vec<f32>>>,
}

/// `y += a · x`.
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    y.iter_mut().zip(x).for_each(|(y, x)| *y += a * x);
}

impl CustomOp3 for CausalAttention {
    fn name(&self) -> &'static str {
        "causal-attention"
    }

    fn cpu_fwd(
        &self,
        qs: &CpuStorage,
        ql: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        vs: &CpuStorage,
        vl: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let name = "causal attention";
        let (q, k, v) = (
            f32_values(qs, ql, name)?,
            f32_values(ks, kl, name)?,
            f32_values(vs, vl, name)?,
        );
        let (t, d, group) = (self.t, self.d, self.group);
        let scale = 1.0 / (d as f32).sqrt();
        let mut out = vec![0f32; q.len()];
        let mut weights = vec![0f32; q.len() / d * t];
        // One task per key/value head: its query heads' rows of `out` and `weights` are contiguous.
        out.par_chunks_mut(group * t * d)
            .zip(weights.par_chunks_mut(group * t * t))
            .enumerate()
            .for_each(|(unit, (out, weights))| {
                let kv = unit * t * d;
                let (k, v) = (&k[kv..kv + t * d], &v[kv..kv + t * d]);
                for h in 0..group {
                    let first = (unit * group + h) * t * d;
                    for i in 0..t {
                        let qi = &q[first + i * d..first + (i + 1) * d];
                        let p = &mut weights[(h * t + i) * t..(h * t + i) * t + i + 1];
                        for (j, p) in p.iter_mut().enumerate() {
                            *p = scale * f32_dot(qi, &k[j * d..(j + 1) * d]);
                        }
                        let max = p.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
                        let mut sum = 0f32;
                        p.iter_mut().for_each(|x| {
                            *x = (*x - max).exp();
                            sum += *x;
                        });
                        p.iter_mut().for_each(|x| *x /= sum);
                        let o = &mut out[(h * t + i) * d..(h * t + i + 1) * d];
                        for (j, &pj) in p.iter().enumerate() {
                            axpy(o, pj, &v[j * d..(j + 1) * d]);
                        }
                    }
                }
            });
        *self.weights.lock().expect("attention weights lock") = Some(weights);
        Ok((CpuStorage::F32(out), ql.shape().clone()))
    }

    /// With P the weights and dO the incoming gradient: dV = Pᵀ·dO, dP = dO·Vᵀ,
    /// dS = P ∘ (dP − rowsum(P ∘ dP)), dQ = s·dS·K, dK = s·dSᵀ·Q, summed over a group's heads.
    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let weights = self
            .weights
            .lock()
            .expect("attention weights lock")
            .take()
            .ok_or_else(|| {
                candle_core::Error::Msg("causal attention: backward ran twice".into())
            })?;
        let (t, d, group) = (self.t, self.d, self.group);
        let scale = 1.0 / (d as f32).sqrt();
        let values = |x: &Tensor| -> Result<Vec<f32>> { x.flatten_all()?.to_vec1() };
        let (qv, kv, vv, g) = (values(q)?, values(k)?, values(v)?, values(grad)?);
        let (mut dq, mut dk, mut dv) = (
            vec![0f32; qv.len()],
            vec![0f32; kv.len()],
            vec![0f32; vv.len()],
        );
        dq.par_chunks_mut(group * t * d)
            .zip(dk.par_chunks_mut(t * d).zip(dv.par_chunks_mut(t * d)))
            .enumerate()
            .for_each(|(unit, (dq, (dk, dv)))| {
                let kvo = unit * t * d;
                let (k, v) = (&kv[kvo..kvo + t * d], &vv[kvo..kvo + t * d]);
                let mut ds = vec![0f32; t];
                for h in 0..group {
                    let first = (unit * group + h) * t * d;
                    for i in 0..t {
                        let p = &weights[((unit * group + h) * t + i) * t..][..i + 1];
                        let gi = &g[first + i * d..first + (i + 1) * d];
                        let qi = &qv[first + i * d..first + (i + 1) * d];
                        for (j, &pj) in p.iter().enumerate() {
                            axpy(&mut dv[j * d..(j + 1) * d], pj, gi);
                            ds[j] = f32_dot(gi, &v[j * d..(j + 1) * d]);
                        }
                        let mean: f32 = p.iter().zip(&ds).map(|(p, g)| p * g).sum();
                        let dqi = &mut dq[(h * t + i) * d..(h * t + i + 1) * d];
                        for (j, &pj) in p.iter().enumerate() {
                            let s = scale * pj * (ds[j] - mean);
                            axpy(dqi, s, &k[j * d..(j + 1) * d]);
                            axpy(&mut dk[j * d..(j + 1) * d], s, qi);
                        }
                    }
                }
            });
        let dev = &Device::Cpu;
        Ok((
            Some(Tensor::from_vec(dq, q.shape(), dev)?),
            Some(Tensor::from_vec(dk, k.shape(), dev)?),
            Some(Tensor::from_vec(dv, v.shape(), dev)?),
        ))
    }
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
/// batch of 1 024 SmolLM2 tokens); this one computes the logits into one buffer and turns them
/// into the probabilities, then into the logits' gradient, in place.
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
        // The logits are written into the buffer that then holds the probabilities.
        let mut probs = Vec::new();
        sgemm::product_into(&self.h, &self.w.t()?, &mut probs)?;
        let mut out = vec![0f32; n];
        probs
            .par_chunks_mut(vocab)
            .zip(out.par_iter_mut().zip(&self.targets))
            .for_each(|(row, (o, &t))| {
                let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
                let target = row[t as usize];
                let mut sum = 0f64;
                for x in row.iter_mut() {
                    *x = (*x - max).exp();
                    sum += *x as f64;
                }
                let inv = (1.0 / sum) as f32;
                row.iter_mut().for_each(|p| *p *= inv);
                *o = target - max - sum.ln() as f32;
            });
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
        let dh = sgemm::product(&dlogits, &self.w)?;
        let dw = w
            .track_op()
            .then(|| sgemm::product(&dlogits.t()?, &self.h))
            .transpose()?;
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

    /// `linear` against candle's matmul, values and both gradients; a frozen weight gets none.
    #[test]
    fn linear_has_the_composed_gradients_and_none_for_a_frozen_weight() -> Result<()> {
        let dev = Device::Cpu;
        let x = candle_core::Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 8), &dev)?)?;
        let w = candle_core::Var::from_tensor(&Tensor::randn(0f32, 1.0, (5, 8), &dev)?)?;
        let fused = linear(x.as_tensor(), w.as_tensor(), None)?;
        let composed = x.as_tensor().broadcast_matmul(&w.as_tensor().t()?)?;
        assert_same_gradients(&fused, &composed, &[&x, &w])?;
        let frozen = w.as_tensor().detach();
        let grads = linear(x.as_tensor(), &frozen, None)?
            .sum_all()?
            .backward()?;
        assert!(grads.get(x.as_tensor()).is_some());
        assert!(grads.get(&frozen).is_none());
        Ok(())
    }

    /// Values and the gradients of a weighted sum, for `f` and a composed reference `r`.
    fn assert_same_gradients(f: &Tensor, r: &Tensor, inputs: &[&candle_core::Var]) -> Result<()> {
        let diff = |a: &Tensor, b: &Tensor| -> Result<f32> {
            (a - b)?.abs()?.max_all()?.to_scalar::<f32>()
        };
        assert!(diff(f, r)? < 1e-5, "values");
        let g = Tensor::randn(0f32, 1.0, f.shape(), f.device())?;
        let (gf, gr) = (
            (f * &g)?.sum_all()?.backward()?,
            (r * &g)?.sum_all()?.backward()?,
        );
        for (i, v) in inputs.iter().enumerate() {
            let (a, b) = (gf.get(v.as_tensor()), gr.get(v.as_tensor()));
            assert!(
                diff(a.unwrap(), b.unwrap())? < 1e-4,
                "gradient of input {i}"
            );
        }
        Ok(())
    }

    #[test]
    fn fused_rms_norm_and_rope_have_the_composed_gradients() -> Result<()> {
        let dev = Device::Cpu;
        let x = candle_core::Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 3, 4, 8), &dev)?)?;
        let w = candle_core::Var::from_tensor(&Tensor::randn(1f32, 0.1, 8, &dev)?)?;
        let (xt, wt) = (x.as_tensor(), w.as_tensor());
        let ms = xt.sqr()?.mean_keepdim(D::Minus1)?;
        let composed = xt.broadcast_div(&(ms + 1e-5)?.sqrt()?)?.broadcast_mul(wt)?;
        assert_same_gradients(&rms_norm(xt, wt, 1e-5)?, &composed, &[&x, &w])?;
        // Tables whose two halves differ, so a wrong half in the transpose shows.
        let cos = Tensor::randn(0f32, 1.0, (4, 8), &dev)?;
        let sin = Tensor::randn(0f32, 1.0, (4, 8), &dev)?;
        let (x1, x2) = (xt.narrow(D::Minus1, 0, 4)?, xt.narrow(D::Minus1, 4, 4)?);
        let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
        let composed = (xt.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?)?;
        assert_same_gradients(&rope(xt, &cos, &sin)?, &composed, &[&x])
    }

    #[test]
    fn fused_causal_attention_has_the_composed_gradients() -> Result<()> {
        let dev = Device::Cpu;
        let var = |heads| -> Result<candle_core::Var> {
            candle_core::Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, heads, 5, 4), &dev)?)
        };
        // Six query heads over two key/value heads: groups of three.
        let (q, k, v) = (var(6)?, var(2)?, var(2)?);
        let repeat = |x: &Tensor| -> Result<Tensor> {
            x.unsqueeze(2)?
                .broadcast_as((2, 2, 3, 5, 4))?
                .contiguous()?
                .reshape((2, 6, 5, 4))
        };
        let mask: Vec<f32> = (0..25)
            .map(|i| {
                if i % 5 > i / 5 {
                    f32::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        let mask = Tensor::from_vec(mask, (5, 5), &dev)?;
        let composed = attention(
            q.as_tensor(),
            &repeat(k.as_tensor())?,
            &repeat(v.as_tensor())?,
            Some(&mask),
        )?;
        let fused = causal_attention(q.as_tensor(), k.as_tensor(), v.as_tensor())?;
        assert_same_gradients(&fused, &composed, &[&q, &k, &v])
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
