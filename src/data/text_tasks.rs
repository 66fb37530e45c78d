//! The decoder family's tasks: prompts with one exact answer, fixed held-out evaluation sets,
//! unlimited training samples that never repeat an evaluation prompt, and the pre-training
//! mixture. Prompts start with the task's name (`add: 37+45 = `) and the answer follows.

use std::collections::HashSet;

use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::sources::{Country, SentimentWord, Sources};

/// How many prompts each held-out evaluation set has.
pub const EVAL_SIZE: usize = 200;
/// Countries kept out of KG-QA training (asked about only in evaluation).
const KG_EVAL_COUNTRIES: usize = 60;
/// Words whose mean VADER rating is at least this strong (296 words) make the decoder's
/// sentiment task and the polarity statements of the mixture: a 1M-parameter model trained
/// from scratch has to learn each word's polarity, and the full lexicon (3 091 words) is more
/// than it memorises in a few hundred steps.
const STRONG_RATING: f32 = 2.8;
/// Seed of the splits: changing it changes every evaluation set.
const SPLIT_SEED: u64 = 7;

crate::named_enum! {
    "task";
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum TextTask {
        /// Two-digit addition: `add: 37+45 = 82`.
        Add = "add",
        /// Spell a word backwards: `reverse: stone = enots`.
        Reverse = "reverse",
        /// Polarity of a sentence built around a VADER lexicon word.
        Sentiment = "sentiment",
        /// Question answering over two GeoNames facts given in the prompt:
        /// `facts: Peru capital Lima; Chile currency CLP. question: Chile currency ` → `CLP`.
        KgQa = "kg-qa",
    }
}

impl TextTask {
    /// Longest answer in bytes, for the decoding budget.
    pub fn max_answer_bytes(self) -> usize {
        match self {
            TextTask::Add => 3,
            TextTask::Reverse => 10,
            TextTask::Sentiment => 8,
            TextTask::KgQa => 20,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Example {
    pub prompt: String,
    pub answer: String,
}

pub const NOUNS: [&str; 10] = [
    "film", "book", "meal", "hotel", "service", "song", "game", "trip", "class", "phone",
];
pub const TEMPLATES: [&str; 6] = [
    "the {n} was {w}.",
    "i found the {n} {w}.",
    "what a {w} {n}.",
    "honestly, the {n} felt {w}.",
    "people call this {n} {w}.",
    "my {n} is {w}, really.",
];
const RELATIONS: [&str; 3] = ["capital", "continent", "currency"];

fn relation_value(c: &Country, relation: &str) -> String {
    match relation {
        "capital" => c.capital.clone(),
        "continent" => c.continent.clone(),
        _ => c.currency.clone(),
    }
}

pub struct TextTasks {
    sources: Sources,
    strong_words: Vec<SentimentWord>,
    add_train: Vec<(u32, u32)>,
    reverse_train: Vec<String>,
    kg_train: Vec<usize>,
    kg_eval: Vec<usize>,
    eval: Vec<(TextTask, Vec<Example>)>,
    eval_prompts: HashSet<String>,
}

impl TextTasks {
    pub fn new(sources: Sources) -> Self {
        let mut rng = StdRng::seed_from_u64(SPLIT_SEED);
        let mut pairs: Vec<(u32, u32)> = (0..100)
            .flat_map(|a| (0..100).map(move |b| (a, b)))
            .collect();
        pairs.shuffle(&mut rng);
        let add_eval = pairs.split_off(pairs.len() - EVAL_SIZE);
        let mut words: Vec<String> = sources.words.iter().map(|w| w.word.clone()).collect();
        words.shuffle(&mut rng);
        let reverse_eval = words.split_off(words.len() - EVAL_SIZE);
        let mut kg: Vec<usize> = (0..sources.countries.len()).collect();
        kg.shuffle(&mut rng);
        let kg_eval = kg.split_off(kg.len() - KG_EVAL_COUNTRIES);
        let strong_words = sources
            .words
            .iter()
            .filter(|w| w.rating.abs() >= STRONG_RATING)
            .cloned()
            .collect();
        let mut tasks = Self {
            strong_words,
            sources,
            add_train: pairs,
            reverse_train: words,
            kg_train: kg,
            kg_eval,
            eval: Vec::new(),
            eval_prompts: HashSet::new(),
        };
        let sentiment_eval = unique(|| tasks.sentiment(&mut rng));
        let kg_eval = unique(|| tasks.kg_qa(&mut rng, &tasks.kg_eval));
        tasks.eval = vec![
            (
                TextTask::Add,
                add_eval
                    .into_iter()
                    .map(|(a, b)| add_example(a, b))
                    .collect(),
            ),
            (
                TextTask::Reverse,
                reverse_eval.iter().map(|w| reverse_example(w)).collect(),
            ),
            (TextTask::Sentiment, sentiment_eval),
            (TextTask::KgQa, kg_eval),
        ];
        tasks.eval_prompts = tasks
            .eval
            .iter()
            .flat_map(|(_, set)| set.iter().map(|e| e.prompt.clone()))
            .collect();
        tasks
    }

    pub fn eval_set(&self, task: TextTask) -> &[Example] {
        self.eval
            .iter()
            .find(|(t, _)| *t == task)
            .map(|(_, s)| s.as_slice())
            .unwrap_or_default()
    }

    /// A training example; never one of the evaluation prompts.
    pub fn sample_train(&self, task: TextTask, rng: &mut StdRng) -> Example {
        loop {
            let ex = match task {
                TextTask::Add => {
                    let (a, b) = *self.add_train.choose(rng).expect("pairs");
                    add_example(a, b)
                }
                TextTask::Reverse => {
                    reverse_example(self.reverse_train.choose(rng).expect("words"))
                }
                TextTask::Sentiment => self.sentiment(rng),
                TextTask::KgQa => self.kg_qa(rng, &self.kg_train),
            };
            if !self.eval_prompts.contains(&ex.prompt) {
                return ex;
            }
        }
    }

    fn sentiment(&self, rng: &mut StdRng) -> Example {
        let w = self.strong_words.choose(rng).expect("words");
        let template = TEMPLATES.choose(rng).expect("templates");
        let sentence = template
            .replace("{n}", NOUNS.choose(rng).expect("nouns"))
            .replace("{w}", &w.word);
        Example {
            prompt: format!("sentiment: {sentence} = "),
            answer: if w.rating > 0.0 {
                "positive"
            } else {
                "negative"
            }
            .into(),
        }
    }

    /// Two facts about distinct countries from `pool`, one of them asked.
    fn kg_qa(&self, rng: &mut StdRng, pool: &[usize]) -> Example {
        let picked: Vec<&Country> = pool
            .choose_multiple(rng, 2)
            .map(|&i| &self.sources.countries[i])
            .collect();
        let facts: Vec<(&Country, &str)> = picked
            .iter()
            .map(|c| (*c, *RELATIONS.choose(rng).expect("relations")))
            .collect();
        let listed: Vec<String> = facts
            .iter()
            .map(|(c, r)| format!("{} {r} {}", c.name, relation_value(c, r)))
            .collect();
        let (c, r) = facts[rng.random_range(0..facts.len())];
        Example {
            // The question repeats the fact's words, so the answer is what followed them in the
            // facts: the copying pattern (induction) the pre-training mixture teaches. With
            // `… question: Chile currency = ` the model answered from memory instead (27%).
            prompt: format!("facts: {}. question: {} {r} ", listed.join("; "), c.name),
            answer: relation_value(c, r),
        }
    }

    /// Pre-training text: statements of the GeoNames facts (every country) and of word
    /// polarities, counting and word lists, packed into lines of about `len` bytes. None of the
    /// task formats appears.
    pub fn mixture_text(&self, rng: &mut StdRng, len: usize) -> String {
        let mut out = String::new();
        while out.len() < len {
            let line = match rng.random_range(0..10) {
                0..=4 => {
                    let c = self.sources.countries.choose(rng).expect("countries");
                    match rng.random_range(0..5) {
                        0 => format!("The capital of {} is {}.", c.name, c.capital),
                        1 => format!("{} is the capital city of {}.", c.capital, c.name),
                        2 => format!("{} is a country in {}.", c.name, c.continent),
                        3 => format!("In {} people pay in {}.", c.name, c.currency),
                        _ => format!(
                            "{} lies in {}; its capital is {}.",
                            c.name, c.continent, c.capital
                        ),
                    }
                }
                5..=6 => {
                    let w = self.strong_words.choose(rng).expect("words");
                    let feeling = if w.rating > 0.0 { "good" } else { "bad" };
                    format!("To say {} is to say something {feeling}.", w.word)
                }
                7 => {
                    let start = rng.random_range(0..90u32);
                    let step = rng.random_range(1..4u32);
                    let seq: Vec<String> = (0..6).map(|k| (start + k * step).to_string()).collect();
                    format!("Counting: {}.", seq.join(" "))
                }
                _ => {
                    // Repeated spans teach the model to copy (induction), which the
                    // reversal and KG-QA fine-tunes build on.
                    let ws: Vec<&str> = (0..3)
                        .map(|_| self.sources.words.choose(rng).expect("words").word.as_str())
                        .collect();
                    format!("Some words: {}; again: {}.", ws.join(", "), ws.join(", "))
                }
            };
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&line);
        }
        out.truncate(floor_char_boundary(&out, len));
        out
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// `EVAL_SIZE` distinct examples from `make`.
fn unique(mut make: impl FnMut() -> Example) -> Vec<Example> {
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(EVAL_SIZE);
    while out.len() < EVAL_SIZE {
        let ex = make();
        if seen.insert(ex.prompt.clone()) {
            out.push(ex);
        }
    }
    out
}

fn add_example(a: u32, b: u32) -> Example {
    Example {
        prompt: format!("add: {a}+{b} = "),
        answer: (a + b).to_string(),
    }
}

fn reverse_example(word: &str) -> Example {
    Example {
        prompt: format!("reverse: {word} = "),
        answer: word.chars().rev().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tasks() -> TextTasks {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/zoo/data");
        TextTasks::new(Sources::load(&dir).expect("zoo data"))
    }

    #[test]
    fn evaluation_sets_are_fixed_and_held_out() {
        let (a, b) = (tasks(), tasks());
        let mut rng = StdRng::seed_from_u64(1);
        for &task in TextTask::ALL {
            let set = a.eval_set(task);
            assert_eq!(set.len(), EVAL_SIZE);
            assert_eq!(set, b.eval_set(task), "{task:?}: same set every time");
            let prompts: HashSet<&str> = set.iter().map(|e| e.prompt.as_str()).collect();
            for _ in 0..500 {
                let ex = a.sample_train(task, &mut rng);
                assert!(
                    !prompts.contains(ex.prompt.as_str()),
                    "{task:?}: {ex:?} is held out"
                );
                assert!(ex.answer.len() <= task.max_answer_bytes());
            }
        }
        // KG-QA evaluation asks only about countries never asked about in training.
        let held: HashSet<&str> = a
            .kg_eval
            .iter()
            .map(|&i| a.sources.countries[i].name.as_str())
            .collect();
        for ex in a.eval_set(TextTask::KgQa) {
            let asked = ex.prompt.rsplit("question: ").next().unwrap();
            assert!(
                ex.prompt.contains(&format!("{}{}", asked, ex.answer)),
                "{}",
                ex.prompt
            );
            assert!(held.iter().any(|c| asked.starts_with(c)), "{}", ex.prompt);
            assert!(
                ex.prompt.contains(&ex.answer),
                "the answer is among the facts"
            );
        }
        assert_eq!(a.eval_set(TextTask::Add)[0].answer, {
            let p = &a.eval_set(TextTask::Add)[0].prompt;
            let (x, y) = p["add: ".len()..p.len() - 3].split_once('+').unwrap();
            (x.parse::<u32>().unwrap() + y.parse::<u32>().unwrap()).to_string()
        });
    }

    #[test]
    fn mixture_has_none_of_the_task_formats() {
        let t = tasks();
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..200 {
            let text = t.mixture_text(&mut rng, 95);
            assert!(text.len() <= 95);
            for marker in ["add:", "reverse:", "sentiment:", "facts:", " = "] {
                assert!(!text.contains(marker), "{text}");
            }
        }
    }
}
