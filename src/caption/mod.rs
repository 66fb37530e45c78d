//! The caption lab: discriminative captioning — DiscriTune (Dessì et al., CVPR 2023). A
//! ClipCap-style captioner is fine-tuned with REINFORCE, the reward being a frozen retriever's
//! log-probability of the target image among the batch, so its captions single out their
//! image. Scenes, two retrievers (the reward's and a held-out judge), the captioner, the
//! method, its metrics and evaluation.

pub mod build;
pub mod captioner;
pub mod discritune;
pub mod eval;
pub mod gallery;
pub mod grid;
pub mod metrics;
pub mod retriever;
pub mod scenes;
pub mod vocab;

use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use candle_nn::VarMap;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The lab's folder: shipped models (`models/`) and results (`results/`).
pub fn dir() -> PathBuf {
    crate::assets::dir().join("caption")
}

pub fn models_dir() -> PathBuf {
    dir().join("models")
}

pub fn results_dir() -> PathBuf {
    dir().join("results")
}

/// Writes a model folder: `config.json` (`{"kind", "recipe"}`) and `model.safetensors`.
fn save_model(out: &Path, vars: &VarMap, kind: &str, recipe: &impl Serialize) -> Result<()> {
    let config = serde_json::json!({ "kind": kind, "recipe": recipe });
    crate::zoo::save_checkpoint(out, vars, &config, |_| Ok(()))
}

/// The recipe of a model folder of `kind`, with a clear error for a missing or foreign one.
fn read_config<T: DeserializeOwned>(dir: &Path, kind: &str) -> Result<T> {
    let path = dir.join("config.json");
    let config: serde_json::Value = crate::fs::read_json(&path, "a model config")?;
    ensure!(
        config["kind"] == kind,
        "{}: not a {kind} (kind {})",
        path.display(),
        config["kind"]
    );
    serde_json::from_value(config["recipe"].clone()).with_context(|| {
        format!(
            "{}: a {kind} config without a readable recipe",
            path.display()
        )
    })
}

/// Sets every variable of `vars` from the folder's `model.safetensors`; all must be there.
fn load_weights(vars: &VarMap, dir: &Path) -> Result<()> {
    let file = dir.join("model.safetensors");
    let missing = crate::train::load_into(vars, &file, "")?;
    ensure!(
        missing.is_empty(),
        "{}: missing tensors {}",
        file.display(),
        missing.join(", ")
    );
    Ok(())
}
