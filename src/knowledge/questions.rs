//! Question sets over the graph with gold answers: single-hop questions (one triple answers
//! them) and two-hop ones (a bridge entity first, then its fact). Every question belongs to one
//! country, and the split is by country, so test countries never appear in training questions.
//! Each question keeps all its template wordings: the first is the question, the others serve
//! as query augmentations.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::graph::{CountryFacts, Graph, Relation, Triple};
use super::stable_hash;

crate::named_enum! {
    "split";
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum Split {
        /// 60% of the countries.
        Train = "train",
        /// 10% of the countries.
        Dev = "dev",
        /// 30% of the countries.
        Test = "test",
    }
}

crate::named_enum! {
    "hops";
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum Hops {
        /// One triple answers the question.
        Single = "single",
        /// A bridge entity, then its fact.
        TwoHop = "two-hop",
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Question {
    pub id: String,
    /// The question's wordings; the first is the question asked.
    pub wordings: Vec<String>,
    /// Accepted answers, the canonical one first.
    pub answers: Vec<String>,
    pub hops: Hops,
    pub split: Split,
    /// The country the question is about (the split's unit).
    pub country: String,
    /// The relation whose object answers it.
    pub relation: Relation,
    /// The triples that answer it, in hop order.
    pub triples: Vec<Triple>,
}

impl Question {
    pub fn text(&self) -> &str {
        &self.wordings[0]
    }
}

pub fn split_of(country: &str) -> Split {
    match stable_hash("split", country) % 10 {
        0..=5 => Split::Train,
        6 => Split::Dev,
        _ => Split::Test,
    }
}

fn triple(subject: &str, relation: Relation, object: &str) -> Triple {
    Triple {
        subject: subject.into(),
        relation,
        object: object.into(),
    }
}

/// The country's answer for `relation` with its accepted forms and question templates
/// (`{x}` stands for the subject).
fn fact(c: &CountryFacts, relation: Relation) -> Option<(Vec<String>, &'static [&'static str])> {
    let (answers, templates): (Vec<String>, &[&str]) = match relation {
        Relation::Capital => (
            vec![c.capital.clone()],
            &[
                "What is the capital of {x}?",
                "Which city is the capital of {x}?",
                "Name the capital city of {x}.",
            ],
        ),
        Relation::Currency => (
            vec![c.currency.clone()],
            &[
                "What currency is used in {x}?",
                "What is the official currency of {x}?",
                "What money do people pay with in {x}?",
            ],
        ),
        Relation::Continent => (
            vec![c.continent.clone()],
            &[
                "On which continent is {x}?",
                "Which continent does {x} lie in?",
                "{x} is part of which continent?",
            ],
        ),
        Relation::Language if !c.language.is_empty() => (
            vec![c.language.clone()],
            &[
                "What is the main language of {x}?",
                "Which language do most people in {x} speak?",
                "What language is mainly spoken in {x}?",
            ],
        ),
        Relation::CallingCode => (
            vec![format!("+{}", c.calling_code), c.calling_code.clone()],
            &[
                "What is the international calling code of {x}?",
                "Which code do you dial to phone {x} from abroad?",
            ],
        ),
        _ => return None,
    };
    Some((answers, templates))
}

fn fill(templates: &[&str], x: &str) -> Vec<String> {
    templates.iter().map(|t| t.replace("{x}", x)).collect()
}

/// Cities named in exactly one country, with their country.
fn unambiguous_cities(graph: &Graph) -> BTreeMap<&str, &str> {
    let mut seen: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for c in &graph.countries {
        for (city, _) in &c.cities {
            seen.entry(city.as_str()).or_default().push(c.name.as_str());
        }
    }
    seen.into_iter()
        .filter(|(_, cs)| cs.len() == 1)
        .map(|(city, cs)| (city, cs[0]))
        .collect()
}

/// Every question over the graph, in a fixed order.
pub fn questions(graph: &Graph) -> Vec<Question> {
    let cities = unambiguous_cities(graph);
    let mut out = Vec::new();
    const SINGLE: [Relation; 5] = [
        Relation::Capital,
        Relation::Currency,
        Relation::Continent,
        Relation::Language,
        Relation::CallingCode,
    ];
    for c in &graph.countries {
        let split = split_of(&c.name);
        let mut push = |id: String, wordings, answers, hops, relation, triples| {
            out.push(Question {
                id,
                wordings,
                answers,
                hops,
                split,
                country: c.name.clone(),
                relation,
                triples,
            })
        };
        for relation in SINGLE {
            if let Some((answers, templates)) = fact(c, relation) {
                push(
                    format!("{}/{}", c.name, relation.name()),
                    fill(templates, &c.name),
                    answers.clone(),
                    Hops::Single,
                    relation,
                    vec![triple(&c.name, relation, &answers[0])],
                );
            }
        }
        // Up to two cities other than the capital: where they are, and two-hop facts.
        let own: Vec<&str> = c
            .cities
            .iter()
            .map(|(n, _)| n.as_str())
            .filter(|n| *n != c.capital && cities.get(n) == Some(&c.name.as_str()))
            .take(2)
            .collect();
        for city in &own {
            push(
                format!("{}/city/{city}", c.name),
                fill(
                    &[
                        "In which country is the city of {x}?",
                        "Which country is {x} in?",
                        "{x} is a city in which country?",
                    ],
                    city,
                ),
                vec![c.name.clone()],
                Hops::Single,
                Relation::Country,
                vec![triple(city, Relation::Country, &c.name)],
            );
        }
        let bridge_capital = triple(&c.name, Relation::Capital, &c.capital);
        for (relation, templates) in [
            (
                Relation::Currency,
                &[
                    "What currency is used in the country whose capital is {x}?",
                    "{x} is a capital; what is the currency of its country?",
                ][..],
            ),
            (
                Relation::Language,
                &[
                    "What language is mainly spoken in the country whose capital is {x}?",
                    "{x} is a capital; what is the main language of its country?",
                ][..],
            ),
        ] {
            if let Some((answers, _)) = fact(c, relation) {
                push(
                    format!("{}/capital-{}", c.name, relation.name()),
                    fill(templates, &c.capital),
                    answers.clone(),
                    Hops::TwoHop,
                    relation,
                    vec![
                        bridge_capital.clone(),
                        triple(&c.name, relation, &answers[0]),
                    ],
                );
            }
        }
        if let Some(city) = own.first() {
            push(
                format!("{}/city-capital/{city}", c.name),
                fill(
                    &[
                        "What is the capital of the country where {x} lies?",
                        "{x} is a city; what is the capital of its country?",
                    ],
                    city,
                ),
                vec![c.capital.clone()],
                Hops::TwoHop,
                Relation::Capital,
                vec![
                    triple(city, Relation::Country, &c.name),
                    bridge_capital.clone(),
                ],
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knowledge::KnowledgeBase;

    #[test]
    fn splits_are_by_country_and_every_answer_is_in_a_passage() {
        let kb = KnowledgeBase::shipped().unwrap();
        let mut split_of_country = BTreeMap::new();
        for q in &kb.questions {
            assert_eq!(
                *split_of_country.entry(&q.country).or_insert(q.split),
                q.split
            );
        }
        for (split, min) in [(Split::Train, 500), (Split::Dev, 50), (Split::Test, 200)] {
            let n = kb.questions.iter().filter(|q| q.split == split).count();
            assert!(n >= min, "{split}: {n} questions");
        }
        assert!(kb.split(Split::Test, Hops::TwoHop).len() >= 60);
        // The gold answer of every question is written in some passage about its subject.
        for q in &kb.questions {
            let last = q.triples.last().unwrap();
            let found = kb.passages.iter().any(|p| {
                p.kind == crate::knowledge::PassageKind::Fact
                    && p.text.contains(&last.subject)
                    && q.answers.iter().any(|a| p.text.contains(a.as_str()))
            });
            assert!(found, "{}: no passage states {}", q.id, q.answers[0]);
        }
    }
}
