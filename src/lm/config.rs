//! Hyper-parameters of the decoder, read from GGUF metadata or a Hugging Face config.json.

use serde::Serialize;

/// The decoder families this runtime implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Family {
    /// Llama, Mistral, SmolLM2 and other llama-layout models.
    Llama,
    /// Qwen2: llama layout with biases on the q/k/v projections.
    Qwen2,
    /// Gemma 3: extra norms, q/k norms, GELU, scaled embeddings, local/global attention layers.
    Gemma3,
}

/// How rotary embeddings pair the dimensions of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RopeStyle {
    /// Pairs (2i, 2i+1): llama weights as converted to GGUF (q/k rows permuted).
    Interleaved,
    /// Pairs (i, i + d/2): Hugging Face llama weights, Qwen2, Gemma.
    Halves,
}

#[derive(Debug, Clone, Serialize)]
pub struct DecoderConfig {
    pub family: Family,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f32,
    pub rope_style: RopeStyle,
    pub context_length: usize,
    pub tie_embeddings: bool,
    /// Gemma 3 only: every n-th layer is global, the others use a sliding window.
    pub sliding_window: Option<SlidingWindow>,
    /// Attention logits are multiplied by this (1/sqrt(head_dim) unless the model says otherwise).
    pub attention_scale: f64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct SlidingWindow {
    pub size: usize,
    pub global_every: usize,
    pub local_rope_theta: f32,
}

impl DecoderConfig {
    pub fn is_local_layer(&self, layer: usize) -> bool {
        self.sliding_window
            .is_some_and(|w| !(layer + 1).is_multiple_of(w.global_every))
    }
}
