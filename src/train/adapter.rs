//! LoRA adapters on their own, in PEFT's format: `adapter_model.safetensors` (names prefixed
//! `base_model.model.`) and `adapter_config.json`. An adapter is a few megabytes where the
//! merged model is hundreds, so it is what ships; applied to the base it was trained on, it
//! gives the trained model back.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{ensure, Context, Result};
use candle_core::Tensor;

use super::llama::{LoraConfig, TrainLlama};
use super::pretrained::{write_gguf, write_hf_folder, GgufType, Pretrained};
use crate::jobs::{JobBoard, JobHandle, JobSpec, Report};

pub const WEIGHTS: &str = "adapter_model.safetensors";
pub const CONFIG: &str = "adapter_config.json";
/// What PEFT puts before the model's own names.
const PREFIX: &str = "base_model.model.";

/// Writes `model`'s adapters into folder `dir` (nothing if it has none). `base` is recorded
/// as the model they apply to.
pub fn write(dir: &Path, model: &TrainLlama, base: &Path) -> Result<()> {
    let Some((weights, config)) = model.lora() else {
        return Ok(());
    };
    let weights: HashMap<String, Tensor> = weights
        .into_iter()
        .map(|(k, v)| (format!("{PREFIX}{k}"), v))
        .collect();
    candle_core::safetensors::save(&weights, dir.join(WEIGHTS))?;
    let config = serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": config.rank,
        "lora_alpha": config.alpha,
        "lora_dropout": config.dropout,
        "target_modules": config.targets,
        "bias": "none",
        "base_model_name_or_path": base.file_name().map(|n| n.to_string_lossy().into_owned()),
    });
    std::fs::write(dir.join(CONFIG), serde_json::to_string_pretty(&config)?)?;
    Ok(())
}

/// The configuration in `dir`'s `adapter_config.json`.
pub fn read_config(dir: &Path) -> Result<LoraConfig> {
    let path = dir.join(CONFIG);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let c: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not valid JSON", path.display()))?;
    ensure!(
        c["peft_type"] == "LORA",
        "{}: not a LoRA adapter (peft_type {})",
        path.display(),
        c["peft_type"]
    );
    let num = |k: &str| {
        c[k].as_f64()
            .with_context(|| format!("{}: no number `{k}`", path.display()))
    };
    let targets = c["target_modules"]
        .as_array()
        .with_context(|| format!("{}: no list `target_modules`", path.display()))?
        .iter()
        .filter_map(|t| t.as_str().map(String::from))
        .collect();
    Ok(LoraConfig {
        rank: num("r")? as usize,
        alpha: num("lora_alpha")?,
        dropout: num("lora_dropout").unwrap_or(0.0) as f32,
        targets,
    })
}

/// Adds the adapters of folder `dir` to `model` (with their weights), for inference or further
/// training: every adapter tensor must be there with the shape the model needs.
pub fn apply(model: &mut TrainLlama, dir: &Path) -> Result<()> {
    let config = read_config(dir)?;
    let path = dir.join(WEIGHTS);
    let vars = candle_nn::VarMap::new();
    model.add_lora(&config, super::seeded_builder(&vars, 0))?;
    let missing = super::load_into(&vars, &path, PREFIX).with_context(|| {
        format!(
            "{}: does not fit this model (another base model?)",
            path.display()
        )
    })?;
    ensure!(
        missing.is_empty(),
        "{}: {} adapter tensors missing, e.g. {} (another base model?)",
        path.display(),
        missing.len(),
        missing[0]
    );
    Ok(())
}

/// What [`spawn_merge`] does: `adapter` (a folder with PEFT files) applied to `base`, written
/// to `out` as a GGUF of `gguf` type (the base must then be a GGUF, whose metadata it copies)
/// or, without `gguf`, as a Hugging Face folder.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MergeRequest {
    pub base: std::path::PathBuf,
    pub adapter: std::path::PathBuf,
    pub out: std::path::PathBuf,
    pub gguf: Option<GgufType>,
}

/// Where the merged model went.
pub struct Merged(pub std::path::PathBuf);

impl Report for Merged {
    fn metrics(&self) -> serde_json::Value {
        serde_json::json!({})
    }
    fn outputs(&self) -> serde_json::Value {
        serde_json::json!({ "out": self.0 })
    }
}

pub fn merge(request: &MergeRequest, on_stage: &mut dyn FnMut(&str) -> Result<()>) -> Result<()> {
    on_stage("loading the base model")?;
    let pretrained = Pretrained::load(&request.base)?;
    let mut model = pretrained.frozen_model()?;
    on_stage("applying the adapter")?;
    apply(&mut model, &request.adapter)?;
    model.train = false;
    on_stage("writing the merged model")?;
    match request.gguf {
        Some(t) => write_gguf(&request.out, &model, &request.base, t),
        None => write_hf_folder(
            &request.out,
            &model,
            &crate::lm::LanguageModel::load(&request.base)?,
        ),
    }
}

pub fn spawn_merge(board: &JobBoard, request: MergeRequest) -> JobHandle<(), Merged> {
    let spec = JobSpec {
        kind: "merge-adapter".into(),
        title: format!("merge adapter into {}", request.out.display()),
        inputs: serde_json::to_value(&request).unwrap_or_default(),
        seed: None,
    };
    board.spawn(spec, move |ctx| {
        merge(&request, &mut |stage| ctx.stage(stage))?;
        Ok(Merged(request.out.clone()))
    })
}
