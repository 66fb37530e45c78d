//! A trainable llama decoder whose variables carry the Hugging Face names
//! (`model.layers.0.self_attn.q_proj.weight`, …), so a saved VarMap is a checkpoint that
//! candle-transformers, transformers and this app's runtime load as it is.

use candle_core::{DType, Device, Result, Tensor, D};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use super::nn::{attention, linear, merge_heads, rms_norm, split_heads};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LlamaShape {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub max_positions: usize,
    pub rope_theta: f64,
    pub rms_norm_eps: f64,
}

impl LlamaShape {
    /// config.json as transformers writes it for `LlamaForCausalLM`.
    pub fn hf_config(&self, bos: u32, eos: u32) -> serde_json::Value {
        serde_json::json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_heads,
            "max_position_embeddings": self.max_positions,
            "rope_theta": self.rope_theta,
            "rms_norm_eps": self.rms_norm_eps,
            "hidden_act": "silu",
            "tie_word_embeddings": false,
            "bos_token_id": bos,
            "eos_token_id": eos,
            "torch_dtype": "float32",
        })
    }

    pub fn parameters(&self) -> usize {
        let h = self.hidden_size;
        let layer = 4 * h * h + 3 * h * self.intermediate_size + 2 * h;
        2 * self.vocab_size * h + self.num_layers * layer + h
    }
}

struct Layer {
    attn_norm: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    o: Tensor,
    ffn_norm: Tensor,
    gate: Tensor,
    up: Tensor,
    down: Tensor,
}

pub struct TrainLlama {
    pub shape: LlamaShape,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Tensor,
    cos: Tensor,
    sin: Tensor,
}

impl TrainLlama {
    /// Variables are created in `vb` (a VarMap's builder) with GPT-2 style initialisation.
    pub fn new(shape: LlamaShape, vb: VarBuilder) -> Result<Self> {
        let h = shape.hidden_size;
        let i = shape.intermediate_size;
        let std = 0.02;
        // Residual projections shrink with depth, as in GPT-2.
        let out_std = std / (2.0 * shape.num_layers as f64).sqrt();
        let w = |vb: &VarBuilder, out: usize, inp: usize, name: &str, s: f64| {
            vb.get_with_hints(
                (out, inp),
                name,
                Init::Randn {
                    mean: 0.0,
                    stdev: s,
                },
            )
        };
        let ones = |vb: &VarBuilder, name: &str| vb.get_with_hints(h, name, Init::Const(1.0));
        let m = vb.pp("model");
        let mut layers = Vec::with_capacity(shape.num_layers);
        for l in 0..shape.num_layers {
            let p = m.pp(format!("layers.{l}"));
            let a = p.pp("self_attn");
            let f = p.pp("mlp");
            layers.push(Layer {
                attn_norm: ones(&p, "input_layernorm.weight")?,
                q: w(&a, h, h, "q_proj.weight", std)?,
                k: w(&a, h, h, "k_proj.weight", std)?,
                v: w(&a, h, h, "v_proj.weight", std)?,
                o: w(&a, h, h, "o_proj.weight", out_std)?,
                ffn_norm: ones(&p, "post_attention_layernorm.weight")?,
                gate: w(&f, i, h, "gate_proj.weight", std)?,
                up: w(&f, i, h, "up_proj.weight", std)?,
                down: w(&f, h, i, "down_proj.weight", out_std)?,
            });
        }
        let (cos, sin) = rope_tables(&shape, vb.device())?;
        Ok(Self {
            embed: w(&m, shape.vocab_size, h, "embed_tokens.weight", std)?,
            layers,
            norm: ones(&m, "norm.weight")?,
            lm_head: w(&vb, shape.vocab_size, h, "lm_head.weight", std)?,
            cos,
            sin,
            shape,
        })
    }

    /// `ids [batch, time]` (u32) → logits `[batch, time, vocab]`, causal.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        self.forward_tapped(ids, &mut |_, _| Ok(()))
    }

    /// The forward pass, showing `tap` the input of every attention and MLP matrix (by the
    /// weight's checkpoint name) — calibration data for activation-aware delta pruning.
    pub fn forward_tapped(
        &self,
        ids: &Tensor,
        tap: &mut dyn FnMut(&str, &Tensor) -> Result<()>,
    ) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let heads = self.shape.num_heads;
        let eps = self.shape.rms_norm_eps;
        let mut x = self.embed.index_select(&ids.flatten_all()?, 0)?.reshape((
            b,
            t,
            self.shape.hidden_size,
        ))?;
        let mask = causal_mask(t, ids.device())?;
        let cos = self.cos.narrow(0, 0, t)?;
        let sin = self.sin.narrow(0, 0, t)?;
        for (i, l) in self.layers.iter().enumerate() {
            let mut lin = |x: &Tensor, w: &Tensor, name: &str| -> Result<Tensor> {
                tap(&format!("model.layers.{i}.{name}.weight"), x)?;
                linear(x, w, None)
            };
            let hn = rms_norm(&x, &l.attn_norm, eps)?;
            let q = rope(
                &split_heads(&lin(&hn, &l.q, "self_attn.q_proj")?, heads)?,
                &cos,
                &sin,
            )?;
            let k = rope(
                &split_heads(&lin(&hn, &l.k, "self_attn.k_proj")?, heads)?,
                &cos,
                &sin,
            )?;
            let v = split_heads(&lin(&hn, &l.v, "self_attn.v_proj")?, heads)?;
            let a = merge_heads(&attention(&q, &k, &v, Some(&mask))?)?;
            x = (x + lin(&a, &l.o, "self_attn.o_proj")?)?;
            let hn = rms_norm(&x, &l.ffn_norm, eps)?;
            let g = lin(&hn, &l.gate, "mlp.gate_proj")?.silu()?;
            let u = lin(&hn, &l.up, "mlp.up_proj")?;
            x = (x + lin(&(g * u)?, &l.down, "mlp.down_proj")?)?;
        }
        linear(&rms_norm(&x, &self.norm, eps)?, &self.lm_head, None)
    }

    /// A checkpoint folder written by [`LlamaShape::hf_config`] and a saved VarMap.
    pub fn load(dir: &std::path::Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        let c: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not valid JSON", path.display()))?;
        let num = |k: &str| {
            c.get(k)
                .and_then(|v| v.as_f64())
                .with_context(|| format!("{}: no number {k:?}", path.display()))
        };
        let shape = LlamaShape {
            vocab_size: num("vocab_size")? as usize,
            hidden_size: num("hidden_size")? as usize,
            intermediate_size: num("intermediate_size")? as usize,
            num_layers: num("num_hidden_layers")? as usize,
            num_heads: num("num_attention_heads")? as usize,
            max_positions: num("max_position_embeddings")? as usize,
            rope_theta: num("rope_theta")?,
            rms_norm_eps: num("rms_norm_eps")?,
        };
        let varmap = candle_nn::VarMap::new();
        let model = Self::new(shape, crate::train::seeded_builder(&varmap, 0))?;
        let missing = crate::train::load_into(&varmap, &dir.join("model.safetensors"), "")?;
        anyhow::ensure!(
            missing.is_empty(),
            "{}: checkpoint lacks {}",
            dir.display(),
            missing.join(", ")
        );
        Ok(model)
    }
}

fn causal_mask(t: usize, dev: &Device) -> Result<Tensor> {
    let m: Vec<f32> = (0..t * t)
        .map(|k| {
            if k % t > k / t {
                f32::NEG_INFINITY
            } else {
                0.0
            }
        })
        .collect();
    Tensor::from_vec(m, (t, t), dev)
}

/// cos/sin tables `[max_positions, head_dim]` in the rotate-half layout of HF llama.
fn rope_tables(shape: &LlamaShape, dev: &Device) -> Result<(Tensor, Tensor)> {
    let d = shape.hidden_size / shape.num_heads;
    let inv: Vec<f32> = (0..d / 2)
        .map(|k| 1.0 / shape.rope_theta.powf(2.0 * k as f64 / d as f64) as f32)
        .collect();
    let inv = Tensor::from_vec(inv, (1, d / 2), dev)?;
    let pos = Tensor::arange(0u32, shape.max_positions as u32, dev)?
        .to_dtype(DType::F32)?
        .reshape((shape.max_positions, 1))?;
    let freqs = pos.broadcast_mul(&inv)?;
    let freqs = Tensor::cat(&[&freqs, &freqs], 1)?;
    Ok((freqs.cos()?, freqs.sin()?))
}

/// `x·cos + rotate_half(x)·sin` over `[batch, heads, time, head_dim]`.
fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let x1 = x.narrow(D::Minus1, 0, d / 2)?;
    let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
    let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    x.broadcast_mul(cos)? + rotated.broadcast_mul(sin)?
}
