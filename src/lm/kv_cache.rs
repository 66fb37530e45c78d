//! Key/value cache as a list of shared blocks, so branches of a search tree share their prefix.
//!
//! A block holds [`BLOCK_LEN`] positions for every layer: per layer and key/value head, the keys
//! transposed (`[head_dim, BLOCK_LEN]`, so attention scores a whole block with vector
//! multiply-adds) and the values as rows (`[BLOCK_LEN, head_dim]`). Blocks are reference-counted and
//! copied only when written while shared (copy on write), so:
//! - forking a cache clones a list of pointers (microseconds, independent of the prefix length);
//! - a fork's memory is the blocks it writes: its new positions plus, at most, one copied
//!   partially filled block;
//! - rewinding shortens the list and the length; nothing is recomputed.

use std::sync::Arc;

/// Positions per block: small enough that the copy-on-write of a shared tail block is cheap.
pub const BLOCK_LEN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvShape {
    pub layers: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl KvShape {
    /// Floats of one (layer, key-or-value, head) run of a block.
    fn run(&self) -> usize {
        BLOCK_LEN * self.head_dim
    }

    fn block_floats(&self) -> usize {
        self.layers * 2 * self.kv_heads * self.run()
    }

    /// Offset of the keys (`kv` = 0) or values (1) of `head` in `layer` within a block.
    fn offset(&self, layer: usize, kv: usize, head: usize) -> usize {
        ((layer * 2 + kv) * self.kv_heads + head) * self.run()
    }
}

#[derive(Debug, Clone)]
pub struct KvCache {
    shape: KvShape,
    blocks: Vec<Arc<Vec<f32>>>,
    len: usize,
}

impl KvCache {
    pub fn new(shape: KvShape) -> Self {
        Self {
            shape,
            blocks: Vec::new(),
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

    /// Keeps only the first `len` positions.
    pub fn truncate(&mut self, len: usize) {
        if len < self.len {
            self.blocks.truncate(len.div_ceil(BLOCK_LEN));
            self.len = len;
        }
    }

    /// Bytes of the blocks this cache holds alone (not shared with any fork).
    pub fn own_bytes(&self) -> usize {
        let unique = self
            .blocks
            .iter()
            .filter(|b| Arc::strong_count(b) == 1)
            .count();
        unique * self.shape.block_floats() * 4
    }

    /// Bytes of all blocks this cache reads, shared or not.
    pub fn total_bytes(&self) -> usize {
        self.blocks.len() * self.shape.block_floats() * 4
    }

    /// Makes positions `len..len + n` writable: allocates blocks, and copies a shared partially
    /// filled tail block so that writing never changes what a fork sees.
    pub(crate) fn reserve(&mut self, n: usize) {
        let floats = self.shape.block_floats();
        if !self.len.is_multiple_of(BLOCK_LEN) {
            let tail = self.len / BLOCK_LEN;
            Arc::make_mut(&mut self.blocks[tail]);
        }
        while self.blocks.len() * BLOCK_LEN < self.len + n {
            self.blocks.push(Arc::new(vec![0.0; floats]));
        }
    }

    /// Stores the keys and values `[kv_heads, head_dim]` of position `pos` (reserved first).
    pub(crate) fn write(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let shape = self.shape;
        let block = Arc::get_mut(&mut self.blocks[pos / BLOCK_LEN])
            .expect("positions are reserved before they are written");
        let slot = pos % BLOCK_LEN;
        let hd = shape.head_dim;
        for h in 0..shape.kv_heads {
            let keys = &mut block[shape.offset(layer, 0, h)..][..shape.run()];
            for (d, &x) in k[h * hd..(h + 1) * hd].iter().enumerate() {
                keys[d * BLOCK_LEN + slot] = x;
            }
            let at = shape.offset(layer, 1, h) + slot * hd;
            block[at..at + hd].copy_from_slice(&v[h * hd..(h + 1) * hd]);
        }
    }

    /// Called once all layers have written `n` new positions.
    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }

    /// The blocks covering positions `start..end` of `layer`, key/value head `head`: for each,
    /// the first position it holds, the range of its slots in use, its keys `[head_dim,
    /// BLOCK_LEN]` and its values `[BLOCK_LEN, head_dim]`.
    pub(crate) fn blocks(
        &self,
        layer: usize,
        head: usize,
        start: usize,
        end: usize,
    ) -> impl Iterator<Item = KvBlock<'_>> + '_ {
        let run = self.shape.run();
        (start / BLOCK_LEN..end.div_ceil(BLOCK_LEN)).map(move |b| {
            let first = b * BLOCK_LEN;
            let block = &self.blocks[b];
            KvBlock {
                first,
                slots: start.max(first) - first..end.min(first + BLOCK_LEN) - first,
                keys: &block[self.shape.offset(layer, 0, head)..][..run],
                values: &block[self.shape.offset(layer, 1, head)..][..run],
            }
        })
    }
}

/// One block's keys and values for one layer and head, see [`KvCache::blocks`].
pub(crate) struct KvBlock<'a> {
    pub first: usize,
    pub slots: std::ops::Range<usize>,
    pub keys: &'a [f32],
    pub values: &'a [f32],
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> KvShape {
        KvShape {
            layers: 2,
            kv_heads: 1,
            head_dim: 4,
        }
    }

    /// Appends positions whose keys and values are all `value`.
    fn append(cache: &mut KvCache, n: usize, value: f32) {
        cache.reserve(n);
        let kv = [value; 4];
        for pos in cache.len()..cache.len() + n {
            for layer in 0..2 {
                cache.write(layer, pos, &kv, &kv);
            }
        }
        cache.advance(n);
    }

    /// Every position's keys, in order.
    fn keys(cache: &KvCache, layer: usize) -> Vec<f32> {
        let hd = shape().head_dim;
        cache
            .blocks(layer, 0, 0, cache.len())
            .flat_map(|b| {
                b.slots
                    .flat_map(move |s| (0..hd).map(move |d| b.keys[d * BLOCK_LEN + s]))
            })
            .collect()
    }

    #[test]
    fn forks_share_blocks_and_copy_only_the_written_tail() {
        let mut root = KvCache::new(shape());
        append(&mut root, 20, 1.0); // one full block and 4 positions of a second
        let mut fork = root.clone();
        assert_eq!(fork.own_bytes(), 0, "a fresh fork owns nothing");
        append(&mut fork, 3, 2.0);
        // The fork copied the shared partial block; the full block is still shared.
        let block = shape().block_floats() * 4;
        assert_eq!(fork.own_bytes(), block);
        assert_eq!(fork.total_bytes(), 2 * block);
        assert_eq!(
            keys(&root, 1),
            vec![1.0; 20 * 4],
            "the original is untouched"
        );
        let mut want = vec![1.0; 20 * 4];
        want.extend([2.0; 12]);
        assert_eq!(keys(&fork, 1), want);
    }

    #[test]
    fn rewinding_then_writing_replaces_the_tail() {
        let mut cache = KvCache::new(shape());
        append(&mut cache, 40, 1.0);
        let snapshot = cache.clone();
        cache.truncate(10);
        assert_eq!(cache.len(), 10);
        append(&mut cache, 5, 3.0);
        let mut want = vec![1.0; 10 * 4];
        want.extend([3.0; 20]);
        assert_eq!(keys(&cache, 0), want);
        assert_eq!(
            keys(&snapshot, 0),
            vec![1.0; 40 * 4],
            "a snapshot survives the rewind"
        );
        // Blocks respect the start and end positions.
        let slots: Vec<_> = snapshot
            .blocks(0, 0, 3, 40)
            .map(|b| (b.first, b.slots))
            .collect();
        assert_eq!(slots, vec![(0, 3..16), (16, 0..16), (32, 0..8)]);
    }
}
