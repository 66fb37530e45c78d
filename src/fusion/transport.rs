//! Transport maps between the neurons of two layers: cost matrices from neuron features,
//! exact or entropic plans, and the two normalisations the fusion uses.

use anyhow::Result;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::emd::emd;
use super::ot::{sinkhorn_log, Plan, SinkhornOptions};

/// A dense row-major f32 matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Mat {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Mat {
    pub fn new(rows: usize, cols: usize, data: Vec<f32>) -> Self {
        debug_assert_eq!(rows * cols, data.len());
        Self { rows, cols, data }
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// `self · other`.
    pub fn matmul(&self, other: &Mat) -> Mat {
        assert_eq!(self.cols, other.rows, "matmul: inner sizes differ");
        let mut out = vec![0f32; self.rows * other.cols];
        out.par_chunks_mut(other.cols.max(1))
            .enumerate()
            .for_each(|(i, dst)| {
                for (k, &a) in self.row(i).iter().enumerate() {
                    if a != 0.0 {
                        for (d, &b) in dst.iter_mut().zip(other.row(k)) {
                            *d += a * b;
                        }
                    }
                }
            });
        Mat::new(self.rows, other.cols, out)
    }

    pub fn transpose(&self) -> Mat {
        let mut out = vec![0f32; self.data.len()];
        for i in 0..self.rows {
            for j in 0..self.cols {
                out[j * self.rows + i] = self.data[i * self.cols + j];
            }
        }
        Mat::new(self.cols, self.rows, out)
    }

    /// Rows side by side: `[self | other]`.
    pub fn beside(&self, other: &Mat) -> Mat {
        assert_eq!(self.rows, other.rows, "beside: row counts differ");
        let data = (0..self.rows)
            .flat_map(|i| self.row(i).iter().chain(other.row(i)).copied())
            .collect();
        Mat::new(self.rows, self.cols + other.cols, data)
    }

    /// Each row scaled to unit Euclidean norm (zero rows stay zero).
    pub fn unit_rows(mut self) -> Mat {
        for r in self.data.chunks_mut(self.cols.max(1)) {
            let n = r.iter().map(|x| x * x).sum::<f32>().sqrt();
            if n > 0.0 {
                r.iter_mut().for_each(|x| *x /= n);
            }
        }
        self
    }
}

/// Euclidean distances between the rows of `a` and of `b`, divided by their maximum, as the
/// fusion code does (so one regulariser suits every layer).
pub fn normalised_cost(a: &Mat, b: &Mat) -> Vec<f64> {
    assert_eq!(a.cols, b.cols, "cost: feature lengths differ");
    let sq = |m: &Mat, i: usize| m.row(i).iter().map(|&x| x as f64 * x as f64).sum::<f64>();
    let nb: Vec<f64> = (0..b.rows).map(|j| sq(b, j)).collect();
    let mut cost: Vec<f64> = (0..a.rows)
        .into_par_iter()
        .flat_map_iter(|i| {
            let na = sq(a, i);
            let nb = &nb;
            (0..b.rows).map(move |j| {
                let dot: f64 = a
                    .row(i)
                    .iter()
                    .zip(b.row(j))
                    .map(|(&x, &y)| x as f64 * y as f64)
                    .sum();
                (na + nb[j] - 2.0 * dot).max(0.0).sqrt()
            })
        })
        .collect();
    let max = cost.iter().cloned().fold(0.0, f64::max);
    if max > 0.0 {
        cost.iter_mut().for_each(|c| *c /= max);
    }
    cost
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Solver {
    /// Exact OT (network simplex): hard maps, permutations when the widths agree.
    Emd,
    /// Log-domain Sinkhorn with this regulariser on the max-normalised cost: soft maps.
    Sinkhorn { reg: f64 },
}

impl Solver {
    pub fn label(&self) -> String {
        match self {
            Solver::Emd => "OT hard (exact)".into(),
            Solver::Sinkhorn { reg } => format!("OT soft (Sinkhorn ε={reg})"),
        }
    }
}

/// The plan of uniform marginals between `rows` and `cols` neurons under `cost`.
pub fn solve(rows: usize, cols: usize, cost: &[f64], solver: Solver) -> Result<Plan> {
    let a = vec![1.0 / rows as f64; rows];
    let b = vec![1.0 / cols as f64; cols];
    Ok(match solver {
        Solver::Emd => emd(&a, &b, cost, 10_000_000)?.plan,
        Solver::Sinkhorn { reg } => {
            sinkhorn_log(&a, &b, cost, reg, SinkhornOptions::default())?.plan
        }
    })
}

/// A plan from the aligned model's neurons (rows) to the anchor's (columns), with the cost it
/// was solved on (empty for maps combined from others, such as residual streams).
#[derive(Debug, Clone)]
pub struct TransportMap {
    pub name: String,
    pub plan: Plan,
    pub cost: Vec<f64>,
}

impl TransportMap {
    pub fn solved(
        name: String,
        features_a: &Mat,
        features_b: &Mat,
        solver: Solver,
    ) -> Result<Self> {
        let cost = normalised_cost(features_a, features_b);
        let plan = solve(features_a.rows, features_b.rows, &cost, solver)?;
        Ok(Self { name, plan, cost })
    }

    /// `(1 − w)·self + w·other`: still a plan with the same marginals.
    pub fn blend(&self, other: &TransportMap, w: f64, name: String) -> Self {
        let t = self
            .plan
            .t
            .iter()
            .zip(&other.plan.t)
            .map(|(x, y)| (1.0 - w) * x + w * y)
            .collect();
        Self {
            name,
            plan: Plan {
                rows: self.plan.rows,
                cols: self.plan.cols,
                t,
            },
            cost: Vec::new(),
        }
    }

    /// Each row divided by its sum: anchor neuron j stands in for aligned neuron i with weight
    /// R[i][j]. Input sides take `Ŵ = W·R` (the paper's `n₀·T` for uniform marginals).
    pub fn inputs(&self) -> Mat {
        let sums = self.plan.row_sums();
        self.scaled(|i, _| sums[i])
    }

    /// Each column divided by its sum: anchor neuron j is the weighted mean Σᵢ C[i][j]·neuronᵢ.
    /// Output sides take `W̃ = Cᵀ·Ŵ`. Equal to [`Self::inputs`] for equal widths.
    pub fn outputs(&self) -> Mat {
        let sums = self.plan.col_sums();
        self.scaled(|_, j| sums[j])
    }

    /// Mean share of each aligned neuron's mass on its single best anchor neuron: 1 for hard
    /// maps, towards 1/cols as maps blur.
    pub fn sharpness(&self) -> f64 {
        let r = self.inputs();
        (0..r.rows)
            .map(|i| r.row(i).iter().cloned().fold(0f32, f32::max) as f64)
            .sum::<f64>()
            / r.rows.max(1) as f64
    }

    /// ⟨T, C⟩ and the mean cost an uninformed (uniform) plan pays; `None` for maps blended
    /// from others, which have no cost of their own.
    pub fn transport_and_mean_cost(&self) -> Option<(f64, f64)> {
        (!self.cost.is_empty()).then(|| {
            let mean = self.cost.iter().sum::<f64>() / self.cost.len() as f64;
            (self.plan.cost(&self.cost), mean)
        })
    }

    /// B's neurons ordered by the A neuron that sends each the most mass, so a hard map
    /// drawn in this column order is a diagonal and a soft one a blurred diagonal.
    pub fn matched_column_order(&self) -> Vec<usize> {
        let (r, c) = (self.plan.rows, self.plan.cols);
        let best_row = |j: usize| {
            (0..r)
                .max_by(|&x, &y| self.plan.t[x * c + j].total_cmp(&self.plan.t[y * c + j]))
                .unwrap_or(0)
        };
        let mut order: Vec<usize> = (0..c).collect();
        order.sort_by_key(|&j| (best_row(j), j));
        order
    }

    fn scaled(&self, sum: impl Fn(usize, usize) -> f64) -> Mat {
        let (r, c) = (self.plan.rows, self.plan.cols);
        let data = (0..r * c)
            .map(|k| {
                let s = sum(k / c, k % c);
                if s > 0.0 {
                    (self.plan.t[k] / s) as f32
                } else {
                    0.0
                }
            })
            .collect();
        Mat::new(r, c, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_maps_recover_a_permutation_of_features() {
        // b's neurons are a's in the order 2, 0, 3, 1.
        let a = Mat::new(4, 2, vec![0., 0., 1., 0., 0., 1., 1., 1.]);
        let order = [2, 0, 3, 1];
        let b = Mat::new(
            4,
            2,
            order.iter().flat_map(|&i| a.row(i).to_vec()).collect(),
        );
        let map = TransportMap::solved("t".into(), &a, &b, Solver::Emd).unwrap();
        let c = map.outputs();
        // Cᵀ moves a's rows into b's order.
        assert_eq!(c.transpose().matmul(&a), b);
        assert_eq!(map.inputs(), c);
        // b's neuron 1 is a's 0, 3 is a's 1, 0 is a's 2, 2 is a's 3.
        assert_eq!(map.matched_column_order(), [1, 3, 0, 2]);
    }

    #[test]
    fn rectangular_maps_are_stochastic_on_the_right_side() {
        let a = Mat::new(3, 1, vec![0., 1., 2.]);
        let b = Mat::new(2, 1, vec![0., 2.]);
        let map = TransportMap::solved("t".into(), &a, &b, Solver::Sinkhorn { reg: 0.1 }).unwrap();
        let r = map.inputs();
        let c = map.outputs();
        for i in 0..3 {
            assert!((r.row(i).iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
        for j in 0..2 {
            assert!(((0..3).map(|i| c.row(i)[j]).sum::<f32>() - 1.0).abs() < 1e-5);
        }
    }
}
