//! A trainable ViT image classifier with the Hugging Face `ViTForImageClassification` names
//! (`vit.encoder.layer.0.attention.attention.query.weight`, …), loadable by
//! candle-transformers' `vit::Model`.

use candle_core::{Result, Tensor, D};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use super::nn::{attention, layer_norm, linear, merge_heads, split_heads};
use super::site::Site;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VitShape {
    pub image_size: usize,
    pub patch_size: usize,
    pub channels: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub intermediate_size: usize,
    pub num_labels: usize,
}

pub const VIT_LN_EPS: f64 = 1e-12;

impl VitShape {
    pub fn num_patches(&self) -> usize {
        (self.image_size / self.patch_size).pow(2)
    }

    /// The shape and label names a [`Self::hf_config`] describes; `Err` names the missing field.
    pub fn from_hf_config(
        cfg: &serde_json::Value,
    ) -> std::result::Result<(Self, Vec<String>), String> {
        let field = |k: &str| {
            cfg[k]
                .as_u64()
                .map(|v| v as usize)
                .ok_or_else(|| format!("no integer `{k}`"))
        };
        let labels = super::model_folder::label_names(cfg)?;
        let shape = Self {
            image_size: field("image_size")?,
            patch_size: field("patch_size")?,
            channels: field("num_channels")?,
            hidden_size: field("hidden_size")?,
            num_layers: field("num_hidden_layers")?,
            num_heads: field("num_attention_heads")?,
            intermediate_size: field("intermediate_size")?,
            num_labels: labels.len(),
        };
        if shape.patch_size == 0
            || !shape.image_size.is_multiple_of(shape.patch_size)
            || shape.num_heads == 0
            || !shape.hidden_size.is_multiple_of(shape.num_heads)
        {
            return Err(format!("inconsistent sizes {shape:?}"));
        }
        Ok((shape, labels))
    }

    pub fn hf_config(&self, labels: &[String]) -> serde_json::Value {
        let id2label: serde_json::Map<_, _> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (i.to_string(), serde_json::Value::from(l.clone())))
            .collect();
        let label2id: serde_json::Map<_, _> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.clone(), serde_json::Value::from(i)))
            .collect();
        serde_json::json!({
            "architectures": ["ViTForImageClassification"],
            "model_type": "vit",
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "intermediate_size": self.intermediate_size,
            "hidden_act": "gelu",
            "layer_norm_eps": VIT_LN_EPS,
            "image_size": self.image_size,
            "patch_size": self.patch_size,
            "num_channels": self.channels,
            "qkv_bias": true,
            "id2label": id2label,
            "label2id": label2id,
            "torch_dtype": "float32",
        })
    }
}

pub(crate) struct Dense {
    pub w: Tensor,
    pub b: Tensor,
}

impl Dense {
    pub fn new(vb: &VarBuilder, out: usize, inp: usize, std: f64) -> Result<Self> {
        Ok(Self {
            w: vb.get_with_hints(
                (out, inp),
                "weight",
                Init::Randn {
                    mean: 0.0,
                    stdev: std,
                },
            )?,
            b: vb.get_with_hints(out, "bias", Init::Const(0.0))?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        linear(x, &self.w, Some(&self.b))
    }
}

/// The BERT/ViT feed-forward block: `intermediate.dense`, GELU (erf), `output.dense`.
pub(crate) struct FeedForward {
    pub up: Dense,
    pub down: Dense,
}

impl FeedForward {
    /// `layer` is the encoder layer's builder (`….layer.3`).
    pub fn new(layer: &VarBuilder, width: usize, inner: usize, std: f64) -> Result<Self> {
        Ok(Self {
            up: Dense::new(&layer.pp("intermediate").pp("dense"), inner, width, std)?,
            down: Dense::new(&layer.pp("output").pp("dense"), width, inner, std)?,
        })
    }
}

pub(crate) struct Norm {
    pub w: Tensor,
    pub b: Tensor,
    pub eps: f64,
}

impl Norm {
    pub fn new(vb: &VarBuilder, width: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            w: vb.get_with_hints(width, "weight", Init::Const(1.0))?,
            b: vb.get_with_hints(width, "bias", Init::Const(0.0))?,
            eps,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        layer_norm(x, &self.w, &self.b, self.eps)
    }
}

struct Layer {
    norm_before: Norm,
    q: Dense,
    k: Dense,
    v: Dense,
    o: Dense,
    norm_after: Norm,
    ffn: FeedForward,
}

pub struct TrainVit {
    pub shape: VitShape,
    cls: Tensor,
    pos: Tensor,
    patch: Dense,
    layers: Vec<Layer>,
    norm: Norm,
    classifier: Dense,
}

impl TrainVit {
    pub fn new(shape: VitShape, vb: VarBuilder) -> Result<Self> {
        let h = shape.hidden_size;
        let std = 0.02;
        let patch_in = shape.channels * shape.patch_size * shape.patch_size;
        let e = vb.pp("vit").pp("embeddings");
        let p = e.pp("patch_embeddings").pp("projection");
        // Stored as the conv kernel `[h, c, p, p]`; used as a matrix over flattened patches.
        let patch_w = p.get_with_hints(
            (h, shape.channels, shape.patch_size, shape.patch_size),
            "weight",
            Init::Randn {
                mean: 0.0,
                stdev: std,
            },
        )?;
        let patch = Dense {
            w: patch_w.reshape((h, patch_in))?,
            b: p.get_with_hints(h, "bias", Init::Const(0.0))?,
        };
        let randn = Init::Randn {
            mean: 0.0,
            stdev: std,
        };
        let cls = e.get_with_hints((1, 1, h), "cls_token", randn)?;
        let pos = e.get_with_hints(
            (1, shape.num_patches() + 1, h),
            "position_embeddings",
            randn,
        )?;
        let enc = vb.pp("vit").pp("encoder").pp("layer");
        let mut layers = Vec::with_capacity(shape.num_layers);
        for l in 0..shape.num_layers {
            let lv = enc.pp(l);
            let att = lv.pp("attention");
            let s = att.pp("attention");
            layers.push(Layer {
                norm_before: Norm::new(&lv.pp("layernorm_before"), h, VIT_LN_EPS)?,
                q: Dense::new(&s.pp("query"), h, h, std)?,
                k: Dense::new(&s.pp("key"), h, h, std)?,
                v: Dense::new(&s.pp("value"), h, h, std)?,
                o: Dense::new(&att.pp("output").pp("dense"), h, h, std)?,
                norm_after: Norm::new(&lv.pp("layernorm_after"), h, VIT_LN_EPS)?,
                ffn: FeedForward::new(&lv, h, shape.intermediate_size, std)?,
            });
        }
        Ok(Self {
            cls,
            pos,
            patch,
            layers,
            norm: Norm::new(&vb.pp("vit").pp("layernorm"), h, VIT_LN_EPS)?,
            classifier: Dense::new(&vb.pp("classifier"), shape.num_labels, h, std)?,
            shape,
        })
    }

    /// `pixels [batch, channels, size, size]` → logits `[batch, labels]`.
    pub fn forward(&self, pixels: &Tensor) -> Result<Tensor> {
        self.forward_tapped(pixels, &mut |_, _| Ok(()))
    }

    /// [`Self::forward`], showing `tap` every intermediate `[batch, tokens, neurons]` activation
    /// (the fusion lab's activation costs come from these).
    pub fn forward_tapped(
        &self,
        pixels: &Tensor,
        tap: &mut dyn FnMut(Site, &Tensor) -> Result<()>,
    ) -> Result<Tensor> {
        let s = self.shape;
        let (b, c, _, _) = pixels.dims4()?;
        let g = s.image_size / s.patch_size;
        let patches = pixels
            .reshape((b, c, g, s.patch_size, g, s.patch_size))?
            .permute((0, 2, 4, 1, 3, 5))?
            .reshape((b, g * g, c * s.patch_size * s.patch_size))?;
        let x = self.patch.forward(&patches)?;
        let cls = self.cls.broadcast_as((b, 1, s.hidden_size))?;
        let mut x = Tensor::cat(&[&cls, &x], 1)?.broadcast_add(&self.pos)?;
        tap(Site::Embeddings, &x)?;
        for (i, l) in self.layers.iter().enumerate() {
            let hn = l.norm_before.forward(&x)?;
            let (q, k, v) = (l.q.forward(&hn)?, l.k.forward(&hn)?, l.v.forward(&hn)?);
            tap(Site::Query(i), &q)?;
            tap(Site::Key(i), &k)?;
            tap(Site::Value(i), &v)?;
            let (q, k, v) = (
                split_heads(&q, s.num_heads)?,
                split_heads(&k, s.num_heads)?,
                split_heads(&v, s.num_heads)?,
            );
            let att = l.o.forward(&merge_heads(&attention(&q, &k, &v, None)?)?)?;
            tap(Site::AttentionOut(i), &att)?;
            x = (x + att)?;
            tap(Site::AfterAttention(i), &x)?;
            let up = l.ffn.up.forward(&l.norm_after.forward(&x)?)?;
            tap(Site::Intermediate(i), &up)?;
            let down = l.ffn.down.forward(&up.gelu_erf()?)?;
            tap(Site::FeedForwardOut(i), &down)?;
            x = (x + down)?;
            tap(Site::AfterFeedForward(i), &x)?;
        }
        let first = x.narrow(1, 0, 1)?.squeeze(1)?;
        self.classifier.forward(&self.norm.forward(&first)?)
    }
}

/// Mean cross-entropy of `logits [n, labels]` against `labels [n]` (u32).
pub fn classification_loss(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let picked = logp.gather(&labels.unsqueeze(1)?, 1)?;
    picked.mean_all()?.neg()
}
