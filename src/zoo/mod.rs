//! The model zoo: small real models every lab measures on, built by this project's own training
//! code and shipped in `assets/zoo/` as Hugging Face folders, with `manifest.json` recording
//! how each was made and what it scores. See docs/zoo.md.

pub mod byte_tokenizer;
pub mod decoder;
pub mod encoder;
pub mod manifest;
pub mod minilm;
pub mod specs;
pub mod tasks;
pub mod vision;

use std::path::PathBuf;

pub use manifest::{Manifest, ModelEntry};
pub use specs::{build, evaluate, resolve, specs, BuildEvent, ZooSpec};

/// `assets/zoo`.
pub fn dir() -> PathBuf {
    crate::assets::dir().join("zoo")
}

pub fn manifest_path() -> PathBuf {
    dir().join("manifest.json")
}
