//! The element-wise kernels of delta pruning on the CPU. `src/gpu` has the same two kernels in
//! WGSL and must give bit-identical results: the arithmetic is spelled out as separate f32
//! operations (δ = ft − base; kept = δ·scale; out = base + kept) with no fused multiply-add.

use rayon::prelude::*;

use crate::checkpoint::stats::TensorStats;
use crate::counter_rng::{DropThreshold, MaskKey};

/// Elements per parallel work item: large enough to amortise scheduling, small enough to balance.
const CHUNK: usize = 1 << 16;

/// `out = base + mask·(ft − base)·scale`, with the mask drawn from `key` at element indices
/// `first_index..`. Dropped elements take the base value.
pub fn drop_and_rescale(
    base: &[f32],
    finetuned: &[f32],
    key: MaskKey,
    first_index: u64,
    threshold: DropThreshold,
    scale: f32,
    out: &mut [f32],
) {
    assert!(base.len() == finetuned.len() && base.len() == out.len());
    par_fill(out, |i| {
        let b = base[i];
        if key.keeps(first_index + i as u64, threshold) {
            let kept = (finetuned[i] - b) * scale;
            b + kept
        } else {
            b
        }
    });
}

/// `out = base + δ` where |δ| ≥ `min_abs`, else `base` (magnitude pruning with a threshold
/// chosen beforehand, e.g. the k-th largest |δ|).
pub fn magnitude_threshold(base: &[f32], finetuned: &[f32], min_abs: f32, out: &mut [f32]) {
    assert!(base.len() == finetuned.len() && base.len() == out.len());
    par_fill(out, |i| {
        let b = base[i];
        let d = finetuned[i] - b;
        if d.abs() >= min_abs {
            b + d
        } else {
            b
        }
    });
}

/// `out[i] = f(i)` over parallel chunks.
fn par_fill(out: &mut [f32], f: impl Fn(usize) -> f32 + Sync) {
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, o)| {
        for (j, y) in o.iter_mut().enumerate() {
            *y = f(c * CHUNK + j);
        }
    });
}

/// A float storage type, as the words a little-endian checkpoint holds.
pub trait Codec: Sync {
    type Word: bytemuck::Pod + Send + Sync;
    fn decode(w: Self::Word) -> f32;
    fn encode(v: f32) -> Self::Word;
}

pub struct F32Bits;
pub struct F16Bits;
pub struct Bf16Bits;

impl Codec for F32Bits {
    type Word = u32;
    #[inline(always)]
    fn decode(w: u32) -> f32 {
        f32::from_bits(w)
    }
    #[inline(always)]
    fn encode(v: f32) -> u32 {
        v.to_bits()
    }
}

impl Codec for F16Bits {
    type Word = u16;
    #[inline(always)]
    fn decode(w: u16) -> f32 {
        half::f16::from_bits(w).to_f32()
    }
    #[inline(always)]
    fn encode(v: f32) -> u16 {
        half::f16::from_f32(v).to_bits()
    }
}

impl Codec for Bf16Bits {
    type Word = u16;
    #[inline(always)]
    fn decode(w: u16) -> f32 {
        f32::from_bits((w as u32) << 16)
    }
    /// Round to nearest even, NaN kept quiet (what `half` and torch do), without branches.
    #[inline(always)]
    fn encode(v: f32) -> u16 {
        let x = v.to_bits();
        let rounded = (x.wrapping_add(0x7fff + ((x >> 16) & 1)) >> 16) as u16;
        let nan = ((x >> 16) as u16) | 0x0040;
        if (x & 0x7fff_ffff) > 0x7f80_0000 {
            nan
        } else {
            rounded
        }
    }
}

/// Sums over a tensor's δ before and after pruning (what [`TensorStats`] reports).
#[derive(Debug, Clone, Copy, Default)]
pub struct DeltaSums {
    pub kept: usize,
    pub abs_before: f64,
    pub sq_before: f64,
    pub abs_after: f64,
    pub sq_after: f64,
}

impl DeltaSums {
    pub fn into_stats(self, name: &str, numel: usize) -> TensorStats {
        TensorStats {
            name: name.to_string(),
            numel,
            kept: self.kept,
            abs_before: self.abs_before,
            sq_before: self.sq_before,
            abs_after: self.abs_after,
            sq_after: self.sq_after,
            ..Default::default()
        }
    }

    fn add(mut self, o: DeltaSums) -> DeltaSums {
        self.kept += o.kept;
        self.abs_before += o.abs_before;
        self.sq_before += o.sq_before;
        self.abs_after += o.abs_after;
        self.sq_after += o.sq_after;
        self
    }
}

/// Lanes of the blocked inner loop (independent accumulators, so the loop vectorises).
const LANES: usize = 8;

/// Per-lane partial sums of [`drop_block`].
#[derive(Default)]
struct Lanes {
    abs_before: [f32; LANES],
    sq_before: [f32; LANES],
    abs_after: [f32; LANES],
    sq_after: [f32; LANES],
    kept: [u32; LANES],
}

/// N elements of drop-and-rescale with fixed-size arrays, so the hash, the conversions and
/// the select compile to vector instructions. `p` = (key, high-word mix, threshold, scale,
/// low word of the first index).
#[inline(always)]
fn drop_block<C: Codec, const N: usize>(
    p: (MaskKey, u32, u64, f32, u32),
    o: &mut [C::Word; N],
    b: &[C::Word; N],
    f: &[C::Word; N],
    acc: &mut Lanes,
) {
    let (key, hi_mix, t, scale, j0) = p;
    for lane in 0..N {
        let (bv, fv) = (C::decode(b[lane]), C::decode(f[lane]));
        let d = fv - bv;
        let r = key.bits_in_block(j0.wrapping_add(lane as u32), hi_mix);
        let k = d * scale;
        let y = if r as u64 >= t { bv + k } else { bv };
        o[lane] = C::encode(y);
        let e = y - bv;
        acc.abs_before[lane] += d.abs();
        acc.sq_before[lane] += d * d;
        acc.abs_after[lane] += e.abs();
        acc.sq_after[lane] += e * e;
        acc.kept[lane] += (e != 0.0) as u32;
    }
}

/// [`drop_and_rescale`] fused with decoding, encoding and the sums, straight from checkpoint
/// words to output words in one parallel pass (the streaming path for large checkpoints: no
/// f32 copy of the tensor is made). Same arithmetic, so the same result bit for bit.
pub fn drop_and_rescale_words<C: Codec>(
    base: &[C::Word],
    finetuned: &[C::Word],
    key: MaskKey,
    threshold: DropThreshold,
    scale: f32,
    out: &mut [C::Word],
) -> DeltaSums {
    assert!(base.len() == finetuned.len() && base.len() == out.len());
    // DropAll as a threshold no 32-bit value reaches: compare in u64.
    let t: u64 = match threshold {
        DropThreshold::Below(t) => t as u64,
        DropThreshold::DropAll => 1 << 32,
    };
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .map(|(c, o)| {
            let start = c * CHUNK;
            let (b, f) = (
                &base[start..start + o.len()],
                &finetuned[start..start + o.len()],
            );
            // A chunk never straddles a multiple of 2³² (CHUNK divides it).
            let hi_mix = crate::counter_rng::high_word_mix((start as u64 >> 32) as u32);
            let lo0 = start as u32;
            let mut acc = Lanes::default();
            let tail = o.len() - o.len() % LANES;
            let mut oc = o.chunks_exact_mut(LANES);
            let (mut bc, mut fc) = (b.chunks_exact(LANES), f.chunks_exact(LANES));
            for (i, ((ob, bb), fb)) in (&mut oc).zip(&mut bc).zip(&mut fc).enumerate() {
                let j0 = lo0.wrapping_add((i * LANES) as u32);
                drop_block::<C, LANES>(
                    (key, hi_mix, t, scale, j0),
                    ob.try_into().expect("exact chunk"),
                    bb.try_into().expect("exact chunk"),
                    fb.try_into().expect("exact chunk"),
                    &mut acc,
                );
            }
            // The tail, one element at a time through the same arithmetic.
            let (ob, bb, fb) = (oc.into_remainder(), bc.remainder(), fc.remainder());
            for lane in 0..ob.len() {
                let j0 = lo0.wrapping_add((tail + lane) as u32);
                let mut one = [ob[lane]];
                drop_block::<C, 1>(
                    (key, hi_mix, t, scale, j0),
                    &mut one,
                    &[bb[lane]],
                    &[fb[lane]],
                    &mut acc,
                );
                ob[lane] = one[0];
            }
            let kept = acc.kept;
            let acc = [acc.abs_before, acc.sq_before, acc.abs_after, acc.sq_after];
            let sum = |a: &[f32; LANES]| a.iter().map(|x| *x as f64).sum::<f64>();
            DeltaSums {
                kept: kept.iter().map(|k| *k as usize).sum(),
                abs_before: sum(&acc[0]),
                sq_before: sum(&acc[1]),
                abs_after: sum(&acc[2]),
                sq_after: sum(&acc[3]),
            }
        })
        .reduce(DeltaSums::default, DeltaSums::add)
}
