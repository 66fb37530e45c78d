//! Judges that ship as LoRA adapters on the shipped SmolLM2: `assets/judges/NAME/` holds the
//! adapter (PEFT files), its judgement template `template.txt` and a README with the commands
//! that rebuild it. The merged model is built from them on first use (seconds) beside them.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

use crate::train::adapter::{self, MergeRequest};
use crate::train::pretrained::GgufType;

/// The folder of shipped judge `name`.
pub fn dir(name: &str) -> PathBuf {
    crate::assets::dir().join("judges").join(name)
}

/// The names of the shipped judges.
pub fn names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(crate::assets::dir().join("judges"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join(adapter::CONFIG).exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Whether `built` exists and is newer than `source` (a merged judge older than its adapter is
/// rebuilt).
fn is_newer(built: &Path, source: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (modified(built), modified(source)) {
        (Some(b), Some(s)) => b >= s,
        (Some(_), None) => true,
        _ => false,
    }
}

/// A judge as the user named it: an existing model file or folder stays as it is; a shipped
/// judge's name becomes its merged model (built on first use, `on_stage` told) and its
/// template.
pub fn resolve(
    name_or_path: &Path,
    on_stage: &mut dyn FnMut(&str) -> Result<()>,
) -> Result<(PathBuf, Option<PathBuf>)> {
    if name_or_path.exists() {
        return Ok((name_or_path.to_path_buf(), None));
    }
    let name = name_or_path.to_string_lossy();
    let d = dir(&name);
    if name.contains(['/', '\\']) || !d.join(adapter::CONFIG).exists() {
        bail!(
            "{name}: no such file or folder, and no shipped judge of that name (shipped: {})",
            names().join(", ")
        );
    }
    let merged = d.join("merged-q8_0.gguf");
    if !is_newer(&merged, &d.join(adapter::WEIGHTS)) {
        on_stage(&format!(
            "building the {name} judge from its adapter (once)"
        ))?;
        let request = MergeRequest {
            base: crate::assets::default_model(),
            adapter: d.clone(),
            out: merged.clone(),
            gguf: Some(GgufType::Q8_0),
        };
        adapter::merge(&request, on_stage)?;
    }
    let template = d.join("template.txt");
    Ok((merged, template.exists().then_some(template)))
}
