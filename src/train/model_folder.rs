//! Trained model folders: a checkpoint (`model.safetensors`, a config, extra files) written
//! atomically, and the labs' small models (`config.json` as `{"kind", "recipe"}`), read back
//! with a clear error for a missing or foreign folder.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use candle_nn::VarMap;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Writes a model folder: `config.json` (`{"kind", "recipe"}`) and `model.safetensors`.
pub(crate) fn save_model(
    out: &Path,
    vars: &VarMap,
    kind: &str,
    recipe: &impl Serialize,
) -> Result<()> {
    let config = serde_json::json!({ "kind": kind, "recipe": recipe });
    save_checkpoint(out, vars, &config, |_| Ok(()))
}

/// The recipe of a model folder of `kind`, with a clear error for a missing or foreign one.
pub(crate) fn read_config<T: DeserializeOwned>(dir: &Path, kind: &str) -> Result<T> {
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
pub(crate) fn load_weights(vars: &VarMap, dir: &Path) -> Result<()> {
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

/// Writes a checkpoint folder: the VarMap as `model.safetensors`, `config`, and whatever
/// `extra` adds (tokenizer files), atomically (see [`crate::fs::write_folder`]).
pub fn save_checkpoint(
    out: &Path,
    varmap: &VarMap,
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

/// A classifier config's label names in id order, from `id2label`; `Err` says what is wrong.
pub fn label_names(cfg: &serde_json::Value) -> std::result::Result<Vec<String>, String> {
    let id2label = cfg["id2label"]
        .as_object()
        .filter(|m| !m.is_empty())
        .ok_or("no `id2label`")?;
    let mut labels = vec![String::new(); id2label.len()];
    for (id, name) in id2label {
        let slot = id
            .parse::<usize>()
            .ok()
            .and_then(|i| labels.get_mut(i))
            .ok_or_else(|| format!("`id2label` has a bad id {id:?}"))?;
        *slot = name.as_str().unwrap_or_default().to_string();
    }
    Ok(labels)
}
