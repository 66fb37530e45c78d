//! Answer scoring as in open-domain QA (SQuAD's normalisation): lower case, no punctuation, no
//! articles, single spaces; exact match and token F1 against the best-matching gold answer, and
//! *hit* — a gold answer appears in the reply — which DPA-RAG uses to label passages.

/// SQuAD-style normalisation.
pub fn normalise(text: &str) -> String {
    let lower: String = text
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '+' {
                c
            } else {
                ' '
            }
        })
        .collect();
    lower
        .split_whitespace()
        .filter(|w| !matches!(*w, "a" | "an" | "the"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The reply as scored: its first line.
fn first_line(reply: &str) -> &str {
    reply.trim().lines().next().unwrap_or("")
}

pub fn exact_match(reply: &str, answers: &[String]) -> bool {
    let got = normalise(first_line(reply));
    answers.iter().any(|a| normalise(a) == got)
}

/// Token F1 of two normalised texts.
pub fn token_f1(got: &str, gold: &str) -> f64 {
    let got: Vec<&str> = got.split_whitespace().collect();
    let gold: Vec<&str> = gold.split_whitespace().collect();
    let mut left = gold.clone();
    let mut common = 0usize;
    for w in &got {
        if let Some(i) = left.iter().position(|g| g == w) {
            left.swap_remove(i);
            common += 1;
        }
    }
    if common == 0 {
        return 0.0;
    }
    let p = common as f64 / got.len() as f64;
    let r = common as f64 / gold.len() as f64;
    2.0 * p * r / (p + r)
}

pub fn f1(reply: &str, answers: &[String]) -> f64 {
    let got = normalise(first_line(reply));
    answers
        .iter()
        .map(|a| token_f1(&got, &normalise(a)))
        .fold(0.0, f64::max)
}

/// Whether a gold answer appears in the reply (as whole words).
pub fn hit(reply: &str, answers: &[String]) -> bool {
    let got = format!(" {} ", normalise(reply));
    answers
        .iter()
        .any(|a| got.contains(&format!(" {} ", normalise(a))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gold(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn scores_follow_squad_normalisation() {
        let g = gold(&["Lima"]);
        assert!(exact_match("Lima.", &g));
        assert!(exact_match("  the lima\nmore text", &g));
        assert!(!exact_match("The capital is Lima.", &g));
        assert!((f1("The capital is Lima.", &g) - 0.5).abs() < 1e-9);
        assert!(hit("The capital is Lima.", &g));
        assert!(!hit("Limassol", &g));
        assert_eq!(f1("Paris", &g), 0.0);
        let code = gold(&["+51", "51"]);
        assert!(exact_match("+51", &code) && exact_match("51", &code));
        assert!((f1("New Zealand dollar", &gold(&["Dollar"])) - 0.5).abs() < 1e-9);
    }
}
