//! Convolutions for CPU training, channels last (`[batch, height, width, channels]`): an
//! im2col custom op whose backward pass is col2im, and a matrix product. candle's own conv2d
//! takes its input gradient through a direct transposed convolution that is several times
//! slower on CPU, and its nearest upsampling back-propagates through one grouped convolution
//! per channel; these layouts keep every pass a gather or a GEMM.

use candle_core::{CpuStorage, CustomOp1, Device, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;

/// `k×k` patches around every pixel, zero-padded to keep the size: `[b, h, w, c]` →
/// `[b·h·w, k·k·c]`, columns ordered `(dy, dx, c)`.
struct Im2Col {
    k: usize,
    dims: (usize, usize, usize, usize),
}

impl Im2Col {
    /// Walks every (pixel, tap) pair whose source lies inside the image:
    /// `visit(pixel_row, tap, source_pixel)`.
    fn for_each_tap(&self, mut visit: impl FnMut(usize, usize, usize)) {
        let (b, h, w, _) = self.dims;
        let pad = self.k / 2;
        for n in 0..b {
            for y in 0..h {
                for x in 0..w {
                    let row = (n * h + y) * w + x;
                    for dy in 0..self.k {
                        let sy = y + dy;
                        if sy < pad || sy - pad >= h {
                            continue;
                        }
                        for dx in 0..self.k {
                            let sx = x + dx;
                            if sx < pad || sx - pad >= w {
                                continue;
                            }
                            visit(row, dy * self.k + dx, (n * h + sy - pad) * w + sx - pad);
                        }
                    }
                }
            }
        }
    }
}

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "im2col-nhwc"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("im2col: input not contiguous".into()))?;
        let CpuStorage::F32(values) = storage else {
            candle_core::bail!("im2col: f32 inputs only");
        };
        let src = &values[start..end];
        let (b, h, w, c) = self.dims;
        let taps = self.k * self.k;
        let width = taps * c;
        let mut out = vec![0f32; b * h * w * width];
        // One image per task: rows of different images never overlap.
        out.par_chunks_mut(h * w * width)
            .enumerate()
            .for_each(|(n, chunk)| {
                let one = Im2Col {
                    k: self.k,
                    dims: (1, h, w, c),
                };
                let image = &src[n * h * w * c..(n + 1) * h * w * c];
                one.for_each_tap(|row, tap, pixel| {
                    let at = row * width + tap * c;
                    chunk[at..at + c].copy_from_slice(&image[pixel * c..(pixel + 1) * c]);
                });
            });
        Ok((CpuStorage::F32(out), Shape::from((b * h * w, width))))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (b, h, w, c) = self.dims;
        let width = self.k * self.k * c;
        let grad: Vec<f32> = grad.contiguous()?.flatten_all()?.to_vec1()?;
        let mut out = vec![0f32; b * h * w * c];
        out.par_chunks_mut(h * w * c)
            .enumerate()
            .for_each(|(n, image)| {
                let one = Im2Col {
                    k: self.k,
                    dims: (1, h, w, c),
                };
                let rows = &grad[n * h * w * width..(n + 1) * h * w * width];
                one.for_each_tap(|row, tap, pixel| {
                    let at = row * width + tap * c;
                    for (o, g) in image[pixel * c..(pixel + 1) * c]
                        .iter_mut()
                        .zip(&rows[at..at + c])
                    {
                        *o += g;
                    }
                });
            });
        Ok(Some(Tensor::from_vec(out, (b, h, w, c), &Device::Cpu)?))
    }
}

/// A same-size `k×k` convolution (k odd) of `x [b, h, w, c]` with `weight [out, k·k·c]`
/// (columns ordered `(dy, dx, c)`) and `bias [out]`: `[b, h, w, out]`.
pub fn conv(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let dims = x.dims4()?;
    let taps = weight.dim(1)? / dims.3;
    let k = (taps as f64).sqrt().round() as usize;
    if k * k * dims.3 != weight.dim(1)? || k.is_multiple_of(2) {
        candle_core::bail!(
            "conv: weight {:?} does not fit {} input channels with an odd square kernel",
            weight.dims(),
            dims.3
        );
    }
    let cols = if k == 1 {
        x.reshape((dims.0 * dims.1 * dims.2, dims.3))?
    } else {
        x.contiguous()?.apply_op1(Im2Col { k, dims })?
    };
    // `linear` skips the weight's gradient when the weight is frozen (GenDA's generator).
    let y = crate::train::nn::linear(&cols, weight, Some(bias))?;
    y.reshape((dims.0, dims.1, dims.2, weight.dim(0)?))
}

/// Nearest-neighbour ×2 upsampling of `[b, h, w, c]`, differentiable through a broadcast.
pub fn upsample2(x: &Tensor) -> Result<Tensor> {
    let (b, h, w, c) = x.dims4()?;
    x.reshape((b, h, 1, w, 1, c))?
        .broadcast_as((b, h, 2, w, 2, c))?
        .reshape((b, 2 * h, 2 * w, c))
}

/// 2×2 average pooling of `[b, h, w, c]` (even sides).
pub fn avg_pool2(x: &Tensor) -> Result<Tensor> {
    let (b, h, w, c) = x.dims4()?;
    x.reshape((b, h / 2, 2, w / 2, 2, c))?
        .sum(4)?
        .sum(2)?
        .affine(0.25, 0.0)
}

/// Normalises each pixel's feature vector to unit mean square (ProGAN's pixel norm).
pub fn pixel_norm(x: &Tensor) -> Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    x.broadcast_div(&(ms + 1e-8)?.sqrt()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn conv_and_its_gradients_match_candle_conv2d() -> Result<()> {
        let dev = Device::Cpu;
        let (b, h, w, c, o) = (2, 5, 4, 3, 4);
        let x = Var::randn(0f32, 1.0, (b, h, w, c), &dev)?;
        // Candle's kernel [o, c, 3, 3]; ours [o, (dy, dx, c)].
        let kernel = Var::randn(0f32, 1.0, (o, c, 3, 3), &dev)?;
        let ours_w = kernel
            .as_tensor()
            .permute((0, 2, 3, 1))?
            .reshape((o, 9 * c))?;
        let bias = Tensor::zeros(o, candle_core::DType::F32, &dev)?;
        let ours = conv(x.as_tensor(), &ours_w, &bias)?;
        let reference = x
            .as_tensor()
            .permute((0, 3, 1, 2))?
            .conv2d(kernel.as_tensor(), 1, 1, 1, 1)?
            .permute((0, 2, 3, 1))?;
        assert!(max_diff(&ours, &reference) < 1e-4);
        let probe = Tensor::randn(0f32, 1.0, ours.shape(), &dev)?;
        let g_ours = (ours * &probe)?.sum_all()?.backward()?;
        let g_ref = (reference * &probe)?.sum_all()?.backward()?;
        let gx = |g: &candle_core::backprop::GradStore| g.get(x.as_tensor()).unwrap().clone();
        assert!(max_diff(&gx(&g_ours), &gx(&g_ref)) < 1e-3);
        let gk = |g: &candle_core::backprop::GradStore| g.get(kernel.as_tensor()).unwrap().clone();
        assert!(max_diff(&gk(&g_ours), &gk(&g_ref)) < 1e-3);
        Ok(())
    }

    #[test]
    fn upsampling_and_pooling_are_inverse_on_constant_blocks() -> Result<()> {
        let x = Tensor::randn(0f32, 1.0, (2, 3, 4, 5), &Device::Cpu)?;
        let up = upsample2(&x)?;
        assert_eq!(up.dims(), &[2, 6, 8, 5]);
        assert!(max_diff(&avg_pool2(&up)?, &x) < 1e-6);
        Ok(())
    }
}
