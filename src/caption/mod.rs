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

use std::path::PathBuf;

pub(crate) use crate::train::model_folder::{load_weights, read_config, save_model};

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
