//! The decoder forward pass on the CPU, over plain float buffers and our quantised kernels
//! ([`super::kernels`]), with a block-shared KV cache ([`KvCache`]).
//!
//! One call runs a batch: several sequences (branches of a search, each with its own cache)
//! and several new tokens each. All their tokens go through each weight matrix together, so a
//! matrix is read from memory once per step, whatever the number of branches.

use rayon::prelude::*;

use super::attention::{attend, Query};
use super::config::{DecoderConfig, Family, RopeStyle};
use super::error::{LmError, Result};
use super::kernels::{self, QuantMatrix};
use super::kv_cache::{KvCache, KvShape};

/// A projection: a weight matrix with an optional bias (Qwen2 has biases on q/k/v).
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: QuantMatrix,
    pub bias: Option<Vec<f32>>,
}

/// Projections of the same input fused into one product (q, k, v; gate, up).
#[derive(Debug, Clone)]
pub struct Projection {
    parts: Vec<QuantMatrix>,
    bias: Option<Vec<f32>>,
    width: usize,
}

impl Projection {
    pub fn fuse(linears: Vec<Linear>) -> Self {
        let width = linears.iter().map(|l| l.weight.rows()).sum();
        let bias = linears.iter().any(|l| l.bias.is_some()).then(|| {
            linears
                .iter()
                .flat_map(|l| match &l.bias {
                    Some(b) => b.clone(),
                    None => vec![0.0; l.weight.rows()],
                })
                .collect()
        });
        Self {
            parts: linears.into_iter().map(|l| l.weight).collect(),
            bias,
            width,
        }
    }

    fn forward(&self, x: &[f32]) -> Vec<f32> {
        let mut out = vec![0f32; x.len() / self.parts[0].cols() * self.width];
        kernels::matmul(&self.parts, x, &mut out);
        if let Some(b) = &self.bias {
            for row in out.chunks_exact_mut(self.width) {
                row.iter_mut().zip(b).for_each(|(y, b)| *y += b);
            }
        }
        out
    }
}

#[derive(Debug, Clone)]
pub struct RmsNorm {
    pub weight: Vec<f32>,
    pub eps: f32,
}

impl RmsNorm {
    /// Normalises each `weight.len()`-wide row of `x` in place.
    fn apply(&self, x: &mut [f32]) {
        let n = self.weight.len();
        for row in x.chunks_exact_mut(n) {
            let ms = row.iter().map(|v| v * v).sum::<f32>() / n as f32;
            let scale = 1.0 / (ms + self.eps).sqrt();
            row.iter_mut()
                .zip(&self.weight)
                .for_each(|(v, w)| *v = *v * scale * w);
        }
    }

    fn forward(&self, x: &[f32]) -> Vec<f32> {
        let mut y = x.to_vec();
        self.apply(&mut y);
        y
    }
}

#[derive(Debug, Clone)]
pub struct Block {
    pub attn_norm: RmsNorm,
    /// q, k and v, fused.
    pub qkv: Projection,
    pub o: Projection,
    /// Gemma 3 normalises queries and keys per head.
    pub qk_norm: Option<(RmsNorm, RmsNorm)>,
    /// Gemma 3 normalises the attention and feed-forward outputs before the residual add.
    pub post_attn_norm: Option<RmsNorm>,
    pub ffn_norm: RmsNorm,
    /// gate and up, fused.
    pub gate_up: Projection,
    pub down: Projection,
    pub post_ffn_norm: Option<RmsNorm>,
}

/// Precomputed rotary tables `[position, head_dim / 2]` for one base frequency.
#[derive(Debug, Clone)]
struct Rope {
    cos: Vec<f32>,
    sin: Vec<f32>,
    half: usize,
}

impl Rope {
    fn new(head_dim: usize, theta: f32, max_len: usize) -> Self {
        let half = head_dim / 2;
        let inv: Vec<f32> = (0..half)
            .map(|i| 1f32 / theta.powf((2 * i) as f32 / head_dim as f32))
            .collect();
        let (mut cos, mut sin) = (Vec::with_capacity(max_len * half), Vec::new());
        sin.reserve(max_len * half);
        for p in 0..max_len {
            for f in &inv {
                let a = p as f32 * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        Self { cos, sin, half }
    }

    /// Rotates every head (`head_dim` wide) of `x` to position `pos`.
    fn apply(&self, x: &mut [f32], pos: usize, style: RopeStyle) {
        let h = self.half;
        let (cos, sin) = (
            &self.cos[pos * h..(pos + 1) * h],
            &self.sin[pos * h..(pos + 1) * h],
        );
        for head in x.chunks_exact_mut(2 * h) {
            for i in 0..h {
                let (a, b) = match style {
                    RopeStyle::Interleaved => (2 * i, 2 * i + 1),
                    RopeStyle::Halves => (i, i + h),
                };
                let (x0, x1) = (head[a], head[b]);
                head[a] = x0 * cos[i] - x1 * sin[i];
                head[b] = x0 * sin[i] + x1 * cos[i];
            }
        }
    }
}

/// What a sequence of a batch runs next.
#[derive(Clone, Copy)]
pub enum Input<'a> {
    Tokens(&'a [u32]),
    /// Rows of input embeddings (`hidden` wide) in place of token lookups: a soft prompt.
    Embeddings(&'a [f32]),
}

impl Input<'_> {
    /// Positions it takes.
    pub fn len(&self, hidden: usize) -> usize {
        match self {
            Input::Tokens(t) => t.len(),
            Input::Embeddings(e) => e.len() / hidden,
        }
    }
}

/// One sequence of a batch: new input to run after what its cache holds.
pub struct BatchItem<'a> {
    pub input: Input<'a>,
    pub cache: &'a mut KvCache,
}

/// Attention below this many (query head × key) pairs runs on the calling thread.
const PARALLEL_ATTENTION: usize = 2048;

#[derive(Debug, Clone)]
pub struct Transformer {
    pub config: DecoderConfig,
    /// `[vocab, hidden]`, dequantised one row per lookup.
    pub embeddings: QuantMatrix,
    pub blocks: Vec<Block>,
    pub final_norm: RmsNorm,
    pub lm_head: QuantMatrix,
    global_rope: Rope,
    local_rope: Option<Rope>,
}

impl Transformer {
    pub fn new(
        config: DecoderConfig,
        embeddings: QuantMatrix,
        blocks: Vec<Block>,
        final_norm: RmsNorm,
        lm_head: QuantMatrix,
    ) -> Self {
        let max_len = config.context_length;
        let global_rope = Rope::new(config.head_dim, config.rope_theta, max_len);
        let local_rope = config
            .sliding_window
            .map(|w| Rope::new(config.head_dim, w.local_rope_theta, max_len));
        Self {
            config,
            embeddings,
            blocks,
            final_norm,
            lm_head,
            global_rope,
            local_rope,
        }
    }

    pub fn new_cache(&self) -> KvCache {
        KvCache::new(KvShape {
            layers: self.blocks.len(),
            kv_heads: self.config.num_kv_heads,
            head_dim: self.config.head_dim,
        })
    }

    /// Runs `tokens` after the positions already in `cache` and appends them to it.
    /// Returns logits: `[vocab]` for the last token, or `[tokens × vocab]` with `all_positions`.
    pub fn forward(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        all_positions: bool,
    ) -> Result<Vec<f32>> {
        let mut items = [BatchItem {
            input: Input::Tokens(tokens),
            cache,
        }];
        Ok(self.forward_batch(&mut items, all_positions)?.remove(0))
    }

    /// Runs every item's tokens after its cache, as one batch; returns each item's logits as
    /// [`Transformer::forward`] does.
    pub fn forward_batch(
        &self,
        items: &mut [BatchItem],
        all_positions: bool,
    ) -> Result<Vec<Vec<f32>>> {
        // Run on a worker of the thread pool, so the many small parallel products inside join
        // it directly instead of each waking the pool from outside and waiting.
        if rayon::current_thread_index().is_none() {
            return rayon::scope(|_| self.forward_batch(items, all_positions));
        }
        let cfg = &self.config;
        let hidden = cfg.hidden_size;
        // (item, position) of each row of the activations.
        let mut rows = Vec::new();
        let lens: Vec<usize> = items.iter().map(|it| it.input.len(hidden)).collect();
        for (i, item) in items.iter().enumerate() {
            let (pos, n) = (item.cache.len(), lens[i]);
            match item.input {
                Input::Tokens(tokens) => {
                    if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= cfg.vocab_size) {
                        return Err(LmError::Tokenizer(format!(
                            "token id {bad} is outside the vocabulary of {}",
                            cfg.vocab_size
                        )));
                    }
                }
                Input::Embeddings(e) if !e.len().is_multiple_of(hidden) => {
                    return Err(LmError::Compute(candle_core::Error::Msg(format!(
                        "input embeddings of {} values are not rows of {hidden}",
                        e.len()
                    ))));
                }
                Input::Embeddings(_) => {}
            }
            if n == 0 {
                return Err(LmError::Compute(candle_core::Error::Msg(
                    "forward called with no input".into(),
                )));
            }
            if pos + n > cfg.context_length {
                return Err(LmError::ContextFull {
                    len: pos + n,
                    max: cfg.context_length,
                });
            }
            rows.extend((0..n).map(|j| (i, pos + j)));
        }
        let mut x = Vec::with_capacity(rows.len() * hidden);
        for item in items.iter() {
            match item.input {
                Input::Tokens(tokens) => {
                    for &id in tokens {
                        let start = x.len();
                        x.resize(start + hidden, 0.0);
                        self.embeddings.row_f32(id as usize, &mut x[start..]);
                    }
                }
                Input::Embeddings(e) => x.extend_from_slice(e),
            }
        }
        if cfg.family == Family::Gemma3 {
            let s = (hidden as f32).sqrt();
            x.iter_mut().for_each(|v| *v *= s);
        }
        for (item, &n) in items.iter_mut().zip(&lens) {
            item.cache.reserve(n);
        }
        for (layer, block) in self.blocks.iter().enumerate() {
            self.block_forward(block, layer, &mut x, &rows, items);
        }
        for (item, &n) in items.iter_mut().zip(&lens) {
            item.cache.advance(n);
        }

        // Final norm and head on the rows whose logits are wanted, all items in one product
        // (the head is the largest matrix: read once per step, not once per item).
        // Compacted to the front of `x` (rows only ever move left).
        let (mut wanted, mut first, mut packed) = (Vec::new(), 0, 0);
        for &n in &lens {
            let take = if all_positions { n } else { 1 };
            let start = first + n - take;
            x.copy_within(start * hidden..(start + take) * hidden, packed * hidden);
            wanted.push(take);
            first += n;
            packed += take;
        }
        let rows_out: usize = wanted.iter().sum();
        let h = self.final_norm.forward(&x[..rows_out * hidden]);
        let vocab = cfg.vocab_size;
        let mut logits = vec![0f32; rows_out * vocab];
        kernels::matmul(std::slice::from_ref(&self.lm_head), &h, &mut logits);
        if wanted.len() == 1 {
            return Ok(vec![logits]);
        }
        let mut out = Vec::with_capacity(items.len());
        let mut rest = logits.as_slice();
        for n in wanted {
            let (mine, tail) = rest.split_at(n * vocab);
            out.push(mine.to_vec());
            rest = tail;
        }
        Ok(out)
    }

    fn block_forward(
        &self,
        b: &Block,
        layer: usize,
        x: &mut [f32],
        rows: &[(usize, usize)],
        items: &mut [BatchItem],
    ) {
        let cfg = &self.config;
        let (nh, nkv, hd) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        let (qw, kw) = (nh * hd, nkv * hd);
        let local = cfg.is_local_layer(layer);
        let rope = match (&self.local_rope, local) {
            (Some(r), true) => r,
            _ => &self.global_rope,
        };
        let window = cfg.sliding_window.filter(|_| local).map(|w| w.size);

        let mut qkv = b.qkv.forward(&b.attn_norm.forward(x));
        for (row, &(item, pos)) in qkv.chunks_exact_mut(qw + 2 * kw).zip(rows) {
            let (q, rest) = row.split_at_mut(qw);
            let (k, v) = rest.split_at_mut(kw);
            if let Some((qn, kn)) = &b.qk_norm {
                qn.apply(q);
                kn.apply(k);
            }
            rope.apply(q, pos, cfg.rope_style);
            rope.apply(k, pos, cfg.rope_style);
            items[item].cache.write(layer, pos, k, v);
        }

        // Every row attends to its own sequence up to its position, one key/value head (and
        // the query heads that share it) at a time.
        let caches: Vec<&KvCache> = items.iter().map(|it| &*it.cache).collect();
        let scale = cfg.attention_scale as f32;
        let group = nh / nkv;
        let mut att = vec![0f32; rows.len() * qw];
        let heads = |idx: usize, out: &mut [f32], scores: &mut Vec<f32>| {
            let (r, kvh) = (idx / nkv, idx % nkv);
            let (item, pos) = rows[r];
            let q = &qkv[r * (qw + 2 * kw) + kvh * group * hd..][..group * hd];
            let query = Query {
                layer,
                kv_head: kvh,
                q,
                head_dim: hd,
                start: window.map_or(0, |w| (pos + 1).saturating_sub(w)),
                end: pos + 1,
                scale,
            };
            attend(caches[item], &query, scores, out);
        };
        let work: usize = rows.iter().map(|&(_, pos)| pos + 1).sum::<usize>() * nh;
        if work >= PARALLEL_ATTENTION {
            att.par_chunks_mut(group * hd)
                .enumerate()
                .for_each_init(Vec::new, |scores, (idx, out)| heads(idx, out, scores));
        } else {
            let mut scores = Vec::new();
            for (idx, out) in att.chunks_exact_mut(group * hd).enumerate() {
                heads(idx, out, &mut scores);
            }
        }

        let mut y = b.o.forward(&att);
        if let Some(n) = &b.post_attn_norm {
            n.apply(&mut y);
        }
        x.iter_mut().zip(&y).for_each(|(x, y)| *x += y);

        let gu = b.gate_up.forward(&b.ffn_norm.forward(x));
        let inter = cfg.intermediate_size;
        let mut act = Vec::with_capacity(rows.len() * inter);
        for row in gu.chunks_exact(2 * inter) {
            let (gate, up) = row.split_at(inter);
            act.extend(gate.iter().zip(up).map(|(&g, &u)| {
                let g = match cfg.family {
                    Family::Gemma3 => gelu_tanh(g),
                    Family::Llama | Family::Qwen2 => g / (1.0 + (-g).exp()),
                };
                g * u
            }));
        }
        let mut y = b.down.forward(&act);
        if let Some(n) = &b.post_ffn_norm {
            n.apply(&mut y);
        }
        x.iter_mut().zip(&y).for_each(|(x, y)| *x += y);
    }
}

/// GELU, tanh approximation (Gemma's `gelu_pytorch_tanh`).
fn gelu_tanh(x: f32) -> f32 {
    const C: f32 = 0.797_884_6; // sqrt(2 / pi)
    0.5 * x * (1.0 + (C * (x + 0.044_715 * x * x * x)).tanh())
}
