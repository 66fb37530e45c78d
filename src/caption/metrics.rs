//! Caption metrics: retrieval precision at 1 within batches, and similarity to the reference
//! captions — corpus BLEU-4 and CIDEr-D, both as the COCO caption evaluation computes them
//! (BLEU's brevity penalty against the closest reference length; CIDEr-D with tf-idf n-grams
//! 1–4, clipped counts, a Gaussian length penalty of σ = 6 and the factor 10).

use std::collections::{HashMap, HashSet};

type Counts = HashMap<Vec<String>, f64>;

fn ngrams(words: &[String], n: usize) -> Counts {
    let mut c = Counts::new();
    for w in words.windows(n) {
        *c.entry(w.to_vec()).or_default() += 1.0;
    }
    c
}

fn tokens(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

/// Corpus BLEU-4 (0–100) of `captions[i]` against `references[i]`.
pub fn bleu4(captions: &[String], references: &[Vec<String>]) -> f64 {
    let (mut matched, mut total) = ([0.0f64; 4], [0.0f64; 4]);
    let (mut cand_len, mut ref_len) = (0usize, 0usize);
    for (c, refs) in captions.iter().zip(references) {
        let c = tokens(c);
        let refs: Vec<Vec<String>> = refs.iter().map(|r| tokens(r)).collect();
        cand_len += c.len();
        // The closest reference length (shorter on ties).
        ref_len += refs
            .iter()
            .map(Vec::len)
            .min_by_key(|&l| (l.abs_diff(c.len()), l))
            .unwrap_or(0);
        for n in 1..=4 {
            let mut most = Counts::new();
            for r in &refs {
                for (g, k) in ngrams(r, n) {
                    let m = most.entry(g).or_default();
                    *m = m.max(k);
                }
            }
            for (g, k) in ngrams(&c, n) {
                matched[n - 1] += k.min(most.get(&g).copied().unwrap_or(0.0));
                total[n - 1] += k;
            }
        }
    }
    if matched.contains(&0.0) || cand_len == 0 {
        return 0.0;
    }
    let log_p: f64 = (0..4).map(|n| (matched[n] / total[n]).ln()).sum::<f64>() / 4.0;
    let bp = if cand_len >= ref_len {
        1.0
    } else {
        (1.0 - ref_len as f64 / cand_len as f64).exp()
    };
    100.0 * bp * log_p.exp()
}

/// Corpus CIDEr-D of `captions[i]` against `references[i]` (document frequencies over the
/// references of this corpus).
pub fn cider_d(captions: &[String], references: &[Vec<String>]) -> f64 {
    const SIGMA: f64 = 6.0;
    let grams = |s: &str| -> Vec<Counts> {
        let t = tokens(s);
        (1..=4).map(|n| ngrams(&t, n)).collect()
    };
    let refs: Vec<Vec<Vec<Counts>>> = references
        .iter()
        .map(|rs| rs.iter().map(|r| grams(r)).collect())
        .collect();
    let mut df: HashMap<Vec<String>, f64> = HashMap::new();
    for image in &refs {
        let seen: HashSet<&Vec<String>> = image.iter().flatten().flat_map(|c| c.keys()).collect();
        for g in seen {
            *df.entry(g.clone()).or_default() += 1.0;
        }
    }
    let log_docs = (refs.len().max(1) as f64).ln();
    // tf-idf vectors per n, their norms, and the length as the reference code counts it
    // (its number of bigrams).
    let vec = |counts: &[Counts]| {
        let v: Vec<Counts> = counts
            .iter()
            .map(|c| {
                c.iter()
                    .map(|(g, &tf)| {
                        let d = df.get(g).copied().unwrap_or(0.0).max(1.0).ln();
                        (g.clone(), tf * (log_docs - d))
                    })
                    .collect()
            })
            .collect();
        let norms: Vec<f64> = v
            .iter()
            .map(|c| c.values().map(|x| x * x).sum::<f64>().sqrt())
            .collect();
        let length: f64 = counts.get(1).map(|c| c.values().sum()).unwrap_or(0.0);
        (v, norms, length)
    };
    let mut total = 0.0;
    for (c, image_refs) in captions.iter().zip(&refs) {
        let (hv, hn, hl) = vec(&grams(c));
        let mut score = 0.0;
        for r in image_refs {
            let (rv, rn, rl) = vec(r);
            let penalty = (-(hl - rl).powi(2) / (2.0 * SIGMA * SIGMA)).exp();
            let mut per_n = 0.0;
            for n in 0..4 {
                let mut val: f64 = hv[n]
                    .iter()
                    .map(|(g, &x)| {
                        let y = rv[n].get(g).copied().unwrap_or(0.0);
                        x.min(y) * y
                    })
                    .sum();
                if hn[n] != 0.0 && rn[n] != 0.0 {
                    val /= hn[n] * rn[n];
                }
                per_n += val * penalty;
            }
            score += per_n / 4.0;
        }
        total += 10.0 * score / image_refs.len().max(1) as f64;
    }
    total / captions.len().max(1) as f64
}

/// Precision at 1 (0–100) of one batch: `scores[t][i]` of caption t against image i, the
/// target of caption t being image t.
pub fn precision_at_1(scores: &[Vec<f32>]) -> f64 {
    let hits = scores
        .iter()
        .enumerate()
        .filter(|(t, row)| {
            row.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .is_some_and(|(i, _)| i == *t)
        })
        .count();
    100.0 * hits as f64 / scores.len().max(1) as f64
}

/// Mean length in words and the number of distinct words.
pub fn length_and_vocabulary(captions: &[String]) -> (f64, usize) {
    let words: Vec<String> = captions.iter().flat_map(|c| tokens(c)).collect();
    let distinct: HashSet<&String> = words.iter().collect();
    (
        words.len() as f64 / captions.len().max(1) as f64,
        distinct.len(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn bleu_is_100_for_a_reference_and_0_without_4gram_overlap() {
        let refs = vec![s(&["a red circle next to a blue square", "a red circle"])];
        assert!((bleu4(&s(&["a red circle next to a blue square"]), &refs) - 100.0).abs() < 1e-9);
        assert_eq!(bleu4(&s(&["a blue red square"]), &refs), 0.0);
        // A hand computation: candidate "a red circle next to a green square" (8 words)
        // against the first reference: 1-grams 7/8, 2-grams 5/7, 3-grams 4/6, 4-grams 3/5.
        let b = bleu4(&s(&["a red circle next to a green square"]), &refs[..1]);
        let expected =
            100.0 * ((7.0 / 8.0) * (5.0 / 7.0) * (4.0f64 / 6.0) * (3.0 / 5.0)).powf(0.25);
        assert!((b - expected).abs() < 1e-9, "{b} vs {expected}");
    }

    #[test]
    fn cider_prefers_the_matching_reference_and_rare_words() {
        let refs = vec![
            s(&["a red circle", "a red circle on the left"]),
            s(&["a blue square", "a big blue square"]),
            s(&["a red square", "some shapes"]),
        ];
        let good = cider_d(
            &s(&["a red circle", "a blue square", "a red square"]),
            &refs,
        );
        let swapped = cider_d(
            &s(&["a blue square", "a red circle", "a red square"]),
            &refs,
        );
        assert!(good > 1.0 && swapped < good / 2.0, "{good} vs {swapped}");
    }

    #[test]
    fn precision_counts_the_diagonal_wins() {
        let scores = vec![vec![0.9, 0.1], vec![0.8, 0.2]];
        assert_eq!(precision_at_1(&scores), 50.0);
        assert_eq!(length_and_vocabulary(&s(&["a b", "a c d"])), (2.5, 4));
    }
}
