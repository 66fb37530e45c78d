//! Distribution metrics on feature vectors: the Fréchet distance (FID's formula) and
//! precision/recall with k-nearest-neighbour manifolds (Kynkäänniemi et al., 2019, k = 3):
//! precision is the share of generated samples inside the real manifold (quality), recall
//! the share of real samples inside the generated one (diversity).

type Matrix = Vec<Vec<f64>>;

fn mean_and_covariance(rows: &[Vec<f32>]) -> (Vec<f64>, Matrix) {
    let n = rows.len().max(1) as f64;
    let d = rows.first().map_or(0, Vec::len);
    let mut mean = vec![0f64; d];
    for r in rows {
        for (m, &v) in mean.iter_mut().zip(r) {
            *m += v as f64 / n;
        }
    }
    let mut cov = vec![vec![0f64; d]; d];
    for r in rows {
        let c: Vec<f64> = r.iter().zip(&mean).map(|(&v, m)| v as f64 - m).collect();
        for (row, ci) in cov.iter_mut().zip(&c) {
            for (v, cj) in row.iter_mut().zip(&c) {
                *v += ci * cj;
            }
        }
    }
    let denom = (rows.len().max(2) - 1) as f64;
    for v in cov.iter_mut().flatten() {
        *v /= denom;
    }
    (mean, cov)
}

/// Eigenvalues and eigenvectors (columns) of a symmetric matrix, by cyclic Jacobi rotations.
fn symmetric_eigen(mut a: Matrix) -> (Vec<f64>, Matrix) {
    let n = a.len();
    let mut v: Matrix = (0..n)
        .map(|i| (0..n).map(|j| (i == j) as u8 as f64).collect())
        .collect();
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i][j] * a[i][j])
            .sum();
        let scale: f64 = (0..n).map(|i| a[i][i] * a[i][i]).sum::<f64>().max(1e-300);
        if off <= 1e-22 * scale {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                if a[p][q].abs() < 1e-300 {
                    continue;
                }
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for row in a.iter_mut() {
                    let (akp, akq) = (row[p], row[q]);
                    row[p] = c * akp - s * akq;
                    row[q] = s * akp + c * akq;
                }
                let (low, high) = a.split_at_mut(q);
                for (x, y) in low[p].iter_mut().zip(high[0].iter_mut()) {
                    let (apk, aqk) = (*x, *y);
                    *x = c * apk - s * aqk;
                    *y = s * apk + c * aqk;
                }
                for row in v.iter_mut() {
                    let (vkp, vkq) = (row[p], row[q]);
                    row[p] = c * vkp - s * vkq;
                    row[q] = s * vkp + c * vkq;
                }
            }
        }
    }
    ((0..n).map(|i| a[i][i]).collect(), v)
}

fn matmul(a: &Matrix, b: &Matrix) -> Matrix {
    let n = a.len();
    let m = b.first().map_or(0, Vec::len);
    let mut out = vec![vec![0f64; m]; n];
    for i in 0..n {
        for (k, &aik) in a[i].iter().enumerate() {
            for j in 0..m {
                out[i][j] += aik * b[k][j];
            }
        }
    }
    out
}

/// The symmetric square root of a positive semi-definite matrix.
fn sqrt_psd(a: &Matrix) -> Matrix {
    let (values, vectors) = symmetric_eigen(a.clone());
    let n = a.len();
    let mut out = vec![vec![0f64; n]; n];
    for (k, &l) in values.iter().enumerate() {
        let s = l.max(0.0).sqrt();
        for i in 0..n {
            for j in 0..n {
                out[i][j] += s * vectors[i][k] * vectors[j][k];
            }
        }
    }
    out
}

/// `|μ₁ − μ₂|² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½)`, with `Tr((Σ₁Σ₂)^½)` computed as the trace of
/// `(Σ₁^½ Σ₂ Σ₁^½)^½`, a symmetric matrix with the same eigenvalues.
pub fn frechet_distance(real: &[Vec<f32>], fake: &[Vec<f32>]) -> f64 {
    let (m1, c1) = mean_and_covariance(real);
    let (m2, c2) = mean_and_covariance(fake);
    let mean_term: f64 = m1.iter().zip(&m2).map(|(a, b)| (a - b) * (a - b)).sum();
    let root = sqrt_psd(&c1);
    let middle = matmul(&matmul(&root, &c2), &root);
    let (values, _) = symmetric_eigen(middle);
    let cross: f64 = values.iter().map(|l| l.max(0.0).sqrt()).sum();
    let trace = |c: &Matrix| (0..c.len()).map(|i| c[i][i]).sum::<f64>();
    (mean_term + trace(&c1) + trace(&c2) - 2.0 * cross).max(0.0)
}

fn distance2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

/// Each row's squared distance to its k-th nearest other row.
fn kth_neighbour_radii(rows: &[Vec<f32>], k: usize) -> Vec<f32> {
    use rayon::prelude::*;
    rows.par_iter()
        .enumerate()
        .map(|(i, a)| {
            let mut d: Vec<f32> = rows
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, b)| distance2(a, b))
                .collect();
            let k = k.min(d.len()).max(1) - 1;
            d.select_nth_unstable_by(k, f32::total_cmp);
            d[k]
        })
        .collect()
}

/// The share of `queries` inside some ball of the `manifold` (centre, squared radius).
fn coverage(manifold: &[Vec<f32>], radii: &[f32], queries: &[Vec<f32>]) -> f64 {
    use rayon::prelude::*;
    let inside = queries
        .par_iter()
        .filter(|q| {
            manifold
                .iter()
                .zip(radii)
                .any(|(m, &r)| distance2(q, m) <= r)
        })
        .count();
    inside as f64 / queries.len().max(1) as f64
}

/// (precision, recall) with k-NN manifolds.
pub fn precision_recall(real: &[Vec<f32>], fake: &[Vec<f32>], k: usize) -> (f64, f64) {
    let real_radii = kth_neighbour_radii(real, k);
    let fake_radii = kth_neighbour_radii(fake, k);
    (
        coverage(real, &real_radii, fake),
        coverage(fake, &fake_radii, real),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    fn gaussian(n: usize, d: usize, shift: f32, scale: f32, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                (0..d)
                    .map(|_| {
                        let u1: f32 = rng.random_range(f32::EPSILON..1.0);
                        let u2: f32 = rng.random();
                        shift + scale * (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn eigen_decomposition_rebuilds_the_matrix() {
        let a = vec![
            vec![4.0, 1.0, 0.5],
            vec![1.0, 3.0, 0.2],
            vec![0.5, 0.2, 1.0],
        ];
        let root = sqrt_psd(&a);
        let back = matmul(&root, &root);
        for i in 0..3 {
            for j in 0..3 {
                assert!((back[i][j] - a[i][j]).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn frechet_distance_of_known_gaussians() {
        // N(0, I) vs N(1, 4I) in d dimensions: d·1 + d·(1 + 4 − 2·2) = 2d.
        let d = 4;
        let a = gaussian(20000, d, 0.0, 1.0, 1);
        let b = gaussian(20000, d, 1.0, 2.0, 2);
        let fd = frechet_distance(&a, &b);
        assert!((fd - 2.0 * d as f64).abs() < 0.3, "{fd}");
        let same = frechet_distance(&a, &gaussian(20000, d, 0.0, 1.0, 3));
        assert!(same < 0.05, "{same}");
    }

    #[test]
    fn collapse_keeps_precision_and_loses_recall() {
        let real = gaussian(400, 3, 0.0, 1.0, 1);
        let good = gaussian(400, 3, 0.0, 1.0, 2);
        let collapsed = gaussian(400, 3, 0.0, 0.1, 3);
        let (p, r) = precision_recall(&real, &good, 3);
        assert!(p > 0.8 && r > 0.8, "{p} {r}");
        let (p, r) = precision_recall(&real, &collapsed, 3);
        assert!(p > 0.5 && r < 0.05, "{p} {r}");
    }
}
