//! The fine-tuning tasks: each answers a chat turn with one label of a small set, the rigid
//! output format that specialises a model. Both come from the zoo's shipped data
//! ([`crate::data::classify`]) with its train/held-out split.

use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::data::classify::{class_data, ClassTask, CONTINENTS, SENTIMENT_LABELS};
use crate::data::Sources;

crate::named_enum! {
    "fine-tuning task";
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum PromotTask {
        /// A short review built around a VADER word → "positive" or "negative".
        Sentiment = "sentiment",
        /// A city's name (GeoNames) → its continent, one of five.
        Continent = "continent",
    }
}

/// Held-out questions scored for the target accuracy.
const EVAL_QUESTIONS: usize = 100;

/// A question of the task and its label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Labelled {
    pub input: String,
    pub label: String,
}

/// A task's labels, training questions and held-out questions.
#[derive(Debug, Clone)]
pub struct TaskData {
    pub labels: Vec<String>,
    pub train: Vec<Labelled>,
    pub eval: Vec<Labelled>,
}

impl PromotTask {
    fn class_task(self) -> ClassTask {
        match self {
            PromotTask::Sentiment => ClassTask::Sentiment,
            PromotTask::Continent => ClassTask::Continent,
        }
    }

    /// The answers the task allows.
    pub fn labels(self) -> Vec<String> {
        let labels: &[&str] = match self {
            PromotTask::Sentiment => &SENTIMENT_LABELS,
            PromotTask::Continent => &CONTINENTS,
        };
        labels.iter().map(|l| l.to_string()).collect()
    }

    /// The task's data: the question is the text alone (no instruction), the answer its label.
    pub fn data(self, sources: &Sources) -> TaskData {
        let d = class_data(self.class_task(), sources);
        // The held-out rows come grouped by label; interleave them so any prefix is balanced.
        let mut by_label: Vec<Vec<Labelled>> = vec![Vec::new(); d.labels.len()];
        for (text, l) in &d.eval {
            by_label[*l].push(Labelled {
                input: text.clone(),
                label: d.labels[*l].clone(),
            });
        }
        let mut spread = Vec::new();
        let longest = by_label.iter().map(Vec::len).max().unwrap_or(0);
        for i in 0..longest {
            spread.extend(by_label.iter().filter_map(|g| g.get(i).cloned()));
        }
        spread.truncate(EVAL_QUESTIONS);
        TaskData {
            labels: d.labels.clone(),
            train: d
                .train
                .iter()
                .map(|(text, l)| Labelled {
                    input: text.clone(),
                    label: d.labels[*l].clone(),
                })
                .collect(),
            eval: spread,
        }
    }
}

/// Writes `rows` as chat JSON Lines (`{"messages": [user, assistant]}`), the fine-tuner's input.
pub fn write_jsonl(rows: &[Labelled], path: &Path) -> Result<()> {
    let text: String = rows
        .iter()
        .map(|r| {
            serde_json::json!({ "messages": [
                { "role": "user", "content": r.input },
                { "role": "assistant", "content": r.label },
            ]})
            .to_string()
                + "\n"
        })
        .collect();
    crate::fs::write_atomic(path, text.as_bytes())
}
