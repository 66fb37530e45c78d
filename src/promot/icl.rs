//! The in-context suite: k-shot tasks that SmolLM2-135M-Instruct can already do, asked as a
//! chat (each shot a user turn and the assistant's answer, then the query), answered greedily
//! by our runtime and scored by exact match. Fine-tuning on one task can destroy this ability
//! by *format specialisation*: the tuned model answers every chat with the tuned task's labels.
//! The suite measures both the accuracy per task and that specialisation rate.

use std::sync::Arc;

use anyhow::Result;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::data::Sources;
use crate::lm::chat::Message;
use crate::lm::{LanguageModel, SoftPrompt};

crate::named_enum! {
    "in-context task";
    /// One task of the suite.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum IclTask {
        /// Country → its capital (the 40 countries with the largest capitals in GeoNames).
        Capital = "capital",
        /// Word → its opposite.
        Opposite = "opposite",
        /// Noun → its plural.
        Plural = "plural",
        /// Word → the same word in capital letters.
        Uppercase = "uppercase",
        /// `a + b` of two digits → the sum.
        Addition = "addition",
        /// A number → the next number.
        Successor = "successor",
    }
}

/// Shots before each query.
pub const DEFAULT_SHOTS: usize = 3;
/// Queries per task.
const QUERIES: usize = 30;
/// Tokens generated per answer: every gold answer (here and on the target tasks) is a word or a
/// number.
pub const MAX_NEW: usize = 8;
const SEED: u64 = 5;

const OPPOSITES: [(&str, &str); 40] = [
    ("hot", "cold"),
    ("big", "small"),
    ("up", "down"),
    ("fast", "slow"),
    ("happy", "sad"),
    ("day", "night"),
    ("open", "closed"),
    ("light", "dark"),
    ("old", "new"),
    ("rich", "poor"),
    ("tall", "short"),
    ("wet", "dry"),
    ("hard", "soft"),
    ("early", "late"),
    ("full", "empty"),
    ("strong", "weak"),
    ("good", "bad"),
    ("left", "right"),
    ("in", "out"),
    ("yes", "no"),
    ("win", "lose"),
    ("black", "white"),
    ("begin", "end"),
    ("love", "hate"),
    ("push", "pull"),
    ("high", "low"),
    ("thick", "thin"),
    ("clean", "dirty"),
    ("loud", "quiet"),
    ("true", "false"),
    ("above", "below"),
    ("first", "last"),
    ("heavy", "light"),
    ("inside", "outside"),
    ("near", "far"),
    ("cheap", "expensive"),
    ("friend", "enemy"),
    ("give", "take"),
    ("north", "south"),
    ("east", "west"),
];

const PLURALS: [(&str, &str); 40] = [
    ("cat", "cats"),
    ("dog", "dogs"),
    ("house", "houses"),
    ("car", "cars"),
    ("book", "books"),
    ("tree", "trees"),
    ("apple", "apples"),
    ("bird", "birds"),
    ("table", "tables"),
    ("chair", "chairs"),
    ("box", "boxes"),
    ("bus", "buses"),
    ("city", "cities"),
    ("baby", "babies"),
    ("child", "children"),
    ("man", "men"),
    ("woman", "women"),
    ("mouse", "mice"),
    ("foot", "feet"),
    ("tooth", "teeth"),
    ("knife", "knives"),
    ("leaf", "leaves"),
    ("girl", "girls"),
    ("boy", "boys"),
    ("river", "rivers"),
    ("flower", "flowers"),
    ("window", "windows"),
    ("door", "doors"),
    ("horse", "horses"),
    ("star", "stars"),
    ("glass", "glasses"),
    ("dish", "dishes"),
    ("story", "stories"),
    ("party", "parties"),
    ("key", "keys"),
    ("song", "songs"),
    ("ship", "ships"),
    ("hand", "hands"),
    ("friend", "friends"),
    ("egg", "eggs"),
];

/// A question and its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pair {
    pub input: String,
    pub answer: String,
}

fn pairs(list: &[(&str, &str)]) -> Vec<Pair> {
    list.iter()
        .map(|(i, a)| Pair {
            input: i.to_string(),
            answer: a.to_string(),
        })
        .collect()
}

impl IclTask {
    /// Every pair the task draws its queries and shots from.
    pub fn pool(self, sources: &Sources) -> Vec<Pair> {
        match self {
            IclTask::Capital => {
                let population = |name: &str| {
                    sources
                        .cities
                        .iter()
                        .filter(|c| c.name == name)
                        .map(|c| c.population)
                        .max()
                };
                let mut known: Vec<(u64, Pair)> = sources
                    .countries
                    .iter()
                    .filter_map(|c| {
                        population(&c.capital).map(|p| {
                            (
                                p,
                                Pair {
                                    input: format!("What is the capital of {}?", c.name),
                                    answer: c.capital.clone(),
                                },
                            )
                        })
                    })
                    .collect();
                known.sort_by_key(|k| std::cmp::Reverse(k.0));
                known.into_iter().take(40).map(|(_, p)| p).collect()
            }
            IclTask::Opposite => pairs(&OPPOSITES),
            IclTask::Plural => pairs(&PLURALS),
            IclTask::Uppercase => PLURALS
                .iter()
                .map(|(w, _)| Pair {
                    input: w.to_string(),
                    answer: w.to_uppercase(),
                })
                .collect(),
            IclTask::Addition => (0..100)
                .map(|i| (i / 10, i % 10))
                .map(|(a, b)| Pair {
                    input: format!("{a} + {b}"),
                    answer: (a + b).to_string(),
                })
                .collect(),
            IclTask::Successor => (10..90)
                .map(|n| Pair {
                    input: n.to_string(),
                    answer: (n + 1).to_string(),
                })
                .collect(),
        }
    }
}

/// One k-shot question: the shots, then the query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Question {
    pub task: IclTask,
    pub shots: Vec<Pair>,
    pub query: Pair,
}

impl Question {
    /// The chat: one user turn and one assistant turn per shot, then the query's user turn.
    pub fn messages(&self) -> Vec<Message> {
        let mut m = Vec::with_capacity(2 * self.shots.len() + 1);
        for s in &self.shots {
            m.push(Message::new("user", &s.input));
            m.push(Message::new("assistant", &s.answer));
        }
        m.push(Message::new("user", &self.query.input));
        m
    }
}

/// The suite's questions for `task`: [`QUERIES`] queries, each with `shots` other pairs of
/// the pool, fixed by the seed.
pub fn questions(task: IclTask, sources: &Sources, shots: usize) -> Vec<Question> {
    let pool = task.pool(sources);
    let mut rng = StdRng::seed_from_u64(SEED ^ task as u64);
    let mut order: Vec<usize> = (0..pool.len()).collect();
    order.shuffle(&mut rng);
    order
        .iter()
        .take(QUERIES)
        .map(|&q| {
            let others: Vec<usize> = (0..pool.len()).filter(|&i| i != q).collect();
            Question {
                task,
                shots: others
                    .choose_multiple(&mut rng, shots)
                    .map(|&i| pool[i].clone())
                    .collect(),
                query: pool[q].clone(),
            }
        })
        .collect()
}

/// An answer as scored: the first line, trimmed, without a final full stop.
pub fn normalise(answer: &str) -> String {
    let line = answer.trim().lines().next().unwrap_or("").trim();
    line.trim_end_matches('.').trim().to_string()
}

/// Whether `got` is the gold answer, ignoring case.
pub fn correct(got: &str, gold: &str) -> bool {
    normalise(got).eq_ignore_ascii_case(gold)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answered {
    pub question: Question,
    pub got: String,
    pub correct: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskScore {
    pub task: IclTask,
    pub accuracy: f64,
    /// Share of answers that are one of the fine-tuning task's labels (when one is given).
    pub specialised: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IclReport {
    pub shots: usize,
    pub tasks: Vec<TaskScore>,
    /// Mean accuracy over the tasks.
    pub mean: f64,
    /// Share of all answers in the fine-tuning task's label set (format specialisation).
    pub specialised: Option<f64>,
    pub answers: Vec<Answered>,
}

impl IclReport {
    pub fn score(&self, task: IclTask) -> Option<&TaskScore> {
        self.tasks.iter().find(|t| t.task == task)
    }
}

/// Whether the answer `got` is one of `labels` (a fine-tuning task's): format specialisation.
pub fn in_labels(got: &str, labels: &[String]) -> bool {
    let got = normalise(got);
    labels.iter().any(|l| l.eq_ignore_ascii_case(&got))
}

/// Asks every question of `tasks` to `model` (with `soft_prompt` before each chat, if any) and
/// scores the answers; `labels` are the fine-tuning task's, for the specialisation rate.
pub fn evaluate(
    model: &Arc<LanguageModel>,
    soft_prompt: Option<&Arc<SoftPrompt>>,
    sources: &Sources,
    tasks: &[IclTask],
    shots: usize,
    labels: Option<&[String]>,
    on_task: &mut dyn FnMut(IclTask) -> Result<()>,
) -> Result<IclReport> {
    let mut scores = Vec::new();
    let mut answers = Vec::new();
    for &task in tasks {
        on_task(task)?;
        let qs = questions(task, sources, shots);
        let prompts = qs
            .iter()
            .map(|q| model.chat_prompt(&q.messages()))
            .collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
        let got = crate::eval::decoder::greedy_answers(model, soft_prompt, &refs, MAX_NEW)?;
        let answered: Vec<Answered> = qs
            .into_iter()
            .zip(got)
            .map(|(question, got)| Answered {
                correct: correct(&got, &question.query.answer),
                question,
                got,
            })
            .collect();
        let n = answered.len().max(1) as f64;
        scores.push(TaskScore {
            task,
            accuracy: answered.iter().filter(|a| a.correct).count() as f64 / n,
            specialised: labels
                .map(|l| answered.iter().filter(|a| in_labels(&a.got, l)).count() as f64 / n),
        });
        answers.extend(answered);
    }
    let mean = scores.iter().map(|s| s.accuracy).sum::<f64>() / scores.len().max(1) as f64;
    let specialised = labels.map(|l| {
        answers.iter().filter(|a| in_labels(&a.got, l)).count() as f64 / answers.len().max(1) as f64
    });
    Ok(IclReport {
        shots,
        tasks: scores,
        mean,
        specialised,
        answers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_compared_on_their_first_line_without_case_or_full_stop() {
        assert!(correct(" Paris.\nIt is in France.", "Paris"));
        assert!(correct("paris", "Paris"));
        assert!(!correct("The capital is Paris", "Paris"));
        assert!(in_labels(
            "Positive.",
            &["positive".into(), "negative".into()]
        ));
        assert!(!in_labels("Tokyo", &["positive".into()]));
    }
}
