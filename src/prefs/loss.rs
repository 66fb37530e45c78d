//! The preference losses on per-answer scores `S_i` (length-normalised log-likelihoods, best
//! answer first): KnowPAT's ranked alignment loss and DPO's pair-wise loss.

use candle_core::{Result, Tensor};

/// `log(1 + e^x)` without overflow: `max(x, 0) + log(1 + e^{-|x|})`.
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?
}

/// The weights `w_i = (S_i − S_min) / (S_max − S_min)` of the scores, best first (all 1 when
/// the scores are equal).
pub fn margin_weights(scores: &[f32]) -> Vec<f32> {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let min = scores.iter().copied().fold(f32::INFINITY, f32::min);
    scores
        .iter()
        .map(|s| match max - min > 1e-12 {
            true => (s - min) / (max - min),
            false => 1.0,
        })
        .collect()
}

/// KnowPAT's alignment loss over the scores `[n]` of a ranked set, best first:
/// `1/(n−1) Σ_{i<n−1} w_i [log(1+e^{−S_i}) + 1/(n−i−1) Σ_{j>i} log(1+e^{S_j})]`, the weights
/// detached. Written as `a·softplus(−S) + b·softplus(S)` with the coefficients gathered.
pub fn align_loss(scores: &Tensor) -> Result<Tensor> {
    let n = scores.dim(0)?;
    if n < 2 {
        return scores.zeros_like()?.sum_all();
    }
    let w = margin_weights(&scores.to_vec1::<f32>()?);
    let mut a = vec![0f32; n];
    let mut b = vec![0f32; n];
    for i in 0..n - 1 {
        a[i] = w[i] / (n - 1) as f32;
        for bj in b.iter_mut().skip(i + 1) {
            *bj += w[i] / ((n - 1) * (n - i - 1)) as f32;
        }
    }
    let dev = scores.device();
    let a = Tensor::from_vec(a, n, dev)?;
    let b = Tensor::from_vec(b, n, dev)?;
    (softplus(&scores.neg()?)? * a)?.sum_all()? + (softplus(scores)? * b)?.sum_all()?
}

/// DPO's loss for one pair from summed log-likelihoods under the policy and the frozen
/// reference: `−log σ(β[(π_c − ref_c) − (π_r − ref_r)])`.
pub fn dpo_loss(
    chosen: &Tensor,
    rejected: &Tensor,
    ref_chosen: f32,
    ref_rejected: f32,
    beta: f64,
) -> Result<Tensor> {
    let margin = ((chosen - rejected)? - (ref_chosen - ref_rejected) as f64)?;
    softplus(&(margin * -beta)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn sp(x: f64) -> f64 {
        (1.0 + x.exp()).ln()
    }

    #[test]
    fn align_loss_is_the_published_double_sum_and_pushes_the_best_up() {
        let s = [-0.4f32, -1.3, -2.0, -3.1];
        let var = Var::new(&s, &Device::Cpu).unwrap();
        let loss = align_loss(var.as_tensor()).unwrap();
        // The formula as written, loop by loop.
        let (max, min) = (s[0] as f64, s[3] as f64);
        let mut want = 0.0;
        for i in 0..3 {
            let mut li = sp(-s[i] as f64);
            for &sj in &s[i + 1..] {
                li += sp(sj as f64) / (3 - i) as f64;
            }
            want += li * (s[i] as f64 - min) / (max - min);
        }
        want /= 3.0;
        let got = loss.to_scalar::<f32>().unwrap() as f64;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        let grads = loss.backward().unwrap();
        let g = grads
            .get(var.as_tensor())
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert!(g[0] < 0.0, "the best answer's score goes up: {g:?}");
        assert!(g[3] > 0.0, "the worst answer's score goes down: {g:?}");
        assert_eq!(margin_weights(&[1.0, 1.0]), vec![1.0, 1.0]);
    }

    #[test]
    fn dpo_loss_is_log_two_at_the_reference_and_falls_with_the_margin() {
        let c = Tensor::new(-10f32, &Device::Cpu).unwrap();
        let r = Tensor::new(-12f32, &Device::Cpu).unwrap();
        let at_ref = dpo_loss(&c, &r, -10.0, -12.0, 0.1).unwrap();
        assert!((at_ref.to_scalar::<f32>().unwrap() - 2f32.ln()).abs() < 1e-6);
        let better = dpo_loss(&c, &r, -11.0, -11.0, 0.1).unwrap();
        assert!(better.to_scalar::<f32>().unwrap() < 2f32.ln());
        let big = softplus(&Tensor::new(200f32, &Device::Cpu).unwrap()).unwrap();
        assert!((big.to_scalar::<f32>().unwrap() - 200.0).abs() < 1e-3);
    }
}
