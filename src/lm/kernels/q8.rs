//! Activations quantised to 8 bits in blocks of 32, the form the integer dot products read.
//!
//! The rounding is ggml's `block_q8_1` (scale rounded to f16, as llama.cpp and candle do), so
//! our dot products agree with theirs up to the order of float additions. Stored as separate
//! arrays (quants, scales, sums) so a kernel loads eight blocks' scales in one vector.

use half::f16;

pub const QK: usize = 32;

/// `m` rows of `k` activations: `x ≈ d · qs` per block, `s = d · Σ qs` for formats with an offset.
pub struct Q8Rows {
    blocks: usize,
    qs: Vec<i8>,
    d: Vec<f32>,
    s: Vec<f32>,
}

/// One row of [`Q8Rows`].
#[derive(Clone, Copy)]
pub struct Q8Row<'a> {
    pub qs: &'a [i8],
    pub d: &'a [f32],
    pub s: &'a [f32],
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
        };
        for (i, v) in x.chunks_exact(QK).enumerate() {
            let amax = v.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if d != 0.0 { 1.0 / d } else { 0.0 };
            let mut sum = 0i32;
            for (q, v) in out.qs[i * QK..(i + 1) * QK].iter_mut().zip(v) {
                *q = (v * id).round() as i8;
                sum += *q as i32;
            }
            out.d[i] = f16::from_f32(d).to_f32();
            out.s[i] = f16::from_f32(sum as f32 * out.d[i]).to_f32();
        }
        out
    }

    pub fn row(&self, t: usize) -> Q8Row<'_> {
        let b = self.blocks;
        Q8Row {
            qs: &self.qs[t * b * QK..(t + 1) * b * QK],
            d: &self.d[t * b..(t + 1) * b],
            s: &self.s[t * b..(t + 1) * b],
        }
    }
}
