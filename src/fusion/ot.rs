//! Entropic optimal transport in the log domain, as POT's `ot.sinkhorn(method="sinkhorn_log")`
//! (the solver of the transformer-fusion code): stable for small regularisers, rectangular
//! problems, arbitrary marginals. Same updates and stopping rule, so plans agree with POT's.

use anyhow::{ensure, Result};
use rayon::prelude::*;

/// A transport plan, row-major `rows × cols`.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub rows: usize,
    pub cols: usize,
    pub t: Vec<f64>,
}

impl Plan {
    /// ⟨T, C⟩.
    pub fn cost(&self, cost: &[f64]) -> f64 {
        self.t.iter().zip(cost).map(|(t, c)| t * c).sum()
    }

    pub fn row_sums(&self) -> Vec<f64> {
        self.t.chunks(self.cols).map(|r| r.iter().sum()).collect()
    }

    pub fn col_sums(&self) -> Vec<f64> {
        let mut s = vec![0.0; self.cols];
        for r in self.t.chunks(self.cols) {
            for (acc, v) in s.iter_mut().zip(r) {
                *acc += v;
            }
        }
        s
    }
}

#[derive(Debug, Clone, Copy)]
pub struct SinkhornOptions {
    pub max_iter: usize,
    /// Stop when ‖Tᵀ1 − b‖₂ falls below this (checked every 10 iterations, as POT does).
    pub tol: f64,
}

impl Default for SinkhornOptions {
    fn default() -> Self {
        Self {
            max_iter: 1000,
            tol: 1e-9,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SinkhornResult {
    pub plan: Plan,
    pub iterations: usize,
    /// The last measured marginal violation.
    pub err: f64,
}

/// Sizes agree, marginals are finite, non-negative and of equal mass, costs are finite.
pub(super) fn check_problem(a: &[f64], b: &[f64], cost: &[f64]) -> Result<()> {
    ensure!(!a.is_empty() && !b.is_empty(), "empty marginal");
    ensure!(
        cost.len() == a.len() * b.len(),
        "cost has {} entries for a {}×{} problem",
        cost.len(),
        a.len(),
        b.len()
    );
    ensure!(
        a.iter().chain(b).all(|x| x.is_finite() && *x >= 0.0),
        "marginals must be finite and non-negative"
    );
    ensure!(
        cost.iter().all(|c| c.is_finite()),
        "cost has a non-finite entry"
    );
    let (sa, sb) = (a.iter().sum::<f64>(), b.iter().sum::<f64>());
    ensure!(
        (sa - sb).abs() <= 1e-9 * sa.max(sb).max(1.0),
        "marginals carry different mass ({sa} and {sb})"
    );
    Ok(())
}

/// log Σ exp over a slice.
fn logsumexp(xs: impl Iterator<Item = f64> + Clone) -> f64 {
    let m = xs.clone().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + xs.map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// Merges two running log-sum-exp states (max, Σ exp(x − max)).
fn lse_push((m1, s1): (f64, f64), (m2, s2): (f64, f64)) -> (f64, f64) {
    if m2 == f64::NEG_INFINITY {
        (m1, s1)
    } else if m1 >= m2 {
        (m1, s1 + s2 * (m2 - m1).exp())
    } else {
        (m2, s2 + s1 * (m1 - m2).exp())
    }
}

/// Rows of the plan processed per parallel task.
const ROWS_PER_TASK: usize = 16;

/// Log-domain Sinkhorn for marginals `a` (rows), `b` (columns), cost row-major, regulariser
/// `reg` (the entropic weight ε of min ⟨T, C⟩ − ε H(T)).
pub fn sinkhorn_log(
    a: &[f64],
    b: &[f64],
    cost: &[f64],
    reg: f64,
    opts: SinkhornOptions,
) -> Result<SinkhornResult> {
    check_problem(a, b, cost)?;
    ensure!(
        reg > 0.0 && reg.is_finite(),
        "regulariser must be positive, got {reg}"
    );
    let (n, m) = (a.len(), b.len());
    let mr: Vec<f64> = cost.iter().map(|c| -c / reg).collect();
    let (loga, logb): (Vec<f64>, Vec<f64>) = (
        a.iter().map(|x| x.ln()).collect(),
        b.iter().map(|x| x.ln()).collect(),
    );
    let (mut u, mut v) = (vec![0.0; n], vec![0.0; m]);
    // Column log-sum-exp of Mr + u in one streaming pass: each row block keeps a running
    // (max, Σ exp(x − max)) per column; blocks combine the same way.
    let col_lse = |u: &[f64]| -> Vec<f64> {
        let empty = || vec![(f64::NEG_INFINITY, 0.0f64); m];
        mr.par_chunks(m * ROWS_PER_TASK)
            .enumerate()
            .map(|(k, block)| {
                let mut acc = empty();
                for (r, row) in block.chunks(m).enumerate() {
                    let ui = u[k * ROWS_PER_TASK + r];
                    for (a, x) in acc.iter_mut().zip(row) {
                        *a = lse_push(*a, (x + ui, 1.0));
                    }
                }
                acc
            })
            .reduce(empty, |mut x, y| {
                for (p, q) in x.iter_mut().zip(y) {
                    *p = lse_push(*p, q);
                }
                x
            })
            .into_iter()
            .map(|(mx, s)| {
                if mx == f64::NEG_INFINITY {
                    mx
                } else {
                    mx + s.ln()
                }
            })
            .collect()
    };
    let row_lse = |v: &[f64]| -> Vec<f64> {
        mr.par_chunks(m)
            .map(|row| logsumexp(row.iter().zip(v).map(|(x, vj)| x + vj)))
            .collect()
    };
    let mut err = f64::INFINITY;
    let mut iterations = 0;
    for ii in 0..opts.max_iter {
        iterations = ii + 1;
        v = logb.iter().zip(col_lse(&u)).map(|(lb, l)| lb - l).collect();
        u = loga.iter().zip(row_lse(&v)).map(|(la, l)| la - l).collect();
        if ii % 10 == 0 {
            let cols = plan(&mr, &u, &v, m).col_sums();
            err = cols
                .iter()
                .zip(b)
                .map(|(c, bj)| (c - bj).powi(2))
                .sum::<f64>()
                .sqrt();
            if err < opts.tol {
                break;
            }
        }
    }
    Ok(SinkhornResult {
        plan: plan(&mr, &u, &v, m),
        iterations,
        err,
    })
}

fn plan(mr: &[f64], u: &[f64], v: &[f64], m: usize) -> Plan {
    let mut t = vec![0.0; mr.len()];
    t.par_chunks_mut(m)
        .zip(mr.par_chunks(m))
        .zip(u.par_iter())
        .for_each(|((t, row), ui)| {
            for ((x, c), vj) in t.iter_mut().zip(row).zip(v) {
                *x = (c + ui + vj).exp();
            }
        });
    Plan {
        rows: u.len(),
        cols: m,
        t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marginals_hold_and_bad_problems_are_refused() {
        let (a, b) = (vec![0.5, 0.5], vec![0.2, 0.3, 0.5]);
        let cost = vec![0.0, 1.0, 2.0, 2.0, 1.0, 0.0];
        // Sinkhorn contracts like tanh(range(C)/4ε): a regulariser near the cost range converges fast.
        let r = sinkhorn_log(&a, &b, &cost, 0.5, SinkhornOptions::default()).unwrap();
        assert!(
            r.err < 1e-9 && r.iterations < 1000,
            "{} iterations, err {}",
            r.iterations,
            r.err
        );
        for (x, y) in r.plan.row_sums().iter().zip(&a) {
            assert!((x - y).abs() < 1e-8);
        }
        for (x, y) in r.plan.col_sums().iter().zip(&b) {
            assert!((x - y).abs() < 1e-8);
        }
        // No feasible plan beats the exact optimum, 0.2·0 + 0.3·1 + 0.5·0 = 0.3.
        assert!(
            r.plan.cost(&cost) >= 0.3 - 1e-12,
            "cost {}",
            r.plan.cost(&cost)
        );
        let e = sinkhorn_log(&a, &[1.0], &cost, 0.1, SinkhornOptions::default()).unwrap_err();
        assert!(e.to_string().contains("entries"));
        let e =
            sinkhorn_log(&a, &[0.2, 0.2, 0.2], &cost, 0.1, SinkhornOptions::default()).unwrap_err();
        assert!(e.to_string().contains("different mass"));
    }
}
