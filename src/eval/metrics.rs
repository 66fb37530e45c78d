//! Metrics shared by every lab: accuracy, exact match, expected calibration error, perplexity
//! and retrieval precision@1.

/// Fraction of positions where `pred` equals `gold`.
pub fn accuracy(pred: &[usize], gold: &[usize]) -> f64 {
    assert_eq!(pred.len(), gold.len(), "one prediction per label");
    if gold.is_empty() {
        return 0.0;
    }
    pred.iter().zip(gold).filter(|(p, g)| p == g).count() as f64 / gold.len() as f64
}

/// Fraction of answers equal to the reference after trimming surrounding white space.
pub fn exact_match<S: AsRef<str>, T: AsRef<str>>(pred: &[S], gold: &[T]) -> f64 {
    assert_eq!(pred.len(), gold.len(), "one answer per reference");
    if gold.is_empty() {
        return 0.0;
    }
    let hits = pred
        .iter()
        .zip(gold)
        .filter(|(p, g)| p.as_ref().trim() == g.as_ref().trim())
        .count();
    hits as f64 / gold.len() as f64
}

/// One confidence bin of a reliability diagram.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ReliabilityBin {
    pub count: usize,
    pub mean_confidence: f64,
    pub accuracy: f64,
}

/// `bins` equal-width confidence bins over [0, 1] with their size, mean confidence and accuracy.
pub fn reliability(confidence: &[f32], correct: &[bool], bins: usize) -> Vec<ReliabilityBin> {
    assert_eq!(confidence.len(), correct.len());
    let mut count = vec![0usize; bins];
    let mut conf_sum = vec![0f64; bins];
    let mut hit_sum = vec![0f64; bins];
    for (&c, &ok) in confidence.iter().zip(correct) {
        let b = ((c as f64 * bins as f64) as usize).min(bins - 1);
        count[b] += 1;
        conf_sum[b] += c as f64;
        hit_sum[b] += f64::from(u8::from(ok));
    }
    (0..bins)
        .map(|b| {
            let n = count[b].max(1) as f64;
            ReliabilityBin {
                count: count[b],
                mean_confidence: conf_sum[b] / n,
                accuracy: hit_sum[b] / n,
            }
        })
        .collect()
}

/// Expected calibration error with `bins` equal-width confidence bins: the mean, weighted by
/// bin size, of |accuracy − mean confidence| (Guo et al., 2017).
pub fn expected_calibration_error(confidence: &[f32], correct: &[bool], bins: usize) -> f64 {
    ece_of_bins(&reliability(confidence, correct, bins))
}

/// ECE from a reliability diagram's bins.
pub fn ece_of_bins(bins: &[ReliabilityBin]) -> f64 {
    let n: usize = bins.iter().map(|b| b.count).sum();
    if n == 0 {
        return 0.0;
    }
    bins.iter()
        .map(|b| b.count as f64 * (b.accuracy - b.mean_confidence).abs())
        .sum::<f64>()
        / n as f64
}

/// exp(mean negative log-likelihood per token).
pub fn perplexity(total_nll: f64, tokens: usize) -> f64 {
    (total_nll / tokens.max(1) as f64).exp()
}

/// Fraction of queries whose best-scoring document (`scores[q][d]`) is the relevant one.
pub fn precision_at_1(scores: &[Vec<f32>], relevant: &[usize]) -> f64 {
    assert_eq!(scores.len(), relevant.len());
    let best: Vec<usize> = scores.iter().map(|row| argmax(row)).collect();
    accuracy(&best, relevant)
}

pub fn argmax(xs: &[f32]) -> usize {
    xs.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &x)| {
            if x > best.1 {
                (i, x)
            } else {
                best
            }
        })
        .0
}

pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|&x| (x - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

/// `ln softmax(logits)[index]`, computed stably.
pub fn log_prob(logits: &[f32], index: usize) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = logits
        .iter()
        .map(|&x| (x as f64 - max).exp())
        .sum::<f64>()
        .ln()
        + max;
    logits[index] as f64 - lse
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_on_hand_computed_cases() {
        assert_eq!(accuracy(&[1, 2, 3, 4], &[1, 2, 0, 0]), 0.5);
        assert_eq!(
            exact_match(&[" 82", "enots", "x"], &["82", "enots", "y"]),
            2.0 / 3.0
        );
        // Two bins: {0.9, 0.8} with one hit → |0.5 − 0.85|·2/4; {0.2, 0.3} with none → 0.25·2/4.
        let ece =
            expected_calibration_error(&[0.9, 0.8, 0.2, 0.3], &[true, false, false, false], 2);
        assert!((ece - (0.35 * 0.5 + 0.25 * 0.5)).abs() < 1e-6, "{ece}");
        assert!((perplexity(4.0 * 2f64.ln(), 4) - 2.0).abs() < 1e-12);
        let scores = vec![vec![0.1, 0.9], vec![0.8, 0.2], vec![0.3, 0.4]];
        assert_eq!(precision_at_1(&scores, &[1, 0, 0]), 2.0 / 3.0);
        assert!((log_prob(&[0.0, 0.0], 1) - 0.5f64.ln()).abs() < 1e-9);
    }
}
