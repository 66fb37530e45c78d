//! Softmax attention of one query head over positions held in a [`KvCache`].

use super::kernels::dot::f32_dot;
use super::kv_cache::KvCache;

/// One query head attending to positions `start..end` of `layer`, key/value head `kv_head`.
pub struct Query<'a> {
    pub layer: usize,
    pub kv_head: usize,
    pub q: &'a [f32],
    pub start: usize,
    pub end: usize,
    pub scale: f32,
}

/// Writes the attention output (`head_dim` floats) to `out`; `scores` is scratch space.
pub fn attend(cache: &KvCache, query: &Query, scores: &mut Vec<f32>, out: &mut [f32]) {
    let hd = query.q.len();
    scores.clear();
    for (_, keys) in cache.runs(query.layer, 0, query.kv_head, query.start, query.end) {
        scores.extend(
            keys.chunks_exact(hd)
                .map(|k| f32_dot(query.q, k) * query.scale),
        );
    }
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    out.fill(0.0);
    let mut weights = scores.iter();
    for (_, values) in cache.runs(query.layer, 1, query.kv_head, query.start, query.end) {
        for (v, w) in values.chunks_exact(hd).zip(&mut weights) {
            let w = w / sum;
            for (o, x) in out.iter_mut().zip(v) {
                *o += w * x;
            }
        }
    }
}
