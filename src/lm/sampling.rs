//! Choosing the next token: greedy, temperature, top-k, top-p; seedable; with log-probabilities
//! and the top alternatives the model considered.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// Keep only the k most likely tokens; 0 keeps all.
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p; 1 keeps all.
    pub top_p: f32,
    pub seed: u64,
    /// How many alternatives (with log-probabilities) to report per token.
    pub alternatives: usize,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.7,
            top_k: 40,
            top_p: 0.95,
            seed: 42,
            alternatives: 5,
        }
    }
}

impl SamplingParams {
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            ..Self::default()
        }
    }
}

/// One chosen token. Log-probabilities are the model's own (temperature 1, no truncation), so
/// they mean the same whatever the sampling settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenChoice {
    pub id: u32,
    pub logprob: f32,
    /// Most likely tokens first, the chosen one included if it is among them.
    pub alternatives: Vec<(u32, f32)>,
}

pub struct Sampler {
    params: SamplingParams,
    rng: StdRng,
}

impl Sampler {
    pub fn new(params: SamplingParams) -> Self {
        let rng = StdRng::seed_from_u64(params.seed);
        Self { params, rng }
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Samples from raw logits.
    pub fn sample(&mut self, logits: &[f32]) -> TokenChoice {
        let logprobs = log_softmax(logits);
        let mut order: Vec<u32> = (0..logits.len() as u32).collect();
        let by_logit = |a: &u32, b: &u32| logits[*b as usize].total_cmp(&logits[*a as usize]);
        let p = &self.params;
        let keep = if p.temperature <= 0.0 {
            1
        } else if p.top_k > 0 {
            p.top_k.min(order.len())
        } else {
            order.len()
        };
        let need = keep.max(p.alternatives).min(order.len());
        if need < order.len() {
            order.select_nth_unstable_by(need - 1, by_logit);
            order.truncate(need);
        }
        order.sort_by(by_logit);
        let alternatives = order
            .iter()
            .take(p.alternatives)
            .map(|&i| (i, logprobs[i as usize]))
            .collect();
        let id = if p.temperature <= 0.0 {
            order[0]
        } else {
            self.draw(&order[..keep], logits)
        };
        TokenChoice {
            id,
            logprob: logprobs[id as usize],
            alternatives,
        }
    }

    /// Draws from `candidates` (sorted by logit, descending) at the set temperature and top-p.
    fn draw(&mut self, candidates: &[u32], logits: &[f32]) -> u32 {
        let t = self.params.temperature;
        let max = logits[candidates[0] as usize];
        let weights: Vec<f32> = candidates
            .iter()
            .map(|&i| ((logits[i as usize] - max) / t).exp())
            .collect();
        let total: f32 = weights.iter().sum();
        let mut cut = candidates.len();
        if self.params.top_p < 1.0 {
            let mut acc = 0.0;
            for (n, w) in weights.iter().enumerate() {
                acc += w / total;
                if acc >= self.params.top_p {
                    cut = n + 1;
                    break;
                }
            }
        }
        let kept: f32 = weights[..cut].iter().sum();
        let mut r = self.rng.random::<f32>() * kept;
        for (n, w) in weights[..cut].iter().enumerate() {
            if r < *w {
                return candidates[n];
            }
            r -= w;
        }
        candidates[cut - 1]
    }
}

pub fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = logits.iter().map(|l| (l - max).exp()).sum::<f32>().ln() + max;
    logits.iter().map(|l| l - lse).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_picks_the_largest_and_reports_normalised_logprobs() {
        let mut s = Sampler::new(SamplingParams {
            alternatives: 3,
            ..SamplingParams::greedy()
        });
        let c = s.sample(&[0.0, 3.0, 1.0, 2.0]);
        assert_eq!(c.id, 1);
        assert_eq!(
            c.alternatives.iter().map(|a| a.0).collect::<Vec<_>>(),
            vec![1, 3, 2]
        );
        let total: f32 = log_softmax(&[0.0, 3.0, 1.0, 2.0])
            .iter()
            .map(|l| l.exp())
            .sum();
        assert!((total - 1.0).abs() < 1e-5);
        assert!((c.logprob - log_softmax(&[0.0, 3.0, 1.0, 2.0])[1]).abs() < 1e-6);
    }

    #[test]
    fn same_seed_same_draws_and_top_k_is_respected() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let params = SamplingParams {
            temperature: 1.0,
            top_k: 3,
            top_p: 1.0,
            seed: 7,
            alternatives: 0,
        };
        let draw = |p: &SamplingParams| {
            let mut s = Sampler::new(p.clone());
            (0..200).map(|_| s.sample(&logits).id).collect::<Vec<_>>()
        };
        let a = draw(&params);
        assert_eq!(a, draw(&params));
        let allowed: Vec<u32> = {
            let mut idx: Vec<u32> = (0..50).collect();
            idx.sort_by(|x, y| logits[*y as usize].total_cmp(&logits[*x as usize]));
            idx[..3].to_vec()
        };
        assert!(a.iter().all(|id| allowed.contains(id)));
        assert_ne!(a, draw(&SamplingParams { seed: 8, ..params }));
    }

    #[test]
    fn top_p_keeps_only_the_nucleus() {
        // One token holds ~88% of the mass: with p = 0.5 it is the only one kept.
        let logits = [5.0, 3.0, 0.0, 0.0];
        let mut s = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.5,
            seed: 1,
            alternatives: 2,
        });
        assert!((0..100).all(|_| s.sample(&logits).id == 0));
        let mut s = Sampler::new(SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            seed: 1,
            alternatives: 2,
        });
        assert!((0..300).any(|_| s.sample(&logits).id != 0));
    }
}
