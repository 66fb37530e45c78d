//! mergekit's YAML configuration for the methods this lab implements: read it into a
//! [`MergeSpec`] plus model paths, and write one back.
//!
//! ```yaml
//! merge_method: ties
//! base_model: path/to/base
//! models:
//!   - model: path/to/finetune-a
//!     parameters: {density: 0.5, weight: 0.5}
//! parameters: {normalize: true, lambda: 1.0}
//! dtype: bfloat16
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use safetensors::Dtype;
use serde::{Deserialize, Serialize};
use serde_norway::Value;

use super::merge::{MergeInput, MergeMethod, MergeSpec};

/// A merge read from (or to be written as) a mergekit config.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeConfig {
    pub base_model: PathBuf,
    pub models: Vec<PathBuf>,
    pub spec: MergeSpec,
    pub dtype: Option<Dtype>,
    /// Keys we read but do not act on (said to the user, never silently dropped).
    pub ignored: Vec<String>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    merge_method: String,
    base_model: String,
    models: Vec<RawModel>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    parameters: BTreeMap<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dtype: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    out_dtype: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    random_seed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tokenizer_source: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chat_template: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    model: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    parameters: BTreeMap<String, Value>,
}

pub fn dtype_from_name(s: &str) -> Option<Dtype> {
    match s {
        "float32" | "fp32" | "f32" => Some(Dtype::F32),
        "float16" | "fp16" | "f16" => Some(Dtype::F16),
        "bfloat16" | "bf16" => Some(Dtype::BF16),
        _ => None,
    }
}

pub fn dtype_name(d: Dtype) -> &'static str {
    match d {
        Dtype::F16 => "float16",
        Dtype::BF16 => "bfloat16",
        _ => "float32",
    }
}

/// A scalar parameter; mergekit's per-tensor filters and gradients are refused by name.
fn scalar<T: serde::de::DeserializeOwned>(v: &Value, what: &str) -> Result<T> {
    serde_norway::from_value(v.clone()).map_err(|_| {
        anyhow::anyhow!(
            "{what}: only plain numbers or booleans are supported here (per-tensor filters and gradients are not)"
        )
    })
}

impl MergeConfig {
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        Self::parse(&text, path.parent().unwrap_or(Path::new(".")))
            .with_context(|| format!("{}: not a usable mergekit config", path.display()))
    }

    /// Relative model paths are taken from `dir` (the config's folder), as a user expects.
    pub fn parse(text: &str, dir: &Path) -> Result<Self> {
        let raw: RawConfig = serde_norway::from_str(text)?;
        let method: MergeMethod = raw
            .merge_method
            .parse()
            .with_context(|| format!("merge_method {:?} is not supported", raw.merge_method))?;
        let resolve = |p: &str| {
            let p = PathBuf::from(p);
            if p.is_absolute() {
                p
            } else {
                dir.join(p)
            }
        };
        let mut ignored = Vec::new();
        let mut spec = MergeSpec::new(method, Vec::new());
        for (k, v) in &raw.parameters {
            match k.as_str() {
                "normalize" => spec.normalize = scalar(v, k)?,
                "rescale" => spec.rescale = scalar(v, k)?,
                "lambda" => spec.lambda = scalar(v, k)?,
                "int8_mask" => ignored.push(k.clone()),
                // Defaults for every model, as mergekit allows.
                "weight" | "density" => {}
                other => bail!("parameter {other:?} is not used by {}", method.name()),
            }
        }
        let global = |key: &str| -> Result<Option<f64>> {
            raw.parameters.get(key).map(|v| scalar(v, key)).transpose()
        };
        let mut models = Vec::new();
        for (i, m) in raw.models.iter().enumerate() {
            let get = |key: &str| -> Result<Option<f64>> {
                match m.parameters.get(key) {
                    Some(v) => scalar(v, &format!("models[{i}].{key}")).map(Some),
                    None => global(key),
                }
            };
            for k in m.parameters.keys() {
                if k != "weight" && k != "density" {
                    bail!(
                        "models[{i}]: parameter {k:?} is not used by {}",
                        method.name()
                    );
                }
            }
            let weight = get("weight")?
                .with_context(|| format!("models[{i}] ({}) has no weight", m.model))?;
            let density = get("density")?.unwrap_or(1.0);
            spec.inputs.push(MergeInput { weight, density });
            models.push(resolve(&m.model));
        }
        spec.seed = raw.random_seed.unwrap_or(0);
        let dtype_of = |s: &Option<String>| -> Result<Option<Dtype>> {
            s.as_deref()
                .map(|s| {
                    dtype_from_name(s)
                        .with_context(|| format!("dtype {s:?} is not float32, float16 or bfloat16"))
                })
                .transpose()
        };
        let dtype = dtype_of(&raw.out_dtype)?.or(dtype_of(&raw.dtype)?);
        for (key, present) in [
            ("tokenizer_source", raw.tokenizer_source.is_some()),
            ("chat_template", raw.chat_template.is_some()),
        ] {
            if present {
                ignored.push(key.to_string());
            }
        }
        spec.validate()?;
        Ok(Self {
            base_model: resolve(&raw.base_model),
            models,
            spec,
            dtype,
            ignored,
        })
    }

    /// Opens the checkpoints and writes the merge to `out` (in `dtype` when the config sets one).
    pub fn run(
        &self,
        out: &Path,
        progress: &mut super::prune::Progress,
    ) -> Result<super::RunSummary> {
        let base = crate::checkpoint::Checkpoint::open(&self.base_model)?;
        let models = self
            .models
            .iter()
            .map(|m| crate::checkpoint::Checkpoint::open(m))
            .collect::<Result<Vec<_>>>()?;
        let output = super::Output {
            dtype: self.dtype,
            ..super::Output::new(out)
        };
        super::merge_checkpoints(&base, &models, &self.spec, &output, progress)
    }

    pub fn to_yaml(&self) -> Result<String> {
        let num = |x: f64| serde_norway::to_value(x).expect("a float is YAML");
        let models = self
            .models
            .iter()
            .zip(&self.spec.inputs)
            .map(|(m, p)| RawModel {
                model: m.display().to_string(),
                parameters: [("weight", num(p.weight)), ("density", num(p.density))]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            })
            .collect();
        let mut parameters = BTreeMap::new();
        parameters.insert("normalize".into(), Value::Bool(self.spec.normalize));
        parameters.insert("rescale".into(), Value::Bool(self.spec.rescale));
        parameters.insert("lambda".into(), num(self.spec.lambda));
        let raw = RawConfig {
            merge_method: self.spec.method.name().into(),
            base_model: self.base_model.display().to_string(),
            models,
            parameters,
            dtype: Some(dtype_name(self.dtype.unwrap_or(Dtype::F32)).into()),
            out_dtype: None,
            random_seed: Some(self.spec.seed),
            tokenizer_source: None,
            chat_template: None,
            name: None,
        };
        Ok(serde_norway::to_string(&raw)?)
    }
}
