//! Sentence classification tasks for the MiniLM fine-tunes. Unlike the decoder tasks, the
//! held-out sets use words and cities never seen in fine-tuning: the pretrained encoder has to
//! carry over what it knows.

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::sources::Sources;

const SPLIT_SEED: u64 = 11;
/// Continents that have enough big cities (Oceania has 15) and at most this many per class.
const CITIES_PER_CONTINENT: usize = 100;
const EVAL_FRACTION: f64 = 0.25;

crate::named_enum! {
    "task";
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum ClassTask {
        /// Is a short review built around a VADER word positive or negative?
        Sentiment = "sentiment",
        /// On which continent is this city?
        Continent = "continent",
    }
}

#[derive(Debug, Clone)]
pub struct ClassData {
    pub labels: Vec<String>,
    /// Sentences for each label, read by the zero-shot baseline.
    pub label_descriptions: Vec<String>,
    pub train: Vec<(String, usize)>,
    pub eval: Vec<(String, usize)>,
}

const REVIEW_TEMPLATES: [&str; 4] = [
    "the film was {w}.",
    "honestly, the service felt {w}.",
    "what a {w} trip.",
    "i found the book {w}.",
];

pub fn class_data(task: ClassTask, sources: &Sources) -> ClassData {
    let mut rng = StdRng::seed_from_u64(SPLIT_SEED);
    match task {
        ClassTask::Sentiment => {
            let mut words: Vec<(String, usize)> = sources
                .words
                .iter()
                .map(|w| (w.word.clone(), usize::from(w.rating > 0.0)))
                .collect();
            words.shuffle(&mut rng);
            let cut = (words.len() as f64 * EVAL_FRACTION) as usize;
            let sentences = |ws: &[(String, usize)], rng: &mut StdRng| -> Vec<(String, usize)> {
                ws.iter()
                    .map(|(w, l)| {
                        let t = REVIEW_TEMPLATES.choose(rng).expect("templates");
                        (t.replace("{w}", w), *l)
                    })
                    .collect()
            };
            let eval = sentences(&words[..cut.min(400)], &mut rng);
            let train = sentences(&words[cut..], &mut rng);
            ClassData {
                labels: vec!["negative".into(), "positive".into()],
                label_descriptions: vec![
                    "this is bad, negative and unpleasant.".into(),
                    "this is good, positive and pleasant.".into(),
                ],
                train,
                eval,
            }
        }
        ClassTask::Continent => {
            let labels: Vec<String> =
                ["Africa", "Asia", "Europe", "North America", "South America"]
                    .map(String::from)
                    .to_vec();
            let (mut train, mut eval) = (Vec::new(), Vec::new());
            for (l, name) in labels.iter().enumerate() {
                let mut cities: Vec<String> = sources
                    .cities
                    .iter()
                    .filter(|c| &c.continent == name)
                    .take(CITIES_PER_CONTINENT)
                    .map(|c| c.name.clone())
                    .collect();
                cities.shuffle(&mut rng);
                let cut = (cities.len() as f64 * EVAL_FRACTION) as usize;
                eval.extend(cities[..cut].iter().map(|c| (c.clone(), l)));
                train.extend(cities[cut..].iter().map(|c| (c.clone(), l)));
            }
            ClassData {
                label_descriptions: labels.iter().map(|l| format!("a city in {l}")).collect(),
                labels,
                train,
                eval,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn held_out_texts_never_appear_in_training() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/zoo/data");
        let sources = Sources::load(&dir).unwrap();
        for task in [ClassTask::Sentiment, ClassTask::Continent] {
            let d = class_data(task, &sources);
            let train: HashSet<&str> = d.train.iter().map(|(t, _)| t.as_str()).collect();
            assert!(d.eval.len() >= 100, "{task:?}");
            assert!(
                d.eval.iter().all(|(t, _)| !train.contains(t.as_str())),
                "{task:?}"
            );
            let labels: HashSet<usize> = d.eval.iter().map(|(_, l)| *l).collect();
            assert_eq!(
                labels.len(),
                d.labels.len(),
                "{task:?}: every label is evaluated"
            );
        }
        // Sentiment holds out whole words, not just sentences.
        let d = class_data(ClassTask::Sentiment, &sources);
        let tokens = |t: &str| -> Vec<String> {
            t.split(' ')
                .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()).to_string())
                .collect()
        };
        let train_words: HashSet<String> = d.train.iter().flat_map(|(t, _)| tokens(t)).collect();
        let unseen = d
            .eval
            .iter()
            .filter(|(t, _)| tokens(t).iter().any(|w| !train_words.contains(w)))
            .count();
        assert!(unseen as f64 > 0.9 * d.eval.len() as f64);
    }
}
