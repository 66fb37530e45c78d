//! The min-norm point in the convex hull of task gradients (Sener & Koltun, 2018, "Multi-Task
//! Learning as Multi-Objective Optimization"), by Frank-Wolfe: the weights that MGDA-UB gives the
//! losses when the gradients are taken at the shared representation.

/// Weights on the simplex minimising `|Σ αᵢ gᵢ|`. All-zero gradients get weight 0 (a loss with
/// nothing to say in this batch must not absorb the whole weight); if every gradient is zero the
/// weights are uniform.
pub fn min_norm_weights(grads: &[Vec<f32>]) -> Vec<f64> {
    let n = grads.len();
    let live: Vec<usize> = (0..n)
        .filter(|&i| grads[i].iter().any(|&x| x != 0.0))
        .collect();
    let mut weights = vec![0.0; n];
    if live.is_empty() {
        return vec![1.0 / n.max(1) as f64; n];
    }
    let dot =
        |a: &[f32], b: &[f32]| -> f64 { a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum() };
    let m: Vec<Vec<f64>> = live
        .iter()
        .map(|&i| live.iter().map(|&j| dot(&grads[i], &grads[j])).collect())
        .collect();
    let k = live.len();
    let mut alpha = vec![1.0 / k as f64; k];
    for _ in 0..250 {
        let m_alpha: Vec<f64> = (0..k)
            .map(|i| (0..k).map(|j| m[i][j] * alpha[j]).sum())
            .collect();
        let t = (0..k)
            .min_by(|&a, &b| m_alpha[a].total_cmp(&m_alpha[b]))
            .unwrap_or(0);
        // Line search between the current point v1 = Σ α g and the vertex v2 = g_t.
        let v1v1: f64 = (0..k).map(|i| alpha[i] * m_alpha[i]).sum();
        let v1v2 = m_alpha[t];
        let v2v2 = m[t][t];
        let denom = v1v1 + v2v2 - 2.0 * v1v2;
        let gamma = if denom <= 1e-12 {
            0.0
        } else {
            ((v1v1 - v1v2) / denom).clamp(0.0, 1.0)
        };
        let mut change = 0.0;
        for (i, a) in alpha.iter_mut().enumerate() {
            let target = if i == t { 1.0 } else { 0.0 };
            let next = (1.0 - gamma) * *a + gamma * target;
            change += (next - *a).abs();
            *a = next;
        }
        if change < 1e-7 {
            break;
        }
    }
    for (&i, a) in live.iter().zip(alpha) {
        weights[i] = a;
    }
    weights
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_norm_of_opposed_and_orthogonal_gradients() {
        // Opposed gradients of equal size cancel at equal weights.
        let w = min_norm_weights(&[vec![1.0, 0.0], vec![-1.0, 0.0]]);
        assert!((w[0] - 0.5).abs() < 1e-6, "{w:?}");
        // Orthogonal (1,0) and (0,2): the min-norm point weighs the short one 4:1.
        let w = min_norm_weights(&[vec![1.0, 0.0], vec![0.0, 2.0]]);
        assert!(
            (w[0] - 0.8).abs() < 1e-4 && (w[1] - 0.2).abs() < 1e-4,
            "{w:?}"
        );
        // A silent loss gets no weight.
        let w = min_norm_weights(&[vec![1.0, 1.0], vec![0.0, 0.0], vec![1.0, -1.0]]);
        assert_eq!(w[1], 0.0);
        assert!((w[0] + w[2] - 1.0).abs() < 1e-9);
    }
}
