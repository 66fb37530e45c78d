//! Masks that need no training: the k largest |δ| over all eligible tensors (one global
//! ranking, the learned mask's initialisation), k parameters at random, and the Delta lab's
//! DARE keep mask at the same rate.

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::mask::{Mask, MaskTensor};
use crate::counter_rng::{drop_threshold, MaskKey};

/// How many parameters a sparsity (kept fraction) keeps out of `numel`: at least one.
pub fn kept_count(sparsity: f64, numel: usize) -> usize {
    ((sparsity * numel as f64).round() as usize).clamp(1, numel)
}

/// The `k` largest |δ| of all `deltas` (ties broken by position).
pub fn top_k(names: &[(String, Vec<usize>)], deltas: &[&[f32]], k: usize) -> Mask {
    let mut all: Vec<f32> = deltas
        .iter()
        .flat_map(|d| d.iter().map(|v| v.abs()))
        .collect();
    let k = k.min(all.len());
    let mut mask = zeros(names);
    if k == 0 {
        return mask;
    }
    let (_, kth, _) = all.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    let threshold = *kth;
    // Everything strictly above the threshold, then ties in order until k are kept.
    let above: usize = deltas
        .iter()
        .map(|d| d.iter().filter(|v| v.abs() > threshold).count())
        .sum();
    let mut ties = k - above;
    for (t, d) in deltas.iter().enumerate() {
        for (i, v) in d.iter().enumerate() {
            let a = v.abs();
            if a > threshold || (a == threshold && ties > 0) {
                if a == threshold {
                    ties -= 1;
                }
                mask.tensors[t].set(i, true);
            }
        }
    }
    mask
}

/// `k` parameters drawn uniformly without replacement.
pub fn random_k(names: &[(String, Vec<usize>)], k: usize, seed: u64) -> Mask {
    let sizes: Vec<usize> = names.iter().map(|(_, s)| s.iter().product()).collect();
    let total: usize = sizes.iter().sum();
    let mut picks =
        rand::seq::index::sample(&mut StdRng::seed_from_u64(seed), total, k.min(total)).into_vec();
    picks.sort_unstable();
    let mut mask = zeros(names);
    let (mut t, mut start) = (0, 0);
    for p in picks {
        while p >= start + sizes[t] {
            start += sizes[t];
            t += 1;
        }
        mask.tensors[t].set(p - start, true);
    }
    mask
}

/// DARE's keep mask at keep rate `keep`, drawn as `alignscope prune --method dare` draws it
/// (same counter-based generator, keyed by seed and tensor name), so the baseline is the Delta
/// lab's own. Survivors are rescaled by 1/keep when applied.
pub fn dare(names: &[(String, Vec<usize>)], keep: f64, seed: u64) -> Mask {
    let threshold = drop_threshold(1.0 - keep);
    let mut mask = zeros(names);
    for t in &mut mask.tensors {
        let key = MaskKey::new(seed, &t.name);
        for i in 0..t.numel() {
            if key.keeps(i as u64, threshold) {
                t.set(i, true);
            }
        }
    }
    mask
}

fn zeros(names: &[(String, Vec<usize>)]) -> Mask {
    Mask {
        tensors: names.iter().map(|(n, s)| MaskTensor::zeros(n, s)).collect(),
        meta: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_keeps_exactly_the_largest_magnitudes_across_tensors() {
        let names = vec![("a".to_string(), vec![4]), ("b".to_string(), vec![3])];
        let a = [0.1, -0.9, 0.3, 0.3];
        let b = [0.5, -0.3, 0.0];
        let m = top_k(&names, &[&a, &b], 3);
        assert_eq!(m.count(), 3);
        // -0.9 and 0.5, then one of the three 0.3-ties, the first in order.
        assert!(m.tensors[0].get(1) && m.tensors[1].get(0) && m.tensors[0].get(2));
        assert!(!m.tensors[0].get(3) && !m.tensors[1].get(1));
    }

    #[test]
    fn random_k_and_dare_keep_the_asked_amount() {
        let names = vec![
            ("a".to_string(), vec![100, 10]),
            ("b".to_string(), vec![1000]),
        ];
        let m = random_k(&names, 37, 5);
        assert_eq!(m.count(), 37);
        assert_eq!(m, random_k(&names, 37, 5), "seeded");
        assert_ne!(m, random_k(&names, 37, 6));
        let d = dare(&names, 0.1, 1);
        assert!((150..=250).contains(&d.count()), "{}", d.count());
        assert_eq!(kept_count(1e-4, 10_000_000), 1000);
        assert_eq!(kept_count(1e-9, 100), 1);
    }
}
