//! Answer metrics against the gold answer: sentence BLEU-4 (add-one smoothing for the 2- to
//! 4-gram precisions, Lin & Och's smoothing 2, with the brevity penalty) and ROUGE-L F1
//! (longest common subsequence), both over SQuAD-normalised words.

use crate::rag::score::normalise;

fn words(text: &str) -> Vec<String> {
    normalise(text)
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(String::from)
        .collect()
}

fn ngrams(w: &[String], n: usize) -> std::collections::HashMap<&[String], usize> {
    let mut out = std::collections::HashMap::new();
    for g in w.windows(n) {
        *out.entry(g).or_insert(0) += 1;
    }
    out
}

pub fn bleu(reply: &str, gold: &str) -> f64 {
    let (c, r) = (words(reply), words(gold));
    if c.is_empty() || r.is_empty() {
        return 0.0;
    }
    let mut log_p = 0.0;
    for n in 1..=4 {
        let (cand, refs) = (ngrams(&c, n), ngrams(&r, n));
        let matched: usize = cand
            .iter()
            .map(|(g, k)| (*k).min(*refs.get(g).unwrap_or(&0)))
            .sum();
        let total = c.len().saturating_sub(n - 1);
        let (m, t) = match n {
            1 => (matched as f64, total as f64),
            _ => (matched as f64 + 1.0, total as f64 + 1.0),
        };
        if m == 0.0 {
            return 0.0;
        }
        log_p += (m / t).ln() / 4.0;
    }
    let bp = match c.len() < r.len() {
        true => (1.0 - r.len() as f64 / c.len() as f64).exp(),
        false => 1.0,
    };
    bp * log_p.exp()
}

pub fn rouge_l(reply: &str, gold: &str) -> f64 {
    let (c, r) = (words(reply), words(gold));
    if c.is_empty() || r.is_empty() {
        return 0.0;
    }
    let mut row = vec![0usize; r.len() + 1];
    for a in &c {
        let mut diag = 0;
        for (j, b) in r.iter().enumerate() {
            let up = row[j + 1];
            row[j + 1] = match a == b {
                true => diag + 1,
                false => row[j + 1].max(row[j]),
            };
            diag = up;
        }
    }
    let lcs = row[r.len()] as f64;
    if lcs == 0.0 {
        return 0.0;
    }
    let (p, rec) = (lcs / c.len() as f64, lcs / r.len() as f64);
    2.0 * p * rec / (p + rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bleu_and_rouge_reward_the_gold_wording() {
        let gold = "The capital of Peru is Lima. Source: (Peru, capital, Lima).";
        assert!((bleu(gold, gold) - 1.0).abs() < 1e-9);
        assert!((rouge_l(gold, gold) - 1.0).abs() < 1e-9);
        // One word of eight: a perfect unigram precision, crushed by the brevity penalty.
        assert!(bleu("Lima", gold) < 0.01);
        assert_eq!(bleu("Paris", gold), 0.0);
        let near = "The capital of Peru is Lima.";
        assert!(bleu(near, gold) > 0.2 && bleu(near, gold) < 1.0);
        // LCS of 3 words: precision 3/3, recall 3/5.
        assert!((rouge_l("capital peru lima", "capital of peru is lima") - 0.75).abs() < 1e-9);
    }
}
