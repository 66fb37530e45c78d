//! The encoder family: small BERT sequence classifiers trained from scratch (post-LN; word,
//! position and type embeddings; pooler and classifier) with all-MiniLM-L6-v2's WordPiece
//! tokenizer. Two seeds make the Fusion lab's encoder pair: unlike fine-tunes of one pretrained
//! model, their neurons are not aligned to begin with.
//!
//! The task: a review sentence around one word of the VADER lexicon (all 3 091 words), labelled
//! by the word's polarity and strength. Held-out sentences reuse training words in new
//! sentences. (Polarity alone over the 296 strongest words was too easy: both parents and even
//! their plain average scored 100%.)

use std::collections::HashSet;
use std::path::Path;

use anyhow::Result;
use candle_nn::VarMap;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::minilm::{classifier_config, copy_tokenizer_files, padded_tokenizer};
use crate::data::sources::SentimentWord;
use crate::data::text_tasks::{NOUNS, TEMPLATES};
use crate::data::Sources;
use crate::train::bert::{batch_loss, BertShape, TrainBertClassifier};
use crate::train::{train_loop, Pull, Schedule, StepReport};

pub const TASK: &str = "sentiment-strength";
/// The labels, by index: polarity, then strength.
pub const LABELS: [&str; 4] = [
    "mild negative",
    "strong negative",
    "mild positive",
    "strong positive",
];
/// |rating| from which a word counts as strongly felt (about half the lexicon).
const STRONG: f32 = 2.0;
/// Held-out sentences, drawn from their own stream.
const EVAL_SENTENCES: usize = 400;
const EVAL_SEED: u64 = 0xE7A1;
/// Long enough for every sentence (at most about 20 word pieces).
const MAX_POSITIONS: usize = 64;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EncoderRecipe {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub steps: usize,
    pub batch: usize,
    pub peak_lr: f64,
    pub weight_decay: f64,
    pub seed: u64,
}

/// The folder whose tokenizer (and config fields the recipe does not set) the encoders take.
pub fn tokenizer_dir() -> std::path::PathBuf {
    crate::assets::dir().join("models/all-MiniLM-L6-v2")
}

/// A word's label: 2·positive + strong.
fn label(w: &SentimentWord) -> usize {
    2 * usize::from(w.rating > 0.0) + usize::from(w.rating.abs() >= STRONG)
}

/// The task's sentences: a fixed held-out set and endless training draws that avoid it.
pub struct SentimentSentences {
    words: Vec<SentimentWord>,
    eval: Vec<(String, usize)>,
    eval_texts: HashSet<String>,
}

impl SentimentSentences {
    pub fn new(sources: &Sources) -> Self {
        let mut out = Self {
            words: sources.words.clone(),
            eval: Vec::new(),
            eval_texts: HashSet::new(),
        };
        let mut rng = StdRng::seed_from_u64(EVAL_SEED);
        while out.eval.len() < EVAL_SENTENCES {
            let row = out.draw(&mut rng);
            if out.eval_texts.insert(row.0.clone()) {
                out.eval.push(row);
            }
        }
        out
    }

    pub fn load() -> Result<Self> {
        Ok(Self::new(&Sources::load(&super::dir().join("data"))?))
    }

    fn draw(&self, rng: &mut StdRng) -> (String, usize) {
        let w = self.words.choose(rng).expect("words");
        let text = TEMPLATES
            .choose(rng)
            .expect("templates")
            .replace("{n}", NOUNS.choose(rng).expect("nouns"))
            .replace("{w}", &w.word);
        (text, label(w))
    }

    /// `n` training sentences from the stream of `seed` (never a held-out sentence).
    pub fn train_rows(&self, seed: u64, n: usize) -> Vec<(String, usize)> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut rows = Vec::with_capacity(n);
        while rows.len() < n {
            let row = self.draw(&mut rng);
            if !self.eval_texts.contains(&row.0) {
                rows.push(row);
            }
        }
        rows
    }

    pub fn eval(&self) -> &[(String, usize)] {
        &self.eval
    }
}

pub fn train(
    recipe: &EncoderRecipe,
    sentences: &SentimentSentences,
    out: &Path,
    on_step: &mut dyn FnMut(StepReport) -> Result<()>,
) -> Result<Vec<f32>> {
    let base = tokenizer_dir();
    let mut raw: serde_json::Value = crate::fs::read_json(&base.join("config.json"), "JSON")?;
    raw["hidden_size"] = recipe.hidden.into();
    raw["num_hidden_layers"] = recipe.layers.into();
    raw["num_attention_heads"] = recipe.heads.into();
    raw["intermediate_size"] = (2 * recipe.hidden).into();
    raw["max_position_embeddings"] = MAX_POSITIONS.into();
    raw.as_object_mut().map(|m| m.remove("_name_or_path"));
    let shape: BertShape = serde_json::from_value(raw.clone())?;
    let varmap = VarMap::new();
    let model = TrainBertClassifier::new(
        shape,
        LABELS.len(),
        crate::train::seeded_builder(&varmap, recipe.seed),
    )?;
    let tokenizer = padded_tokenizer(&base)?;
    let schedule = Schedule::new(recipe.steps, recipe.peak_lr, 0.1);
    let losses = train_loop(
        &varmap,
        Pull::WeightDecay {
            lambda: recipe.weight_decay,
        },
        schedule,
        |step| {
            // Each seed sees its own stream of sentences.
            let rows = sentences.train_rows(recipe.seed * 1_000_003 + step as u64, recipe.batch);
            batch_loss(&model, &tokenizer, &rows.iter().collect::<Vec<_>>())
        },
        on_step,
    )?;
    let labels: Vec<String> = LABELS.map(String::from).to_vec();
    let config = classifier_config(raw, &labels, TASK);
    crate::train::model_folder::save_checkpoint(out, &varmap, &config, |dir| {
        copy_tokenizer_files(&base, dir)
    })?;
    Ok(losses)
}
