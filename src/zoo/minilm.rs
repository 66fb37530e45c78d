//! The encoder pair: full fine-tunes of the shipped all-MiniLM-L6-v2 into BERT sequence
//! classifiers (the DARE papers' encoder setting on a real pretrained model).

use std::path::Path;

use anyhow::{Context, Result};
use candle_nn::VarMap;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use tokenizers::{PaddingParams, Tokenizer};

use crate::data::classify::{ClassData, ClassTask};
use crate::train::bert::{batch_loss, BertShape, TrainBertClassifier};
use crate::train::{train_loop, Pull, Schedule, StepReport};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MinilmRecipe {
    pub task: ClassTask,
    pub steps: usize,
    pub batch: usize,
    pub peak_lr: f64,
    pub pull: Pull,
    pub seed: u64,
}

pub fn train(
    recipe: &MinilmRecipe,
    data: &ClassData,
    base: &Path,
    out: &Path,
    on_step: &mut dyn FnMut(StepReport) -> Result<()>,
) -> Result<Vec<f32>> {
    let config_path = base.join("config.json");
    let raw: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&config_path)
            .with_context(|| format!("{}: cannot read", config_path.display()))?,
    )
    .with_context(|| format!("{}: invalid JSON", config_path.display()))?;
    let shape: BertShape = serde_json::from_value(raw.clone())
        .with_context(|| format!("{}: not a BERT config", config_path.display()))?;
    let varmap = VarMap::new();
    let labels = data.labels.len();
    let model = TrainBertClassifier::new(
        shape,
        labels,
        crate::train::seeded_builder(&varmap, recipe.seed),
    )?;
    let missing = crate::train::load_into(&varmap, &base.join("model.safetensors"), "bert.")?;
    anyhow::ensure!(
        missing.iter().all(|m| m.starts_with("classifier.")),
        "{}: the encoder lacks {missing:?}",
        base.display()
    );
    let tokenizer = padded_tokenizer(base)?;
    let mut rng = StdRng::seed_from_u64(recipe.seed);
    let schedule = Schedule::new(recipe.steps, recipe.peak_lr, 0.1);
    let losses = train_loop(
        &varmap,
        recipe.pull,
        schedule,
        |_| {
            let rows: Vec<&(String, usize)> = (0..recipe.batch)
                .map(|_| data.train.choose(&mut rng).expect("train set"))
                .collect();
            batch_loss(&model, &tokenizer, &rows)
        },
        on_step,
    )?;
    let config = classifier_config(raw, &data.labels, recipe.task.name());
    crate::train::model_folder::save_checkpoint(out, &varmap, &config, |dir| {
        copy_tokenizer_files(base, dir)
    })?;
    Ok(losses)
}

/// `raw`, a BERT config.json, as the config of a sequence classifier over `labels`.
pub fn classifier_config(
    mut raw: serde_json::Value,
    labels: &[String],
    task: &str,
) -> serde_json::Value {
    raw["architectures"] = serde_json::json!(["BertForSequenceClassification"]);
    raw["id2label"] = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (i.to_string(), l.as_str().into()))
        .collect::<serde_json::Map<_, _>>()
        .into();
    raw["label2id"] = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.clone(), i.into()))
        .collect::<serde_json::Map<_, _>>()
        .into();
    raw["torch_dtype"] = "float32".into();
    raw["finetuning_task"] = task.into();
    raw
}

/// A BERT folder's tokenizer, padding each batch to its longest text.
pub fn padded_tokenizer(dir: &Path) -> Result<Tokenizer> {
    let path = dir.join("tokenizer.json");
    let mut tokenizer =
        Tokenizer::from_file(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    tokenizer.with_padding(Some(PaddingParams::default()));
    Ok(tokenizer)
}

/// Copies a BERT folder's tokenizer files and licence (those it has) into a checkpoint folder.
pub fn copy_tokenizer_files(from: &Path, to: &Path) -> Result<()> {
    crate::fs::copy_present(
        from,
        to,
        &[
            "tokenizer.json",
            "tokenizer_config.json",
            "special_tokens_map.json",
            "LICENSE",
        ],
    )
}
