//! Choosing DAREx-q's rescale denominator q (Deng et al., "DARE the Extreme"): a 1-D search
//! from q = 1 − p upward on any objective (a validation metric, or the negative output change
//! on unlabelled inputs), and the analytical per-matrix q from calibration input means.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Serialize;

/// What a q search tried and chose.
#[derive(Debug, Clone, Serialize)]
pub struct QSearch {
    pub q: f64,
    pub objective: f64,
    /// (q, objective) in the order tried.
    pub tried: Vec<(f64, f64)>,
}

/// Coarse points before giving up on improvement (the official search stops after more than 3).
const PATIENCE: usize = 4;

/// Maximises `objective(q)` over q ∈ [1−p, 1]: a coarse grid from 1−p upward in steps of
/// (1−p) that stops after `PATIENCE` points without improvement, then a grid 10× finer around
/// the best point. Our step choice: the grid is in units of the keep rate, so p = 0.9 and
/// p = 0.999 are searched at the same relative resolution.
pub fn search_q(drop_rate: f64, objective: &mut dyn FnMut(f64) -> Result<f64>) -> Result<QSearch> {
    let keep = (1.0 - drop_rate).max(1e-6);
    let mut tried = Vec::new();
    let mut eval = |q: f64, tried: &mut Vec<(f64, f64)>| -> Result<f64> {
        let v = objective(q)?;
        tried.push((q, v));
        Ok(v)
    };
    let (mut best_q, mut best) = (keep, eval(keep, &mut tried)?);
    let mut stale = 0;
    let mut k = 2.0;
    while stale < PATIENCE && k * keep <= 1.0 + 1e-12 {
        let q = (k * keep).min(1.0);
        let v = eval(q, &mut tried)?;
        if v > best {
            (best_q, best, stale) = (q, v, 0);
        } else {
            stale += 1;
        }
        k += 1.0;
    }
    let (step, center) = (keep / 10.0, best_q);
    for i in -9..=9 {
        let q = center + i as f64 * step;
        if i == 0 || q < keep || q > 1.0 {
            continue;
        }
        let v = eval(q, &mut tried)?;
        if v > best {
            (best_q, best) = (q, v);
        }
    }
    Ok(QSearch {
        q: best_q,
        objective: best,
        tried,
    })
}

/// The confidence level of the analytical bound.
const GAMMA: f64 = 0.95;

/// φ(p) = (1 − 2p) / log((1 − p)/p) (its limit 1/2 at p = 1/2).
fn phi(p: f64) -> f64 {
    if (p - 0.5).abs() < 1e-9 {
        0.5
    } else {
        (1.0 - 2.0 * p) / ((1.0 - p) / p).ln()
    }
}

/// Analytical per-matrix q: with c_ij = δ_ij·mean(x_j), each output row i takes the q in
/// [1−p, 0.999] (step 0.001) minimising
/// |η(1 − (1−p)/q)·Σ_j c_ij + η²φ(p)·Σ_j c_ij² / (4q²) + log(2/(1−γ))|,
/// and the matrix takes the mean of its rows' q.
pub fn analytical_q(
    drop_rate: f64,
    eta: f64,
    delta: &[f32],
    cols: usize,
    input_mean: &[f32],
) -> f64 {
    let p = drop_rate;
    let keep = 1.0 - p;
    let bound = (2.0 / (1.0 - GAMMA)).ln();
    let ph = phi(p.clamp(1e-6, 1.0 - 1e-6));
    let grid: Vec<f64> = (0..)
        .map(|i| keep + i as f64 * 0.001)
        .take_while(|q| *q <= 0.999 + 1e-12)
        .collect();
    if grid.is_empty() {
        return keep;
    }
    let rows = delta.len() / cols;
    let total: f64 = (0..rows)
        .map(|i| {
            let row = &delta[i * cols..(i + 1) * cols];
            let (s1, s2) = row
                .iter()
                .zip(input_mean)
                .fold((0.0, 0.0), |(a, b), (d, m)| {
                    let c = (*d as f64) * (*m as f64);
                    (a + c, b + c * c)
                });
            let f = |q: f64| {
                (eta * (1.0 - keep / q) * s1 + eta * eta * ph * s2 / (4.0 * q * q) + bound).abs()
            };
            grid.iter()
                .copied()
                .min_by(|a, b| f(*a).total_cmp(&f(*b)))
                .expect("non-empty grid")
        })
        .sum();
    total / rows.max(1) as f64
}

/// η values tried for the analytical q (a log grid).
pub const ETA_GRID: [f64; 7] = [0.01, 0.1, 1.0, 10.0, 100.0, 1_000.0, 10_000.0];

/// Analytical q of every matrix that has calibration means, for one η.
pub fn analytical_q_all(
    drop_rate: f64,
    eta: f64,
    deltas: &BTreeMap<String, (Vec<f32>, usize)>,
    means: &BTreeMap<String, Vec<f32>>,
) -> BTreeMap<String, f64> {
    deltas
        .iter()
        .filter_map(|(name, (d, cols))| {
            let m = means.get(name)?;
            (m.len() == *cols).then(|| (name.clone(), analytical_q(drop_rate, eta, d, *cols, m)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_finds_the_peak_of_a_smooth_objective_from_one_minus_p() {
        let mut calls = 0;
        let r = search_q(0.9, &mut |q| {
            calls += 1;
            Ok(-(q - 0.37f64).powi(2))
        })
        .unwrap();
        assert!((r.q - 0.37).abs() < 1e-9, "q = {}", r.q);
        assert!((r.tried[0].0 - 0.1).abs() < 1e-12, "starts at 1 − p");
        assert!(calls < 30, "{calls} evaluations");
    }

    #[test]
    fn analytical_q_stays_in_range_and_is_one_minus_p_without_signal() {
        let d = vec![0.0f32; 12];
        let q = analytical_q(0.9, 1.0, &d, 4, &[0.0; 4]);
        assert!((0.1 - 1e-9..=0.999).contains(&q));
        // Strongly negative Σc pulls q upward (the first term must cancel the bound).
        let d = vec![-1.0f32; 4];
        let q_hi = analytical_q(0.9, 1.0, &d, 4, &[1.0; 4]);
        assert!(q_hi > 0.1, "q = {q_hi}");
    }
}
