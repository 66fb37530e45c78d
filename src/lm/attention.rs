//! Softmax attention of a group of query heads sharing one key/value head (grouped-query
//! attention) over positions held in a [`KvCache`].

use super::kv_cache::{KvCache, BLOCK_LEN};

/// The query heads of key/value head `kv_head` (`q`: `[group, head_dim]`) attending to
/// positions `start..end` of `layer`.
pub struct Query<'a> {
    pub layer: usize,
    pub kv_head: usize,
    pub q: &'a [f32],
    pub head_dim: usize,
    pub start: usize,
    pub end: usize,
    pub scale: f32,
}

/// Writes each query head's output (`[group, head_dim]`) to `out`; `scores` is scratch space.
pub fn attend(cache: &KvCache, query: &Query, scores: &mut Vec<f32>, out: &mut [f32]) {
    let hd = query.head_dim;
    let group = query.q.len() / hd;
    let len = query.end - query.start;
    scores.clear();
    scores.resize(group * len, 0.0);
    // Scores: a block's keys are stored transposed, so each query dimension multiplies a row of
    // BLOCK_LEN keys at once.
    for block in cache.blocks(query.layer, query.kv_head, query.start, query.end) {
        for (g, q) in query.q.chunks_exact(hd).enumerate() {
            let mut acc = [0f32; BLOCK_LEN];
            for (&qd, keys) in q.iter().zip(block.keys.chunks_exact(BLOCK_LEN)) {
                let keys: &[f32; BLOCK_LEN] = keys.try_into().expect("a row of keys");
                for l in 0..BLOCK_LEN {
                    acc[l] = qd.mul_add(keys[l], acc[l]);
                }
            }
            let at = g * len + block.first + block.slots.start - query.start;
            for (s, a) in scores[at..at + block.slots.len()]
                .iter_mut()
                .zip(&acc[block.slots.clone()])
            {
                *s = a * query.scale;
            }
        }
    }
    for row in scores.chunks_exact_mut(len) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        row.iter_mut().for_each(|s| *s = exp_nonpositive(*s - max));
        let sum: f32 = row.iter().sum();
        row.iter_mut().for_each(|s| *s /= sum);
    }
    out.fill(0.0);
    for block in cache.blocks(query.layer, query.kv_head, query.start, query.end) {
        for slot in block.slots.clone() {
            let v = &block.values[slot * hd..(slot + 1) * hd];
            let t = block.first + slot - query.start;
            for (g, o) in out.chunks_exact_mut(hd).enumerate() {
                let w = scores[g * len + t];
                for (o, x) in o.iter_mut().zip(v) {
                    *o = w.mul_add(*x, *o);
                }
            }
        }
    }
}

/// e^x for x ≤ 0 (scores minus their maximum), within a few ulp: Cephes' `expf` without
/// branches, so the softmax loop vectorises (a call to libm's `expf` per score does not).
fn exp_nonpositive(x: f32) -> f32 {
    let x = x.max(-87.0);
    // x = n·ln2 + r with |r| ≤ ln2/2; ln2 split in two so that n·ln2 is exact enough.
    let n = (x * std::f32::consts::LOG2_E + 12_582_912.0) - 12_582_912.0;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::exp_nonpositive;

    #[test]
    fn exp_matches_libm() {
        for i in 0..=17_400 {
            let x = -(i as f32) * 0.005;
            let (got, want) = (exp_nonpositive(x), x.exp());
            assert!(
                (got - want).abs() <= 4.0 * f32::EPSILON * want,
                "e^{x}: {got} vs {want}"
            );
        }
        // Below -87 it stays at e^-87: nothing next to the maximum's e^0 = 1.
        assert!(exp_nonpositive(-1000.0) < 2e-38);
    }
}
