//! The model zoo: small real models every lab measures on, built by this project's own training
//! code and shipped in `assets/zoo/` as Hugging Face folders, with `manifest.json` recording
//! how each was made and what it scores. See docs/zoo.md.

pub mod byte_tokenizer;
pub mod decoder;
pub mod manifest;
pub mod minilm;
pub mod specs;
pub mod tasks;
pub mod vision;

use std::path::{Path, PathBuf};

use anyhow::Result;

pub use manifest::{Manifest, ModelEntry};
pub use specs::{build, evaluate, resolve, specs, BuildEvent, ZooSpec};

/// `assets/zoo`.
pub fn dir() -> PathBuf {
    crate::assets::dir().join("zoo")
}

pub fn manifest_path() -> PathBuf {
    dir().join("manifest.json")
}

/// Writes a checkpoint folder: the VarMap as `model.safetensors`, `config`, and whatever
/// `extra` adds (tokenizer files), atomically (see [`crate::fs::write_folder`]).
pub fn save_checkpoint(
    out: &Path,
    varmap: &candle_nn::VarMap,
    config: &serde_json::Value,
    extra: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    crate::fs::write_folder(out, |dir| {
        varmap.save(dir.join("model.safetensors"))?;
        std::fs::write(
            dir.join("config.json"),
            serde_json::to_string_pretty(config)?,
        )?;
        extra(dir)
    })
}
