//! The GAN: a StyleGAN-like generator (a mapping network from `z` to the latent `w`, and `w`
//! fed to every layer as a per-channel scale and shift — GenDA's adaptor needs this layer-wise
//! path to learn through) and a convolutional discriminator whose backbone ends in a feature
//! vector, so GenDA's attribute classifier can sit on it. Channels last throughout
//! ([`super::conv`]); images are `[b, 32, 32, 3]` in `[-1, 1]`.

use candle_core::{Result, Tensor, D};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use super::conv::{avg_pool2, conv, pixel_norm, upsample2};
use super::faces::SIZE;
use crate::train::vit::Dense;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GanConfig {
    pub latent: usize,
    pub mapping_layers: usize,
    /// Generator channels at 4, 8, 16 and 32 pixels.
    pub g_channels: [usize; 4],
    /// Discriminator channels at 32, 16 and 8 pixels.
    pub d_channels: [usize; 3],
    /// The discriminator backbone's feature width.
    pub features: usize,
}

impl Default for GanConfig {
    fn default() -> Self {
        Self {
            latent: 64,
            mapping_layers: 2,
            g_channels: [128, 64, 32, 16],
            d_channels: [16, 32, 64],
            features: 128,
        }
    }
}

fn lrelu(x: &Tensor) -> Result<Tensor> {
    candle_nn::ops::leaky_relu(x, 0.2)
}

/// He-initialised dense layer.
fn dense(vb: &VarBuilder, name: &str, out: usize, inp: usize) -> Result<Dense> {
    Dense::new(&vb.pp(name), out, inp, (2.0 / inp as f64).sqrt())
}

/// A 3×3 convolution's weight `[out, 9·in]` and bias.
struct Conv3 {
    w: Tensor,
    b: Tensor,
}

impl Conv3 {
    fn new(vb: &VarBuilder, out: usize, inp: usize) -> Result<Self> {
        let std = (2.0 / (9 * inp) as f64).sqrt();
        Ok(Self {
            w: vb.get_with_hints(
                (out, 9 * inp),
                "weight",
                Init::Randn {
                    mean: 0.0,
                    stdev: std,
                },
            )?,
            b: vb.get_with_hints(out, "bias", Init::Const(0.0))?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        conv(x, &self.w, &self.b)
    }
}

/// Upsample, convolve, normalise, then the latent's per-channel scale and shift.
struct StyledBlock {
    conv: Conv3,
    style: Dense,
}

impl StyledBlock {
    fn forward(&self, x: &Tensor, w: &Tensor) -> Result<Tensor> {
        let x = pixel_norm(&self.conv.forward(&upsample2(x)?)?)?;
        let c = x.dim(D::Minus1)?;
        let style = self.style.forward(w)?;
        let (b, _) = style.dims2()?;
        let scale = (style.narrow(1, 0, c)? + 1.0)?.reshape((b, 1, 1, c))?;
        let shift = style.narrow(1, c, c)?.reshape((b, 1, 1, c))?;
        lrelu(&x.broadcast_mul(&scale)?.broadcast_add(&shift)?)
    }
}

pub struct Generator {
    mapping: Vec<Dense>,
    input: Dense,
    blocks: Vec<StyledBlock>,
    to_rgb: Dense,
    first: usize,
}

impl Generator {
    /// Variables under `g.`.
    pub fn new(vb: &VarBuilder, cfg: &GanConfig) -> Result<Self> {
        let vb = vb.pp("g");
        let l = cfg.latent;
        let mapping = (0..cfg.mapping_layers)
            .map(|i| dense(&vb, &format!("mapping.{i}"), l, l))
            .collect::<Result<_>>()?;
        let c = cfg.g_channels;
        let blocks = (0..3)
            .map(|i| {
                let vb = vb.pp(format!("block{i}"));
                Ok(StyledBlock {
                    conv: Conv3::new(&vb.pp("conv"), c[i + 1], c[i])?,
                    // Starts as the identity: scale 1, shift 0.
                    style: Dense::new(&vb.pp("style"), 2 * c[i + 1], l, 0.02)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            mapping,
            input: dense(&vb, "input", 16 * c[0], l)?,
            blocks,
            to_rgb: Dense::new(&vb.pp("to_rgb"), 3, c[3], (1.0 / c[3] as f64).sqrt())?,
            first: c[0],
        })
    }

    /// `z [b, latent]` → `w [b, latent]`.
    pub fn map(&self, z: &Tensor) -> Result<Tensor> {
        let mut w = pixel_norm(z)?;
        let last = self.mapping.len().saturating_sub(1);
        for (i, layer) in self.mapping.iter().enumerate() {
            w = layer.forward(&w)?;
            if i < last {
                w = lrelu(&w)?;
            }
        }
        Ok(w)
    }

    /// `w [b, latent]` → images `[b, 32, 32, 3]` in `[-1, 1]`.
    pub fn synthesize(&self, w: &Tensor) -> Result<Tensor> {
        let b = w.dim(0)?;
        let mut x = lrelu(&pixel_norm(
            &self.input.forward(w)?.reshape((b, 4, 4, self.first))?,
        )?)?;
        for block in &self.blocks {
            x = block.forward(&x, w)?;
        }
        let rgb = self.to_rgb.forward(&x)?.tanh()?;
        debug_assert_eq!(rgb.dims(), &[b, SIZE, SIZE, 3]);
        Ok(rgb)
    }
}

/// Discriminator layer names from the input up; FreezeD freezes a prefix of them.
pub const D_LAYERS: [&str; 6] = ["from_rgb", "conv0", "conv1", "conv2", "dense", "head"];

pub struct Discriminator {
    from_rgb: Dense,
    convs: Vec<Conv3>,
    dense: Dense,
    head: Dense,
}

impl Discriminator {
    /// Variables under `prefix.` (`d` for the GAN, another for the feature network), with
    /// `outputs` logits on the head.
    pub fn new(vb: &VarBuilder, prefix: &str, cfg: &GanConfig, outputs: usize) -> Result<Self> {
        let vb = vb.pp(prefix);
        let c = cfg.d_channels;
        let convs = [(c[0], c[0]), (c[1], c[0]), (c[2], c[1])]
            .iter()
            .enumerate()
            .map(|(i, &(out, inp))| Conv3::new(&vb.pp(format!("conv{i}")), out, inp))
            .collect::<Result<_>>()?;
        let flat = 16 * c[2];
        Ok(Self {
            from_rgb: dense(&vb, "from_rgb", c[0], 3)?,
            convs,
            dense: dense(&vb, "dense", cfg.features, flat)?,
            head: Dense::new(
                &vb.pp("head"),
                outputs,
                cfg.features,
                (1.0 / cfg.features as f64).sqrt(),
            )?,
        })
    }

    /// Images `[b, 32, 32, 3]` → backbone features `[b, features]` (GenDA's `d(x)`).
    pub fn backbone(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = lrelu(&self.from_rgb.forward(x)?)?;
        for conv in &self.convs {
            x = avg_pool2(&lrelu(&conv.forward(&x)?)?)?;
        }
        let b = x.dim(0)?;
        lrelu(&self.dense.forward(&x.reshape((b, ()))?)?)
    }

    pub fn head(&self, features: &Tensor) -> Result<Tensor> {
        self.head.forward(features)
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.head(&self.backbone(x)?)
    }
}

/// `log(1 + eˣ)`, stable for large |x|, from differentiable primitives.
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?
}

/// RGB bytes (`SIZE × SIZE × 3` each) → `[b, 32, 32, 3]` in `[-1, 1]`.
pub fn to_tensor(images: &[Vec<u8>]) -> Result<Tensor> {
    let data: Vec<f32> = images
        .iter()
        .flat_map(|im| im.iter().map(|&p| p as f32 / 127.5 - 1.0))
        .collect();
    Tensor::from_vec(
        data,
        (images.len(), SIZE, SIZE, 3),
        &candle_core::Device::Cpu,
    )
}

/// The inverse of [`to_tensor`].
pub fn to_images(x: &Tensor) -> Result<Vec<Vec<u8>>> {
    let b = x.dim(0)?;
    let values: Vec<f32> = ((x.clamp(-1f32, 1f32)? + 1.0)? * 127.5)?
        .flatten_all()?
        .to_vec1()?;
    Ok(values
        .chunks(values.len() / b.max(1))
        .map(|c| c.iter().map(|v| v.round() as u8).collect())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::VarMap;

    #[test]
    fn shapes_and_pixel_round_trip() -> anyhow::Result<()> {
        let cfg = GanConfig::default();
        let vars = VarMap::new();
        let vb = crate::train::seeded_builder(&vars, 1);
        let g = Generator::new(&vb, &cfg)?;
        let d = Discriminator::new(&vb, "d", &cfg, 1)?;
        let z = Tensor::randn(0f32, 1.0, (3, cfg.latent), &candle_core::Device::Cpu)?;
        let images = g.synthesize(&g.map(&z)?)?;
        assert_eq!(images.dims(), &[3, SIZE, SIZE, 3]);
        assert_eq!(d.backbone(&images)?.dims(), &[3, cfg.features]);
        assert_eq!(d.forward(&images)?.dims(), &[3, 1]);
        let bytes = to_images(&images)?;
        assert_eq!(bytes.len(), 3);
        let back = to_tensor(&bytes)?;
        let err = (back - images)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(err <= 1.0 / 127.5 + 1e-6, "{err}");
        Ok(())
    }

    #[test]
    fn softplus_matches_its_definition() -> Result<()> {
        let x = Tensor::new(&[-30f32, -1.0, 0.0, 2.0, 40.0], &candle_core::Device::Cpu)?;
        let got: Vec<f32> = softplus(&x)?.to_vec1()?;
        for (g, v) in got.iter().zip([-30f32, -1.0, 0.0, 2.0, 40.0]) {
            let want = if v > 20.0 { v } else { (1.0 + v.exp()).ln() };
            assert!((g - want).abs() < 1e-5, "{v}: {g} vs {want}");
        }
        Ok(())
    }
}
