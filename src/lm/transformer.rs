//! The decoder forward pass, written out here (rather than using candle-transformers' models) so
//! the KV cache is ours: it can be forked and rewound, see [`KvCache`].
//!
//! Weights are [`QMatMul`]s, so the same code runs GGUF quantised tensors and float tensors from
//! safetensors.

use candle_core::quantized::QMatMul;
use candle_core::{DType, Device, IndexOp, Module, Result, Tensor, D};

use super::config::{DecoderConfig, Family, RopeStyle};
use super::kv_cache::KvCache;

/// A projection with an optional bias (Qwen2 has biases on q/k/v).
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: QMatMul,
    pub bias: Option<Tensor>,
}

impl Linear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.weight.forward(x)?;
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RmsNorm {
    pub weight: Tensor,
    pub eps: f32,
}

impl RmsNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        candle_nn::ops::rms_norm(&x.contiguous()?, &self.weight, self.eps)
    }
}

#[derive(Debug, Clone)]
pub struct Block {
    pub attn_norm: RmsNorm,
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub o: Linear,
    /// Gemma 3 normalises queries and keys per head.
    pub qk_norm: Option<(RmsNorm, RmsNorm)>,
    /// Gemma 3 normalises the attention and feed-forward outputs before the residual add.
    pub post_attn_norm: Option<RmsNorm>,
    pub ffn_norm: RmsNorm,
    pub gate: Linear,
    pub up: Linear,
    pub down: Linear,
    pub post_ffn_norm: Option<RmsNorm>,
}

/// Precomputed rotary tables for one base frequency.
#[derive(Debug, Clone)]
struct Rope {
    cos: Tensor,
    sin: Tensor,
}

impl Rope {
    fn new(head_dim: usize, theta: f32, max_len: usize, device: &Device) -> Result<Self> {
        let inv: Vec<f32> = (0..head_dim)
            .step_by(2)
            .map(|i| 1f32 / theta.powf(i as f32 / head_dim as f32))
            .collect();
        let inv = Tensor::from_vec(inv, (1, head_dim / 2), device)?;
        let pos = Tensor::arange(0u32, max_len as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((max_len, 1))?;
        let freqs = pos.matmul(&inv)?;
        Ok(Self {
            cos: freqs.cos()?,
            sin: freqs.sin()?,
        })
    }

    fn apply(&self, x: &Tensor, pos: usize, style: RopeStyle) -> Result<Tensor> {
        let seq = x.dim(2)?;
        let cos = self.cos.narrow(0, pos, seq)?;
        let sin = self.sin.narrow(0, pos, seq)?;
        let x = x.contiguous()?;
        match style {
            RopeStyle::Interleaved => candle_nn::rotary_emb::rope_i(&x, &cos, &sin),
            RopeStyle::Halves => candle_nn::rotary_emb::rope(&x, &cos, &sin),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Transformer {
    pub config: DecoderConfig,
    /// `[vocab, hidden]`, f32 (looked up by index).
    pub embeddings: Tensor,
    pub blocks: Vec<Block>,
    pub final_norm: RmsNorm,
    pub lm_head: QMatMul,
    global_rope: Rope,
    local_rope: Option<Rope>,
    device: Device,
}

impl Transformer {
    pub fn new(
        config: DecoderConfig,
        embeddings: Tensor,
        blocks: Vec<Block>,
        final_norm: RmsNorm,
        lm_head: QMatMul,
        device: &Device,
    ) -> Result<Self> {
        let max_len = config.context_length;
        let global_rope = Rope::new(config.head_dim, config.rope_theta, max_len, device)?;
        let local_rope = match config.sliding_window {
            Some(w) => Some(Rope::new(
                config.head_dim,
                w.local_rope_theta,
                max_len,
                device,
            )?),
            None => None,
        };
        Ok(Self {
            config,
            embeddings,
            blocks,
            final_norm,
            lm_head,
            global_rope,
            local_rope,
            device: device.clone(),
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.blocks.len())
    }

    /// Runs `tokens` after the positions already in `cache` and appends them to it.
    /// Returns f32 logits: `[vocab]` for the last token, or `[tokens, vocab]` with `all_positions`.
    pub fn forward(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        all_positions: bool,
    ) -> Result<Tensor> {
        let cfg = &self.config;
        let seq = tokens.len();
        let pos = cache.len();
        if seq == 0 {
            candle_core::bail!("forward called with no tokens");
        }
        if pos + seq > cfg.context_length {
            candle_core::bail!(
                "sequence of {} tokens exceeds the context length {}",
                pos + seq,
                cfg.context_length
            );
        }
        let ids = Tensor::new(tokens, &self.device)?;
        let mut x = self.embeddings.index_select(&ids, 0)?.unsqueeze(0)?;
        if cfg.family == Family::Gemma3 {
            x = (x * (cfg.hidden_size as f64).sqrt())?;
        }
        for (i, block) in self.blocks.iter().enumerate() {
            let local = cfg.is_local_layer(i);
            let mask = self.mask(seq, pos, local)?;
            let rope = match (&self.local_rope, local) {
                (Some(r), true) => r,
                _ => &self.global_rope,
            };
            x = self.block_forward(block, i, &x, pos, mask.as_ref(), rope, cache)?;
        }
        cache.advance(seq);
        let x = if all_positions {
            x.i(0)?
        } else {
            x.i((0, seq - 1))?.unsqueeze(0)?
        };
        let x = self.final_norm.forward(&x)?;
        let logits = self.lm_head.forward(&x)?.to_dtype(DType::F32)?;
        if all_positions {
            Ok(logits)
        } else {
            logits.squeeze(0)
        }
    }

    /// Additive mask `[seq, pos + seq]` (0 or -inf); `None` when nothing needs masking.
    fn mask(&self, seq: usize, pos: usize, local: bool) -> Result<Option<Tensor>> {
        let window = self.config.sliding_window.filter(|_| local).map(|w| w.size);
        let total = pos + seq;
        if seq == 1 && window.is_none_or(|w| total <= w) {
            return Ok(None);
        }
        let mut data = Vec::with_capacity(seq * total);
        for i in 0..seq {
            let q = pos + i;
            for k in 0..total {
                let hidden = k > q || window.is_some_and(|w| q - k.min(q) >= w);
                data.push(if hidden { f32::NEG_INFINITY } else { 0.0 });
            }
        }
        Tensor::from_vec(data, (seq, total), &self.device).map(Some)
    }

    #[allow(clippy::too_many_arguments)]
    fn block_forward(
        &self,
        b: &Block,
        layer: usize,
        x: &Tensor,
        pos: usize,
        mask: Option<&Tensor>,
        rope: &Rope,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        let cfg = &self.config;
        let (_, seq, _) = x.dims3()?;
        let (nh, nkv, hd) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);

        let h = b.attn_norm.forward(x)?;
        let q =
            b.q.forward(&h)?
                .reshape((1, seq, nh, hd))?
                .transpose(1, 2)?;
        let k =
            b.k.forward(&h)?
                .reshape((1, seq, nkv, hd))?
                .transpose(1, 2)?;
        let v =
            b.v.forward(&h)?
                .reshape((1, seq, nkv, hd))?
                .transpose(1, 2)?
                .contiguous()?;
        let (q, k) = match &b.qk_norm {
            Some((qn, kn)) => (qn.forward(&q)?, kn.forward(&k)?),
            None => (q, k),
        };
        let q = rope.apply(&q, pos, cfg.rope_style)?;
        let k = rope.apply(&k, pos, cfg.rope_style)?;
        let (k, v) = cache.append(layer, k, v)?;

        // Grouped-query attention: view the query heads as [kv_heads, group * seq] so every
        // group shares its key/value head without copying K and V.
        let group = nh / nkv;
        let total = k.dim(2)?;
        let q = q.reshape((1, nkv, group * seq, hd))?;
        let att = (q.matmul(&k.t()?)? * cfg.attention_scale)?;
        let att = match mask {
            Some(m) => att
                .reshape((1, nkv, group, seq, total))?
                .broadcast_add(m)?
                .reshape((1, nkv, group * seq, total))?,
            None => att,
        };
        let att = candle_nn::ops::softmax_last_dim(&att)?;
        let y = att.matmul(&v)?.reshape((1, nh, seq, hd))?;
        let y = y.transpose(1, 2)?.reshape((1, seq, nh * hd))?;
        let mut y = b.o.forward(&y)?;
        if let Some(n) = &b.post_attn_norm {
            y = n.forward(&y)?;
        }
        let x = (x + y)?;

        let h = b.ffn_norm.forward(&x)?;
        let gate = b.gate.forward(&h)?;
        let gate = match cfg.family {
            Family::Gemma3 => gate.gelu()?,
            Family::Llama | Family::Qwen2 => candle_nn::ops::silu(&gate)?,
        };
        let mut y = b.down.forward(&(gate * b.up.forward(&h)?)?)?;
        if let Some(n) = &b.post_ffn_norm {
            y = n.forward(&y)?;
        }
        x + y
    }
}

/// Log-softmax over the last dimension.
pub fn log_softmax(logits: &Tensor) -> Result<Tensor> {
    candle_nn::ops::log_softmax(logits, D::Minus1)
}
