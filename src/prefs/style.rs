//! The domain style every gold answer is written in: one sentence that states the fact, then
//! the triples it comes from. An answer in this style says what it knows and where it knows it
//! from — the kind of user-facing answer KnowPAT's style preference set teaches.

use crate::knowledge::{Question, Relation, Triple};

/// The fact of one triple as a clause ("the capital of Peru is Lima").
pub fn clause(t: &Triple) -> String {
    let (s, o) = (&t.subject, &t.object);
    match t.relation {
        Relation::Capital => format!("the capital of {s} is {o}"),
        Relation::Continent => format!("{s} lies in {o}"),
        Relation::Currency => format!("the currency of {s} is the {o}"),
        Relation::Language => format!("the main language of {s} is {o}"),
        Relation::CallingCode => format!("the calling code of {s} is {o}"),
        Relation::Domain => format!("the internet domain of {s} is {o}"),
        Relation::Population => format!("the population of {s} is {o}"),
        Relation::Neighbour => format!("{s} borders {o}"),
        Relation::Country => format!("{s} is a city in {o}"),
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The gold answer to `q`: its triples' facts in one sentence, then `Source:` and the triples.
pub fn gold_answer(q: &Question) -> String {
    let clauses: Vec<String> = q.triples.iter().map(clause).collect();
    let sources: Vec<String> = q.triples.iter().map(Triple::to_string).collect();
    format!(
        "{}. Source: {}.",
        capitalised(&clauses.join(", and ")),
        sources.join("; ")
    )
}

/// The first sentence of an answer: where the gold style states the fact.
pub fn statement(answer: &str) -> &str {
    let answer = answer.trim();
    let end = answer.find(". ").map_or(answer.len(), |i| i + 1);
    answer[..end].lines().next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knowledge::KnowledgeBase;

    #[test]
    fn gold_answers_state_the_fact_and_cite_the_triples() {
        let kb = KnowledgeBase::shipped().unwrap();
        let q = kb
            .questions
            .iter()
            .find(|q| q.id == "Peru/capital")
            .unwrap();
        assert_eq!(
            gold_answer(q),
            "The capital of Peru is Lima. Source: (Peru, capital, Lima)."
        );
        assert_eq!(statement(&gold_answer(q)), "The capital of Peru is Lima.");
        let two = kb
            .questions
            .iter()
            .find(|q| q.id == "Peru/capital-currency")
            .unwrap();
        let gold = gold_answer(two);
        assert!(
            gold.starts_with("The capital of Peru is Lima, and the currency of Peru is the "),
            "{gold}"
        );
        assert!(gold.contains("Source: (Peru, capital, Lima); (Peru, currency, "));
        for q in &kb.questions {
            assert!(gold_answer(q).contains(q.answers[0].as_str()), "{}", q.id);
        }
    }
}
