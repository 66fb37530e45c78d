//! Preference knowledge as DPA-RAG mines it: for each training query, passages from several
//! retrieval ranks; the reader answers without any passage and with each one alone. A passage
//! that turns a wrong answer right is *aligned* knowledge, one that turns a right answer wrong
//! is *unaligned*; the paper drops the rest. Query augmentation uses the question's other
//! template wordings (the paper rewrites queries with an LLM in five ways).

use serde::{Deserialize, Serialize};

use super::reader::Reading;
use super::score::hit;

crate::named_enum! {
    "passage label";
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum Alignment {
        /// Wrong without the passage, right with it.
        Aligned = "aligned",
        /// Right without the passage, wrong with it.
        Unaligned = "unaligned",
        /// Right either way.
        BothRight = "both-right",
        /// Wrong either way.
        BothWrong = "both-wrong",
    }
}

impl Alignment {
    pub fn of(right_without: bool, right_with: bool) -> Self {
        match (right_without, right_with) {
            (false, true) => Alignment::Aligned,
            (true, false) => Alignment::Unaligned,
            (true, true) => Alignment::BothRight,
            (false, false) => Alignment::BothWrong,
        }
    }
}

/// One passage read with one query.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MinedPassage {
    pub passage: usize,
    /// 1-based retrieval rank.
    pub rank: usize,
    pub reply: String,
    pub label: Alignment,
}

/// One (augmented) query and what each of its passages did to the reader.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MinedQuery {
    pub question: String,
    pub query: String,
    pub answers: Vec<String>,
    pub reply_without: String,
    pub right_without: bool,
    pub passages: Vec<MinedPassage>,
}

/// The readings mining needs for one query: without passages first, then one per passage.
pub fn readings<'a>(query: &'a str, passages: &[&'a str]) -> Vec<Reading<'a>> {
    std::iter::once(Reading {
        question: query,
        passages: Vec::new(),
    })
    .chain(passages.iter().map(|p| Reading {
        question: query,
        passages: vec![*p],
    }))
    .collect()
}

/// Labels a query's passages from the reader's replies (`replies[0]` without passages).
pub fn label(
    question: &str,
    query: &str,
    answers: &[String],
    hits: &[(usize, usize)],
    replies: &[String],
) -> MinedQuery {
    let right_without = hit(&replies[0], answers);
    MinedQuery {
        question: question.into(),
        query: query.into(),
        answers: answers.to_vec(),
        reply_without: replies[0].clone(),
        right_without,
        passages: hits
            .iter()
            .zip(&replies[1..])
            .map(|(&(passage, rank), reply)| MinedPassage {
                passage,
                rank,
                reply: reply.clone(),
                label: Alignment::of(right_without, hit(reply, answers)),
            })
            .collect(),
    }
}

/// How many passages got each label.
pub fn counts(mined: &[MinedQuery]) -> Vec<(Alignment, usize)> {
    Alignment::ALL
        .iter()
        .map(|&a| {
            (
                a,
                mined
                    .iter()
                    .flat_map(|q| &q.passages)
                    .filter(|p| p.label == a)
                    .count(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_the_four_cases() {
        let answers = vec!["Lima".to_string()];
        let replies: Vec<String> = ["Quito", "Lima", "Quito", "Lima."]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let m = label("q", "q", &answers, &[(7, 1), (8, 5), (9, 10)], &replies);
        assert!(!m.right_without);
        let labels: Vec<Alignment> = m.passages.iter().map(|p| p.label).collect();
        assert_eq!(
            labels,
            [Alignment::Aligned, Alignment::BothWrong, Alignment::Aligned]
        );
        assert_eq!(Alignment::of(true, false), Alignment::Unaligned);
        assert_eq!(counts(&[m])[0], (Alignment::Aligned, 2));
    }
}
