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
        /// Is a review's VADER word mildly or strongly felt (|rating| ≥ 2), whatever its sign?
        Intensity = "intensity",
        /// Is this city larger or smaller than the median of the shipped cities?
        Size = "size",
        /// All four at once: texts prefixed with the task's name, one joint label space.
        All = "all",
    }
}

impl ClassTask {
    /// The single tasks, in the order of the joint label space of [`ClassTask::All`].
    pub const SINGLE: [ClassTask; 4] = [
        ClassTask::Sentiment,
        ClassTask::Intensity,
        ClassTask::Continent,
        ClassTask::Size,
    ];
}

#[derive(Debug, Clone)]
pub struct ClassData {
    pub labels: Vec<String>,
    /// Sentences for each label, read by the zero-shot baseline.
    pub label_descriptions: Vec<String>,
    pub train: Vec<(String, usize)>,
    pub eval: Vec<(String, usize)>,
    /// A shifted held-out set (new templates, less known cities); empty where none exists.
    pub ood: Vec<(String, usize)>,
}

const REVIEW_TEMPLATES: [&str; 4] = [
    "the film was {w}.",
    "honestly, the service felt {w}.",
    "what a {w} trip.",
    "i found the book {w}.",
];
/// Wordings never used in training, for the out-of-distribution sets.
const OOD_TEMPLATES: [&str; 3] = [
    "my neighbour called the concert {w}.",
    "{w} is the word for that hotel.",
    "the whole evening was rather {w}.",
];
/// Cities past the training ranks that the continent task's shifted set draws on.
const OOD_CITIES_PER_CONTINENT: usize = 40;

/// The sentiment task's labels, by index.
pub const SENTIMENT_LABELS: [&str; 2] = ["negative", "positive"];
/// The continent task's labels, by index.
pub const CONTINENTS: [&str; 5] = ["Africa", "Asia", "Europe", "North America", "South America"];

/// Labelled texts.
type Rows = Vec<(String, usize)>;

/// Review sentences labelled by `label(rating)`: held-out words (at most 400) in training
/// templates as `eval`, the same words in unseen templates as `ood`.
fn word_task(
    sources: &Sources,
    rng: &mut StdRng,
    label: impl Fn(f32) -> usize,
) -> (Rows, Rows, Rows) {
    let mut words: Vec<(String, usize)> = sources
        .words
        .iter()
        .map(|w| (w.word.clone(), label(w.rating)))
        .collect();
    words.shuffle(rng);
    let cut = (words.len() as f64 * EVAL_FRACTION) as usize;
    let sentences =
        |ws: &[(String, usize)], templates: &[&str], rng: &mut StdRng| -> Vec<(String, usize)> {
            ws.iter()
                .map(|(w, l)| {
                    let t = templates.choose(rng).expect("templates");
                    (t.replace("{w}", w), *l)
                })
                .collect()
        };
    let held_out = &words[..cut.min(400)];
    let eval = sentences(held_out, &REVIEW_TEMPLATES, rng);
    let train = sentences(&words[cut..], &REVIEW_TEMPLATES, rng);
    let ood = sentences(held_out, &OOD_TEMPLATES, rng);
    (train, eval, ood)
}

/// `task`'s data as the multi-task model sees it: texts prefixed with the task's name, labels
/// moved to the task's place in the joint label space, which the returned range gives.
pub fn multi_task_view(task: ClassTask, sources: &Sources) -> (ClassData, std::ops::Range<usize>) {
    let mut offset = 0;
    for t in ClassTask::SINGLE {
        let d = class_data(t, sources);
        if t != task {
            offset += d.labels.len();
            continue;
        }
        let prefix = |rows: Vec<(String, usize)>| -> Vec<(String, usize)> {
            rows.into_iter()
                .map(|(text, l)| (format!("{}: {text}", t.name()), l + offset))
                .collect()
        };
        let range = offset..offset + d.labels.len();
        let view = ClassData {
            labels: d
                .labels
                .iter()
                .map(|l| format!("{}/{l}", t.name()))
                .collect(),
            label_descriptions: d.label_descriptions,
            train: prefix(d.train),
            eval: prefix(d.eval),
            ood: prefix(d.ood),
        };
        return (view, range);
    }
    let all = class_data(ClassTask::All, sources);
    let n = all.labels.len();
    (all, 0..n)
}

pub fn class_data(task: ClassTask, sources: &Sources) -> ClassData {
    let mut rng = StdRng::seed_from_u64(SPLIT_SEED);
    match task {
        ClassTask::Sentiment => {
            let (train, eval, ood) = word_task(sources, &mut rng, |r| usize::from(r > 0.0));
            ClassData {
                labels: SENTIMENT_LABELS.map(String::from).to_vec(),
                label_descriptions: vec![
                    "this is bad, negative and unpleasant.".into(),
                    "this is good, positive and pleasant.".into(),
                ],
                train,
                eval,
                ood,
            }
        }
        ClassTask::Intensity => {
            let (train, eval, ood) = word_task(sources, &mut rng, |r| usize::from(r.abs() >= 2.0));
            ClassData {
                labels: vec!["mild".into(), "strong".into()],
                label_descriptions: vec![
                    "a mild, lukewarm, so-so feeling.".into(),
                    "an intense, extreme, strong feeling.".into(),
                ],
                train,
                eval,
                ood,
            }
        }
        ClassTask::Size => {
            let mut sizes: Vec<u64> = sources.cities.iter().map(|c| c.population).collect();
            sizes.sort_unstable();
            let median = sizes[sizes.len() / 2];
            // One row per name (the largest city of that name), so no name is in both splits.
            let mut seen = std::collections::HashSet::new();
            let mut cities: Vec<(String, usize)> = sources
                .cities
                .iter()
                .filter(|c| seen.insert(c.name.as_str()))
                .map(|c| (c.name.clone(), usize::from(c.population >= median)))
                .collect();
            cities.shuffle(&mut rng);
            let cut = (cities.len() as f64 * EVAL_FRACTION) as usize;
            ClassData {
                labels: vec!["smaller".into(), "larger".into()],
                label_descriptions: vec![
                    "a small, little-known town".into(),
                    "a huge, famous metropolis".into(),
                ],
                eval: cities[..cut.min(400)].to_vec(),
                train: cities[cut..].to_vec(),
                ood: Vec::new(),
            }
        }
        ClassTask::All => {
            let mut all = ClassData {
                labels: Vec::new(),
                label_descriptions: Vec::new(),
                train: Vec::new(),
                eval: Vec::new(),
                ood: Vec::new(),
            };
            for t in ClassTask::SINGLE {
                let (d, _) = multi_task_view(t, sources);
                all.labels.extend(d.labels);
                all.label_descriptions.extend(d.label_descriptions);
                all.train.extend(d.train);
                all.eval.extend(d.eval);
                all.ood.extend(d.ood);
            }
            all
        }
        ClassTask::Continent => {
            let labels: Vec<String> = CONTINENTS.map(String::from).to_vec();
            let (mut train, mut eval, mut ood) = (Vec::new(), Vec::new(), Vec::new());
            for (l, name) in labels.iter().enumerate() {
                let on_continent: Vec<String> = sources
                    .cities
                    .iter()
                    .filter(|c| &c.continent == name)
                    .map(|c| c.name.clone())
                    .collect();
                let mut cities: Vec<String> = on_continent
                    .iter()
                    .take(CITIES_PER_CONTINENT)
                    .cloned()
                    .collect();
                cities.shuffle(&mut rng);
                let cut = (cities.len() as f64 * EVAL_FRACTION) as usize;
                eval.extend(cities[..cut].iter().map(|c| (c.clone(), l)));
                train.extend(cities[cut..].iter().map(|c| (c.clone(), l)));
                // Smaller, less known cities: the shifted set.
                ood.extend(
                    on_continent
                        .iter()
                        .skip(CITIES_PER_CONTINENT)
                        .take(OOD_CITIES_PER_CONTINENT)
                        .map(|c| (c.clone(), l)),
                );
            }
            ClassData {
                label_descriptions: labels.iter().map(|l| format!("a city in {l}")).collect(),
                labels,
                train,
                eval,
                ood,
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
        for task in ClassTask::SINGLE.into_iter().chain([ClassTask::All]) {
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
