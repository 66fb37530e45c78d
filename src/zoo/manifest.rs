//! `assets/zoo/manifest.json`: every zoo model with its task, recipe, size, training time and
//! scores, as `alignscope zoo build` measured them.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelEntry {
    pub name: String,
    /// Folder relative to the assets folder.
    pub path: String,
    /// `llama`, `bert` or `vit` (the candle-transformers module that loads it).
    pub architecture: String,
    /// The pretrained model it was fine-tuned from.
    pub base: Option<String>,
    pub task: String,
    pub metric: String,
    pub score: f64,
    /// The base model's score on the same task and metric.
    pub base_score: Option<f64>,
    /// Whether higher scores are better (false for perplexity).
    pub higher_is_better: bool,
    pub parameters: usize,
    /// Committed in `assets/`; otherwise built on first use by `zoo build`.
    pub shipped: bool,
    pub recipe: serde_json::Value,
    pub train_seconds: f64,
    pub eval_seconds: f64,
    /// Further scores (ECE, per-task exact match, loss, …).
    #[serde(default)]
    pub details: BTreeMap<String, f64>,
    /// Training loss every few steps, for the loss curve.
    #[serde(default)]
    pub loss_curve: Vec<f32>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    /// Threads the build ran with (timings depend on them).
    pub threads: usize,
    pub models: Vec<ModelEntry>,
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: not a zoo manifest", path.display()))
    }

    /// Writes through a temporary file so a failed write leaves the old manifest.
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::fs::write_atomic(
            path,
            (serde_json::to_string_pretty(self)? + "\n").as_bytes(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&ModelEntry> {
        self.models.iter().find(|m| m.name == name)
    }

    /// Replaces the entry of the same name, or adds it, keeping the zoo's order.
    pub fn upsert(&mut self, entry: ModelEntry, order: &[&str]) {
        self.models.retain(|m| m.name != entry.name);
        self.models.push(entry);
        let rank = |n: &str| order.iter().position(|o| *o == n).unwrap_or(usize::MAX);
        self.models.sort_by_key(|m| rank(&m.name));
    }

    /// Total seconds of training over all models.
    pub fn total_train_seconds(&self) -> f64 {
        self.models.iter().map(|m| m.train_seconds).sum()
    }
}
