//! The knowledge graph: (subject, relation, object) triples about GeoNames countries and their
//! large cities, read from `countries.tsv` (written by `scripts/extract_knowledge_data.py`) and
//! the zoo's `cities.tsv`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::data::sources::read_tsv;

crate::named_enum! {
    "relation";
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum Relation {
        /// A country's capital city.
        Capital = "capital",
        /// The continent a country or city lies on.
        Continent = "continent",
        /// A country's currency.
        Currency = "currency",
        /// The first language GeoNames lists for a country.
        Language = "language",
        /// A country's international calling code.
        CallingCode = "calling-code",
        /// A country's internet domain.
        Domain = "domain",
        /// A country's population (GeoNames).
        Population = "population",
        /// A country sharing a land border.
        Neighbour = "neighbour",
        /// The country a city lies in.
        Country = "country",
    }
}

impl Relation {
    /// The relation as words, for triples shown to people and to the reader.
    pub fn words(self) -> &'static str {
        match self {
            Relation::Capital => "capital",
            Relation::Continent => "continent",
            Relation::Currency => "currency",
            Relation::Language => "main language",
            Relation::CallingCode => "calling code",
            Relation::Domain => "internet domain",
            Relation::Population => "population",
            Relation::Neighbour => "borders",
            Relation::Country => "country",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Triple {
    pub subject: String,
    pub relation: Relation,
    pub object: String,
}

impl std::fmt::Display for Triple {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "({}, {}, {})",
            self.subject,
            self.relation.words(),
            self.object
        )
    }
}

/// A country row of `countries.tsv`.
#[derive(Debug, Clone, PartialEq)]
pub struct CountryFacts {
    pub name: String,
    pub capital: String,
    pub continent: String,
    pub currency: String,
    pub population: u64,
    pub area_km2: u64,
    pub calling_code: String,
    pub domain: String,
    /// Empty where the table names none.
    pub language: String,
    pub neighbours: Vec<String>,
    /// Its cities in the zoo's table, largest first.
    pub cities: Vec<(String, u64)>,
}

pub struct Graph {
    pub countries: Vec<CountryFacts>,
    pub triples: Vec<Triple>,
    /// Triple indices by the entity they mention (as subject or object).
    by_entity: BTreeMap<String, Vec<usize>>,
}

impl Graph {
    pub fn load(knowledge_dir: &Path, zoo_data: &Path) -> Result<Self> {
        let path = knowledge_dir.join("countries.tsv");
        let rows = read_tsv(&path, 12, |f| {
            (
                f[1].to_string(),
                CountryFacts {
                    name: f[0].into(),
                    capital: f[2].into(),
                    continent: f[3].into(),
                    currency: if f[5].is_empty() { f[4] } else { f[5] }.into(),
                    population: f[6].parse().unwrap_or(0),
                    area_km2: f[7].parse().unwrap_or(0),
                    calling_code: f[8].trim_start_matches('+').into(),
                    domain: f[9].into(),
                    language: f[10].into(),
                    neighbours: f[11]
                        .split(';')
                        .filter(|n| !n.is_empty())
                        .map(String::from)
                        .collect(),
                    cities: Vec::new(),
                },
            )
        })?;
        let mut countries = Vec::with_capacity(rows.len());
        let mut by_code = BTreeMap::new();
        for (code, facts) in rows {
            by_code.insert(code, countries.len());
            countries.push(facts);
        }
        let sources = crate::data::Sources::load(zoo_data)
            .with_context(|| format!("{}: the zoo's tables", zoo_data.display()))?;
        for city in sources.cities {
            if let Some(&i) = by_code.get(&city.country_code) {
                countries[i].cities.push((city.name, city.population));
            }
        }
        Ok(Self::from_countries(countries))
    }

    pub fn from_countries(countries: Vec<CountryFacts>) -> Self {
        let mut triples = Vec::new();
        for c in &countries {
            let mut add = |relation, object: &str| {
                if !object.is_empty() {
                    triples.push(Triple {
                        subject: c.name.clone(),
                        relation,
                        object: object.to_string(),
                    });
                }
            };
            add(Relation::Capital, &c.capital);
            add(Relation::Continent, &c.continent);
            add(Relation::Currency, &c.currency);
            add(Relation::Language, &c.language);
            add(Relation::CallingCode, &format!("+{}", c.calling_code));
            add(Relation::Domain, &c.domain);
            add(Relation::Population, &c.population.to_string());
            for n in &c.neighbours {
                add(Relation::Neighbour, n);
            }
            for (city, _) in &c.cities {
                triples.push(Triple {
                    subject: city.clone(),
                    relation: Relation::Country,
                    object: c.name.clone(),
                });
            }
        }
        let mut by_entity: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, t) in triples.iter().enumerate() {
            by_entity.entry(t.subject.clone()).or_default().push(i);
            if t.object != t.subject {
                by_entity.entry(t.object.clone()).or_default().push(i);
            }
        }
        Self {
            countries,
            triples,
            by_entity,
        }
    }

    /// Every entity named in a triple, sorted.
    pub fn entities(&self) -> impl Iterator<Item = &str> {
        self.by_entity.keys().map(String::as_str)
    }

    /// The triples that mention `entity`.
    pub fn about(&self, entity: &str) -> Vec<&Triple> {
        self.by_entity
            .get(entity)
            .map(|ix| ix.iter().map(|&i| &self.triples[i]).collect())
            .unwrap_or_default()
    }

    pub fn country(&self, name: &str) -> Option<&CountryFacts> {
        self.countries.iter().find(|c| c.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_graph_links_cities_to_countries() {
        let g = Graph::load(
            &crate::knowledge::dir(),
            &crate::assets::dir().join("zoo").join("data"),
        )
        .unwrap();
        assert!(g.countries.len() > 200, "{}", g.countries.len());
        let peru = g.country("Peru").unwrap();
        assert_eq!(peru.capital, "Lima");
        assert_eq!(peru.cities.first().map(|c| c.0.as_str()), Some("Lima"));
        assert!(peru.neighbours.contains(&"Chile".to_string()));
        let about = g.about("Lima");
        assert!(about
            .iter()
            .any(|t| t.relation == Relation::Capital && t.subject == "Peru"));
        assert!(about
            .iter()
            .any(|t| t.relation == Relation::Country && t.object == "Peru"));
    }
}
