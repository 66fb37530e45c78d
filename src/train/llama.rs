//! A trainable llama decoder whose variables carry the Hugging Face names
//! (`model.layers.0.self_attn.q_proj.weight`, …), so a saved VarMap is a checkpoint that
//! candle-transformers, transformers and this app's runtime load as it is.

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use super::nn::{
    causal_attention, linear, merge_heads, rms_norm, rope, split_heads, target_logprobs,
};
use super::site::Site;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LlamaShape {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    /// Grouped-query attention: each key/value head serves `num_heads / num_kv_heads` queries.
    pub num_kv_heads: usize,
    pub max_positions: usize,
    pub rope_theta: f64,
    pub rms_norm_eps: f64,
    /// The output head is the embedding matrix (no `lm_head.weight`).
    pub tie_embeddings: bool,
    /// Biases on the query, key and value projections: Qwen2 (`model_type` qwen2).
    #[serde(default)]
    pub qkv_bias: bool,
}

impl LlamaShape {
    /// config.json as transformers writes it for `LlamaForCausalLM` (`Qwen2ForCausalLM` with
    /// q/k/v biases).
    pub fn hf_config(&self, bos: u32, eos: u32) -> serde_json::Value {
        let (architecture, model_type) = if self.qkv_bias {
            ("Qwen2ForCausalLM", "qwen2")
        } else {
            ("LlamaForCausalLM", "llama")
        };
        serde_json::json!({
            "architectures": [architecture],
            "model_type": model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "max_position_embeddings": self.max_positions,
            "rope_theta": self.rope_theta,
            "rms_norm_eps": self.rms_norm_eps,
            "hidden_act": "silu",
            "tie_word_embeddings": self.tie_embeddings,
            "bos_token_id": bos,
            "eos_token_id": eos,
            "torch_dtype": "float32",
        })
    }

    pub fn parameters(&self) -> usize {
        let h = self.hidden_size;
        let kv = self.kv_width();
        let biases = if self.qkv_bias { h + 2 * kv } else { 0 };
        let layer = 2 * h * h + 2 * h * kv + 3 * h * self.intermediate_size + 2 * h + biases;
        let heads = if self.tie_embeddings { 1 } else { 2 };
        heads * self.vocab_size * h + self.num_layers * layer + h
    }

    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }

    /// Rows of the key and value projections.
    pub fn kv_width(&self) -> usize {
        self.num_kv_heads * self.head_dim()
    }

    /// The shape a config.json of model_type llama, mistral or qwen2 describes (`Err` names
    /// the missing field).
    pub fn from_hf_config(c: &serde_json::Value) -> std::result::Result<Self, String> {
        let num = |k: &str| {
            c.get(k)
                .and_then(|v| v.as_f64())
                .ok_or_else(|| format!("no number {k:?}"))
        };
        let num_heads = num("num_attention_heads")? as usize;
        Ok(Self {
            vocab_size: num("vocab_size")? as usize,
            hidden_size: num("hidden_size")? as usize,
            intermediate_size: num("intermediate_size")? as usize,
            num_layers: num("num_hidden_layers")? as usize,
            num_heads,
            num_kv_heads: num("num_key_value_heads").map_or(num_heads, |v| v as usize),
            max_positions: num("max_position_embeddings")? as usize,
            rope_theta: num("rope_theta").unwrap_or(10_000.0),
            rms_norm_eps: num("rms_norm_eps")?,
            tie_embeddings: c["tie_word_embeddings"].as_bool().unwrap_or(false),
            qkv_bias: c["model_type"] == "qwen2",
        })
    }
}

/// One linear map `x · Wᵀ (+ b)`, with an optional low-rank adapter `s · (x · Aᵀ) · Bᵀ`
/// beside it.
struct Proj {
    w: Tensor,
    b: Option<Tensor>,
    lora: Option<Lora>,
}

/// A LoRA adapter (Hu et al.): A `[rank, in]` starts random, B `[out, rank]` at zero, so the
/// adapted model starts as the base one.
struct Lora {
    a: Tensor,
    b: Tensor,
    scale: f64,
    dropout: f32,
}

impl Proj {
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let y = linear(x, &self.w, self.b.as_ref())?;
        let Some(l) = &self.lora else { return Ok(y) };
        let x = if train && l.dropout > 0.0 {
            candle_nn::ops::dropout(x, l.dropout)?
        } else {
            x.clone()
        };
        y + (linear(&linear(&x, &l.a, None)?, &l.b, None)? * l.scale)?
    }

    /// `W + s · B · A`: the adapter folded into the weight.
    fn merged(&self) -> Result<Tensor> {
        match &self.lora {
            None => Ok(self.w.clone()),
            Some(l) => self.w.add(&(l.b.matmul(&l.a)? * l.scale)?),
        }
    }
}

struct Layer {
    attn_norm: Tensor,
    q: Proj,
    k: Proj,
    v: Proj,
    o: Proj,
    ffn_norm: Tensor,
    gate: Proj,
    up: Proj,
    down: Proj,
}

impl Layer {
    /// The projections with their checkpoint names (relative to the layer).
    fn projections(&self) -> [(&'static str, &Proj); 7] {
        [
            ("self_attn.q_proj", &self.q),
            ("self_attn.k_proj", &self.k),
            ("self_attn.v_proj", &self.v),
            ("self_attn.o_proj", &self.o),
            ("mlp.gate_proj", &self.gate),
            ("mlp.up_proj", &self.up),
            ("mlp.down_proj", &self.down),
        ]
    }

    fn projections_mut(&mut self) -> [(&'static str, &mut Proj); 7] {
        [
            ("self_attn.q_proj", &mut self.q),
            ("self_attn.k_proj", &mut self.k),
            ("self_attn.v_proj", &mut self.v),
            ("self_attn.o_proj", &mut self.o),
            ("mlp.gate_proj", &mut self.gate),
            ("mlp.up_proj", &mut self.up),
            ("mlp.down_proj", &mut self.down),
        ]
    }
}

/// Where LoRA adapters go and how large they are (PEFT's names and defaults: rank 8, α 16,
/// dropout 0.05).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f64,
    pub dropout: f32,
    /// Projection names: `q_proj`, `k_proj`, `v_proj`, `o_proj`, `gate_proj`, `up_proj`,
    /// `down_proj`.
    pub targets: Vec<String>,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            rank: 8,
            alpha: 16.0,
            dropout: 0.05,
            targets: ["q_proj", "k_proj", "v_proj", "o_proj"]
                .map(String::from)
                .to_vec(),
        }
    }
}

pub struct TrainLlama {
    pub shape: LlamaShape,
    embed: Tensor,
    layers: Vec<Layer>,
    norm: Tensor,
    /// `None` when tied to the embedding.
    lm_head: Option<Tensor>,
    /// Learnable embeddings put before every sequence (prompt tuning), `[n, hidden]`.
    soft_prompt: Option<Tensor>,
    /// Dropout in the adapters is on (training) or off (evaluation, export).
    pub train: bool,
    cos: Tensor,
    sin: Tensor,
}

impl TrainLlama {
    /// Variables are created in `vb` (a VarMap's builder) with GPT-2 style initialisation;
    /// variables the VarMap already holds (a pretrained checkpoint) are used as they are.
    pub fn new(shape: LlamaShape, vb: VarBuilder) -> Result<Self> {
        let h = shape.hidden_size;
        let i = shape.intermediate_size;
        let kv = shape.kv_width();
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
        let proj = |vb: &VarBuilder, out: usize, inp: usize, name: &str, s: f64| {
            Ok::<_, candle_core::Error>(Proj {
                w: w(vb, out, inp, &format!("{name}.weight"), s)?,
                b: None,
                lora: None,
            })
        };
        // Qwen2's q/k/v biases start at zero, as in transformers.
        let biased = |vb: &VarBuilder, out: usize, name: &str| {
            let mut p = proj(vb, out, h, name, std)?;
            if shape.qkv_bias {
                p.b = Some(vb.get_with_hints(out, &format!("{name}.bias"), Init::Const(0.0))?);
            }
            Ok::<_, candle_core::Error>(p)
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
                q: biased(&a, h, "q_proj")?,
                k: biased(&a, kv, "k_proj")?,
                v: biased(&a, kv, "v_proj")?,
                o: proj(&a, h, h, "o_proj", out_std)?,
                ffn_norm: ones(&p, "post_attention_layernorm.weight")?,
                gate: proj(&f, i, h, "gate_proj", std)?,
                up: proj(&f, i, h, "up_proj", std)?,
                down: proj(&f, h, i, "down_proj", out_std)?,
            });
        }
        let (cos, sin) = rope_tables(&shape, vb.device())?;
        let lm_head = if shape.tie_embeddings {
            None
        } else {
            Some(w(&vb, shape.vocab_size, h, "lm_head.weight", std)?)
        };
        Ok(Self {
            embed: w(&m, shape.vocab_size, h, "embed_tokens.weight", std)?,
            layers,
            norm: ones(&m, "norm.weight")?,
            lm_head,
            soft_prompt: None,
            train: true,
            cos,
            sin,
            shape,
        })
    }

    /// Stops gradients at every base weight (LoRA or prompt tuning train only what they add).
    pub fn freeze(&mut self) {
        self.embed = self.embed.detach();
        self.norm = self.norm.detach();
        self.lm_head = self.lm_head.as_ref().map(Tensor::detach);
        for l in &mut self.layers {
            l.attn_norm = l.attn_norm.detach();
            l.ffn_norm = l.ffn_norm.detach();
            for (_, p) in l.projections_mut() {
                p.w = p.w.detach();
                p.b = p.b.as_ref().map(Tensor::detach);
            }
        }
    }

    /// Adds LoRA adapters, as variables of `vb` (`…q_proj.lora_A.weight`, PEFT's names), to
    /// every projection `config.targets` names. A is Kaiming-uniform (as in PEFT), B zero.
    pub fn add_lora(&mut self, config: &LoraConfig, vb: VarBuilder) -> Result<()> {
        let scale = config.alpha / config.rank as f64;
        let mut added = 0;
        for (i, l) in self.layers.iter_mut().enumerate() {
            for (name, p) in l.projections_mut() {
                let short = name.rsplit('.').next().unwrap_or(name);
                if !config.targets.iter().any(|t| t == short) {
                    continue;
                }
                let (out, inp) = p.w.dims2()?;
                let pv = vb.pp(format!("model.layers.{i}.{name}"));
                let bound = 1.0 / (inp as f64).sqrt();
                let a = pv.get_with_hints(
                    (config.rank, inp),
                    "lora_A.weight",
                    Init::Uniform {
                        lo: -bound,
                        up: bound,
                    },
                )?;
                let b = pv.get_with_hints((out, config.rank), "lora_B.weight", Init::Const(0.0))?;
                p.lora = Some(Lora {
                    a,
                    b,
                    scale,
                    dropout: config.dropout,
                });
                added += 1;
            }
        }
        if added == 0 {
            candle_core::bail!("LoRA targets {:?} name no projection", config.targets);
        }
        Ok(())
    }

    /// Prepends `len` learnable embeddings (the `soft_prompt` variable of `vb`), initialised
    /// from the embeddings of `init` tokens (cycled), as prompt tuning does.
    pub fn add_soft_prompt(&mut self, len: usize, init: &[u32], vb: VarBuilder) -> Result<()> {
        let h = self.shape.hidden_size;
        let ids: Vec<u32> = init.iter().copied().cycle().take(len).collect();
        let rows = if ids.len() == len {
            self.embed
                .index_select(&Tensor::new(ids.as_slice(), self.embed.device())?, 0)?
                .detach()
        } else {
            Tensor::zeros((len, h), DType::F32, self.embed.device())?
        };
        self.learn_soft_prompt(&rows, vb)
    }

    /// Prepends learnable embeddings (the `soft_prompt` variable of `vb`) that start as `rows`
    /// `[n, hidden]`.
    pub fn learn_soft_prompt(&mut self, rows: &Tensor, vb: VarBuilder) -> Result<()> {
        let (len, h) = self.prompt_dims(rows)?;
        let p = vb.get_with_hints((len, h), "soft_prompt", Init::Const(0.0))?;
        // The builder made a zero variable; give it the rows.
        let var = candle_core::Var::from_tensor(&p)?;
        var.set(&rows.to_dtype(DType::F32)?.contiguous()?)?;
        self.soft_prompt = Some(p);
        Ok(())
    }

    /// Prepends fixed embeddings `[n, hidden]` that no gradient reaches: ProMoT's second stage
    /// tunes the model with the first stage's prompt frozen in front.
    pub fn freeze_soft_prompt(&mut self, rows: &Tensor) -> Result<()> {
        self.prompt_dims(rows)?;
        self.soft_prompt = Some(rows.to_dtype(DType::F32)?.detach());
        Ok(())
    }

    fn prompt_dims(&self, rows: &Tensor) -> Result<(usize, usize)> {
        let (len, h) = rows.dims2()?;
        if h != self.shape.hidden_size || len == 0 {
            candle_core::bail!(
                "a soft prompt of shape [{len}, {h}] does not fit this model (hidden size {})",
                self.shape.hidden_size
            );
        }
        Ok((len, h))
    }

    pub fn soft_prompt(&self) -> Option<&Tensor> {
        self.soft_prompt.as_ref()
    }

    /// `ids [batch, time]` (u32) → logits `[batch, time, vocab]`, causal (positions of a soft
    /// prompt are left out of the output).
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
        self.logits(&self.trunk(ids, None, tap, &mut |_, _| Ok(()))?)
    }

    /// The forward pass, showing `tap` every site's output `[batch, time, neurons]`: the
    /// stream, each projection (query and key before RoPE) and each branch before its join.
    pub fn forward_sites(
        &self,
        ids: &Tensor,
        tap: &mut dyn FnMut(Site, &Tensor) -> Result<()>,
    ) -> Result<Tensor> {
        self.logits(&self.trunk(ids, None, &mut |_, _| Ok(()), tap)?)
    }

    /// The final hidden states of `ids` after `prefix` embeddings `[batch, n, hidden]`, or
    /// the soft prompt, or nothing.
    fn trunk(
        &self,
        ids: &Tensor,
        prefix: Option<&Tensor>,
        tap: &mut dyn FnMut(&str, &Tensor) -> Result<()>,
        site: &mut dyn FnMut(Site, &Tensor) -> Result<()>,
    ) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let (heads, kv_heads) = (self.shape.num_heads, self.shape.num_kv_heads);
        let eps = self.shape.rms_norm_eps;
        let mut x = self.embed.index_select(&ids.flatten_all()?, 0)?.reshape((
            b,
            t,
            self.shape.hidden_size,
        ))?;
        let prefix = match (prefix, &self.soft_prompt) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(p)) => Some(p.unsqueeze(0)?.broadcast_as((b, p.dim(0)?, p.dim(1)?))?),
            (None, None) => None,
        };
        let prefix = match prefix {
            Some(p) => {
                x = Tensor::cat(&[&p.contiguous()?, &x], 1)?;
                p.dim(1)?
            }
            None => 0,
        };
        let n = prefix + t;
        let cos = self.cos.narrow(0, 0, n)?;
        let sin = self.sin.narrow(0, 0, n)?;
        site(Site::Embeddings, &x)?;
        for (i, l) in self.layers.iter().enumerate() {
            let mut lin = |x: &Tensor, p: &Proj, name: &str| -> Result<Tensor> {
                tap(&format!("model.layers.{i}.{name}.weight"), x)?;
                p.forward(x, self.train)
            };
            let hn = rms_norm(&x, &l.attn_norm, eps)?;
            let (q, k, v) = (
                lin(&hn, &l.q, "self_attn.q_proj")?,
                lin(&hn, &l.k, "self_attn.k_proj")?,
                lin(&hn, &l.v, "self_attn.v_proj")?,
            );
            site(Site::Query(i), &q)?;
            site(Site::Key(i), &k)?;
            site(Site::Value(i), &v)?;
            let q = rope(&split_heads(&q, heads)?, &cos, &sin)?;
            let k = rope(&split_heads(&k, kv_heads)?, &cos, &sin)?;
            let v = split_heads(&v, kv_heads)?;
            let a = merge_heads(&causal_attention(&q, &k, &v)?)?;
            let a = lin(&a, &l.o, "self_attn.o_proj")?;
            site(Site::AttentionOut(i), &a)?;
            x = (x + a)?;
            site(Site::AfterAttention(i), &x)?;
            let hn = rms_norm(&x, &l.ffn_norm, eps)?;
            let (g, u) = (
                lin(&hn, &l.gate, "mlp.gate_proj")?,
                lin(&hn, &l.up, "mlp.up_proj")?,
            );
            site(Site::Gate(i), &g)?;
            site(Site::Intermediate(i), &u)?;
            let d = lin(&(g.silu()? * u)?, &l.down, "mlp.down_proj")?;
            site(Site::FeedForwardOut(i), &d)?;
            x = (x + d)?;
            site(Site::AfterFeedForward(i), &x)?;
        }
        if prefix > 0 {
            x = x.narrow(1, prefix, t)?;
        }
        Ok(x)
    }

    /// The final hidden states `[batch, time, hidden]` (before the last norm and the head,
    /// the costliest matrix: callers apply [`Self::logits`] to the positions they need).
    pub fn hidden(&self, ids: &Tensor) -> Result<Tensor> {
        self.trunk(ids, None, &mut |_, _| Ok(()), &mut |_, _| Ok(()))
    }

    /// [`Self::hidden`] after per-sequence prefix embeddings `[batch, n, hidden]` (a
    /// captioner's image prefix, in place of any soft prompt); their positions are left out.
    pub fn hidden_after(&self, prefix: &Tensor, ids: &Tensor) -> Result<Tensor> {
        self.trunk(ids, Some(prefix), &mut |_, _| Ok(()), &mut |_, _| Ok(()))
    }

    /// Logits of hidden states `[…, hidden]` → `[…, vocab]`.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        linear(&self.final_norm(hidden)?, self.head(), None)
    }

    /// The log-probability of each target after hidden states `[n, hidden]` → `[n]`: the head
    /// and the log-softmax fused ([`target_logprobs`]), for training losses.
    pub fn target_logprobs(&self, hidden: &Tensor, targets: &[u32]) -> Result<Tensor> {
        target_logprobs(&self.final_norm(hidden)?, self.head(), targets)
    }

    fn final_norm(&self, hidden: &Tensor) -> Result<Tensor> {
        rms_norm(hidden, &self.norm, self.shape.rms_norm_eps)
    }

    /// The output matrix: its own, or the tied embeddings.
    fn head(&self) -> &Tensor {
        self.lm_head.as_ref().unwrap_or(&self.embed)
    }

    /// Every weight under its Hugging Face name, adapters merged in (`W + s·B·A`): what an
    /// exported checkpoint holds.
    pub fn merged_weights(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = vec![
            ("model.embed_tokens.weight".to_string(), self.embed.detach()),
            ("model.norm.weight".to_string(), self.norm.detach()),
        ];
        if let Some(head) = &self.lm_head {
            out.push(("lm_head.weight".to_string(), head.detach()));
        }
        for (i, l) in self.layers.iter().enumerate() {
            let p = format!("model.layers.{i}");
            out.push((format!("{p}.input_layernorm.weight"), l.attn_norm.detach()));
            out.push((
                format!("{p}.post_attention_layernorm.weight"),
                l.ffn_norm.detach(),
            ));
            for (name, proj) in l.projections() {
                out.push((format!("{p}.{name}.weight"), proj.merged()?.detach()));
                if let Some(b) = &proj.b {
                    out.push((format!("{p}.{name}.bias"), b.detach()));
                }
            }
        }
        Ok(out)
    }

    /// The LoRA adapters under PEFT's names relative to the model
    /// (`model.layers.0.self_attn.q_proj.lora_A.weight`, …) and the configuration they were
    /// made with; `None` without adapters.
    pub fn lora(&self) -> Option<(Vec<(String, Tensor)>, LoraConfig)> {
        let mut weights = Vec::new();
        let mut targets: Vec<String> = Vec::new();
        let mut shape = None;
        for (i, l) in self.layers.iter().enumerate() {
            for (name, p) in l.projections() {
                let Some(lora) = &p.lora else { continue };
                let short = name.rsplit('.').next().unwrap_or(name).to_string();
                if !targets.contains(&short) {
                    targets.push(short);
                }
                let rank = lora.a.dims().first().copied().unwrap_or(0);
                shape = Some((rank, lora.scale * rank as f64, lora.dropout));
                let at = format!("model.layers.{i}.{name}");
                weights.push((format!("{at}.lora_A.weight"), lora.a.detach()));
                weights.push((format!("{at}.lora_B.weight"), lora.b.detach()));
            }
        }
        let (rank, alpha, dropout) = shape?;
        Some((
            weights,
            LoraConfig {
                rank,
                alpha,
                dropout,
                targets,
            },
        ))
    }

    /// A checkpoint folder written by [`LlamaShape::hf_config`] and a saved VarMap.
    pub fn load(dir: &std::path::Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        let c: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not valid JSON", path.display()))?;
        let shape = LlamaShape::from_hf_config(&c)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
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

/// cos/sin tables `[max_positions, head_dim]` in the rotate-half layout of HF llama.
fn rope_tables(shape: &LlamaShape, dev: &Device) -> Result<(Tensor, Tensor)> {
    let d = shape.head_dim();
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
