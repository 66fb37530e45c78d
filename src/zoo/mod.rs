//! The model zoo: small real models every lab measures on, built by this project's own training
//! code and shipped in `assets/zoo/` as Hugging Face folders, with `manifest.json` recording
//! how each was made and what it scores. See docs/zoo.md.

pub mod byte_tokenizer;
pub mod data;
pub mod decoder;
pub mod deltas;
pub mod manifest;
pub mod minilm;
pub mod specs;
pub mod vision;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub use manifest::{Manifest, ModelEntry};
pub use specs::{build, evaluate, specs, BuildEvent, ZooSpec};

/// `assets/zoo`.
pub fn dir() -> PathBuf {
    crate::assets::dir().join("zoo")
}

pub fn manifest_path() -> PathBuf {
    dir().join("manifest.json")
}

/// Writes a checkpoint folder: the VarMap as `model.safetensors`, `config`, and whatever
/// `extra` adds (tokenizer files), atomically as [`write_folder`] does.
pub fn save_checkpoint(
    out: &Path,
    varmap: &candle_nn::VarMap,
    config: &serde_json::Value,
    extra: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    write_folder(out, |dir| {
        varmap.save(dir.join("model.safetensors"))?;
        std::fs::write(
            dir.join("config.json"),
            serde_json::to_string_pretty(config)?,
        )?;
        extra(dir)
    })
}

/// Writes a model folder through a temporary sibling and renames it into place, so a failed
/// or cancelled build leaves the previous folder whole.
pub fn write_folder(out: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let name = out
        .file_name()
        .with_context(|| format!("{}: not a folder name", out.display()))?
        .to_string_lossy();
    let tmp = out.with_file_name(format!(".{name}.partial"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("{}: cannot create", tmp.display()))?;
    if let Err(e) = fill(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if out.exists() {
        std::fs::remove_dir_all(out)
            .with_context(|| format!("{}: cannot replace", out.display()))?;
    }
    std::fs::rename(&tmp, out).with_context(|| format!("{}: cannot write", out.display()))
}
