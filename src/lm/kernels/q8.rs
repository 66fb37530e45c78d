//! Activations quantised to 8 bits in blocks of 32, the form the integer dot products read.
//!
//! The rounding is ggml's `block_q8_1` (scale rounded to f16, as llama.cpp and candle do), so
//! our dot products agree with theirs up to the order of float additions. Quants are laid out
//! like the weights ([`super::dot`]): in full groups of eight blocks, interleaved four bytes at
//! a time; scales and sums are separate arrays, so a kernel loads eight of them in one vector.

use half::f16;

use super::dot::{quant_offset, GROUP};

pub const QK: usize = 32;

/// `m` rows of `k` activations: `x ≈ d · q` per block, and `d · Σ q` for formats with an
/// offset: `s` rounded to f16 as ggml's `q8_1` does (for Q4, like llama.cpp), `sum` exact.
pub struct Q8Rows {
    blocks: usize,
    qs: Vec<i8>,
    d: Vec<f32>,
    s: Vec<f32>,
    sum: Vec<f32>,
}

/// One row of [`Q8Rows`].
#[derive(Clone, Copy)]
pub struct Q8Row<'a> {
    pub qs: &'a [i8],
    pub d: &'a [f32],
    pub s: &'a [f32],
    pub sum: &'a [f32],
}

impl Q8Row<'_> {
    /// Quant `e` of block `i`.
    pub fn quant(&self, i: usize, e: usize) -> i8 {
        self.qs[act_offset(self.d.len(), i, e)]
    }
}

/// Where quant `e` of block `i` sits in a row of `nb` blocks: the weights' Q8 layout without
/// the scales.
fn act_offset(nb: usize, i: usize, e: usize) -> usize {
    let g = i / GROUP;
    g * GROUP * QK + quant_offset(GROUP.min(nb - g * GROUP), i % GROUP, e)
}

impl Q8Rows {
    /// Quantises `x` (`[m, k]`, `k` a multiple of 32).
    pub fn new(x: &[f32], k: usize) -> Self {
        let blocks = k / QK;
        let n = x.len() / QK;
        let mut out = Self {
            blocks,
            qs: vec![0; n * QK],
            d: vec![0.0; n],
            s: vec![0.0; n],
            sum: vec![0.0; n],
        };
        for (b, v) in x.chunks_exact(QK).enumerate() {
            let (row, i) = (b / blocks, b % blocks);
            let v: &[f32; QK] = v.try_into().expect("a block");
            // Eight lanes and branch-free steps, so the loops vectorise.
            let mut lanes = [0f32; 8];
            for c in v.chunks_exact(8) {
                for l in 0..8 {
                    let a = c[l].abs();
                    lanes[l] = if a > lanes[l] { a } else { lanes[l] };
                }
            }
            let amax = lanes.iter().fold(0f32, |m, &a| if a > m { a } else { m });
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let mut q = [0i8; QK];
            for e in 0..QK {
                // |v · id| ≤ 127, so the conversion never saturates.
                q[e] = (v[e] * id).round() as i32 as i8;
            }
            // Runs of four consecutive quants stay together in every layout.
            let dst = &mut out.qs[row * k..(row + 1) * k];
            for e in (0..QK).step_by(4) {
                let at = act_offset(blocks, i, e);
                dst[at..at + 4].copy_from_slice(&q[e..e + 4]);
            }
            let total: i32 = q.iter().map(|&q| q as i32).sum();
            out.d[b] = f16::from_f32(d).to_f32();
            out.s[b] = f16::from_f32(total as f32 * out.d[b]).to_f32();
            out.sum[b] = total as f32 * out.d[b];
        }
        out
    }

    pub fn row(&self, t: usize) -> Q8Row<'_> {
        let b = self.blocks;
        Q8Row {
            qs: &self.qs[t * b * QK..(t + 1) * b * QK],
            d: &self.d[t * b..(t + 1) * b],
            s: &self.s[t * b..(t + 1) * b],
            sum: &self.sum[t * b..(t + 1) * b],
        }
    }
}
