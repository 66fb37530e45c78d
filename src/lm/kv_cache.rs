//! Per-layer key/value cache that can be forked and rewound without recomputation.
//!
//! Cached tensors are immutable: appending builds a new tensor with `Tensor::cat`, so a clone of
//! the cache is an O(1) snapshot that later appends on either copy never disturb (fork), and
//! rewinding is a zero-copy `narrow` along the sequence dimension.

use candle_core::{Result, Tensor};

#[derive(Debug, Clone)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    len: usize,
}

impl KvCache {
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: vec![None; num_layers],
            len: 0,
        }
    }

    /// Number of positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends this step's keys and values (shape `[b, kv_heads, seq, head_dim]`) to `layer` and
    /// returns the full keys and values to attend over.
    pub(crate) fn append(
        &mut self,
        layer: usize,
        k: Tensor,
        v: Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let (k, v) = match &self.layers[layer] {
            None => (k, v),
            Some((k0, v0)) => (Tensor::cat(&[k0, &k], 2)?, Tensor::cat(&[v0, &v], 2)?),
        };
        self.layers[layer] = Some((k.clone(), v.clone()));
        Ok((k, v))
    }

    /// Called once all layers have appended `seq` positions.
    pub(crate) fn advance(&mut self, seq: usize) {
        self.len += seq;
    }

    /// Keeps only the first `len` positions.
    pub fn truncate(&mut self, len: usize) -> Result<()> {
        if len >= self.len {
            return Ok(());
        }
        for entry in &mut self.layers {
            *entry = match entry.take() {
                Some((k, v)) if len > 0 => Some((k.narrow(2, 0, len)?, v.narrow(2, 0, len)?)),
                _ => None,
            };
        }
        self.len = len;
        Ok(())
    }
}
