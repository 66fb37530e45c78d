//! The element-wise kernels of delta pruning on the CPU. `src/gpu` has the same two kernels in
//! WGSL and must give bit-identical results: the arithmetic is spelled out as separate f32
//! operations (δ = ft − base; kept = δ·scale; out = base + kept) with no fused multiply-add.

use rayon::prelude::*;

use super::rng::{DropThreshold, MaskKey};

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
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, o)| {
        let start = c * CHUNK;
        for (j, y) in o.iter_mut().enumerate() {
            let i = start + j;
            let b = base[i];
            *y = if key.keeps(first_index + i as u64, threshold) {
                let kept = (finetuned[i] - b) * scale;
                b + kept
            } else {
                b
            };
        }
    });
}

/// `out = base + δ` where |δ| ≥ `min_abs`, else `base` (magnitude pruning with a threshold
/// chosen beforehand, e.g. the k-th largest |δ|).
pub fn magnitude_threshold(base: &[f32], finetuned: &[f32], min_abs: f32, out: &mut [f32]) {
    assert!(base.len() == finetuned.len() && base.len() == out.len());
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(c, o)| {
        let start = c * CHUNK;
        for (j, y) in o.iter_mut().enumerate() {
            let i = start + j;
            let b = base[i];
            let d = finetuned[i] - b;
            *y = if d.abs() >= min_abs { b + d } else { b };
        }
    });
}
