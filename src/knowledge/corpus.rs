//! The passage corpus written from the graph: several passages per country in varied wording,
//! one per city, and two kinds of hard cases — passages that are *related* but answer another
//! question (a neighbour's capital), and *confusing* ones that name a country's largest city in
//! a way that invites mistaking it for the capital.

use serde::{Deserialize, Serialize};

use super::graph::{CountryFacts, Graph};
use super::stable_hash;

crate::named_enum! {
    "passage kind";
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum PassageKind {
        /// States facts about its entity.
        Fact = "fact",
        /// About the entity, but answers a question about another one.
        Related = "related",
        /// Invites a wrong answer (the largest city taken for the capital).
        Confusing = "confusing",
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Passage {
    pub id: usize,
    /// The entity the passage is about.
    pub title: String,
    pub text: String,
    pub kind: PassageKind,
}

/// "about 37.2 million people" style counts.
pub fn people(n: u64) -> String {
    if n >= 1_000_000 {
        format!("about {:.1} million people", n as f64 / 1e6)
    } else if n >= 1_000 {
        format!("about {} thousand people", (n + 500) / 1_000)
    } else {
        format!("{n} people")
    }
}

/// One of `variants`, picked by a stable hash of the entity and the passage's purpose.
fn pick<'a>(purpose: &str, entity: &str, variants: &[&'a str]) -> &'a str {
    variants[stable_hash(purpose, entity) as usize % variants.len()]
}

fn fill(template: &str, pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .fold(template.to_string(), |t, (k, v)| t.replace(k, v))
}

fn country_passages(c: &CountryFacts, graph: &Graph, out: &mut Vec<(String, String, PassageKind)>) {
    let name = c.name.as_str();
    let pop = people(c.population);
    let vars = [
        ("{c}", name),
        ("{cap}", c.capital.as_str()),
        ("{cont}", c.continent.as_str()),
        ("{cur}", c.currency.as_str()),
        ("{lang}", c.language.as_str()),
        ("{code}", c.calling_code.as_str()),
        ("{tld}", c.domain.as_str()),
        ("{pop}", pop.as_str()),
    ];
    let mut fact =
        |template: &str| out.push((name.into(), fill(template, &vars), PassageKind::Fact));
    fact(pick(
        "capital",
        name,
        &[
            "{cap} is the capital of {c}, a country in {cont}.",
            "The capital city of {c} is {cap}, where the national government sits.",
            "{c}, which lies in {cont}, has its capital at {cap}.",
        ],
    ));
    fact(pick(
        "currency",
        name,
        &[
            "The official currency of {c} is the {cur}.",
            "In {c}, prices are paid in {cur}.",
            "{c} uses the {cur} as its money.",
        ],
    ));
    let speech = if c.language.is_empty() {
        ""
    } else {
        pick(
            "language",
            name,
            &[
                "The main language of {c} is {lang}. ",
                "Most people in {c} speak {lang}. ",
            ],
        )
    };
    fact(&format!(
        "{speech}{}",
        pick(
            "codes",
            name,
            &[
                "The international calling code of {c} is +{code}, and its websites end in {tld}.",
                "To phone {c} from abroad, dial +{code}; its internet domain is {tld}.",
            ],
        )
    ));
    let borders = match c.neighbours.as_slice() {
        [] => String::new(),
        [one] => format!(" It borders {one}."),
        [init @ .., last] => format!(" It borders {} and {last}.", init.join(", ")),
    };
    fact(&format!(
        "{name} lies in {}, is home to {pop} and covers {} square kilometres.{borders}",
        c.continent, c.area_km2
    ));
    // Hard cases: a neighbour's capital, and the largest city when it is not the capital.
    if let Some(n) = c.neighbours.first().and_then(|n| graph.country(n)) {
        out.push((
            name.into(),
            format!(
                "{name} shares a border with {}, whose capital is {}.",
                n.name, n.capital
            ),
            PassageKind::Related,
        ));
    }
    if let Some((big, size)) = c.cities.first() {
        if *big != c.capital {
            out.push((
                name.into(),
                format!(
                    "{big} is the largest city of {name}, with {}, and its busiest centre of \
                     business and culture.",
                    people(*size)
                ),
                PassageKind::Confusing,
            ));
        }
    }
    for (city, size) in &c.cities {
        let size = people(*size);
        let template = pick(
            "city",
            city,
            &[
                "{city} is a city in {c} with {size}.",
                "{city}, in {c}, has {size}.",
                "With {size}, {city} is one of the cities of {c}.",
            ],
        );
        out.push((
            city.clone(),
            fill(
                template,
                &[("{city}", city), ("{c}", name), ("{size}", &size)],
            ),
            PassageKind::Fact,
        ));
    }
}

/// Every passage of the corpus, numbered in a fixed order.
pub fn passages(graph: &Graph) -> Vec<Passage> {
    let mut raw = Vec::new();
    for c in &graph.countries {
        country_passages(c, graph, &mut raw);
    }
    raw.into_iter()
        .enumerate()
        .map(|(id, (title, text, kind))| Passage {
            id,
            title,
            text,
            kind,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn people_rounds_for_reading() {
        assert_eq!(people(37_172_386), "about 37.2 million people");
        assert_eq!(people(26_711), "about 27 thousand people");
        assert_eq!(people(800), "800 people");
    }
}
