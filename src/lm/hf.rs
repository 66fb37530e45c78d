//! Loading Hugging Face model folders: config.json + tokenizer.json + model*.safetensors
//! (sharded with model.safetensors.index.json, or not), llama layout.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor};
use serde::Deserialize;

use super::chat::ChatTemplate;
use super::config::{DecoderConfig, Family, RopeStyle};
use super::error::{LmError, Result};
use super::kernels::QuantMatrix;
use super::tokenizer::TextTokenizer;
use super::transformer::{Block, Linear, Projection, RmsNorm, Transformer};

pub const SUPPORTED: &str =
    "llama, mistral, qwen2 (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)";

#[derive(Debug, Deserialize)]
struct HfConfig {
    vocab_size: usize,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    #[serde(default = "default_eps")]
    rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    rope_theta: f32,
    #[serde(default = "default_ctx")]
    max_position_embeddings: usize,
    #[serde(default)]
    tie_word_embeddings: bool,
}

fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f32 {
    10_000.0
}
fn default_ctx() -> usize {
    2048
}

/// Weight files of a folder, each opened (and so checked) on its own so errors name the file.
struct Weights {
    files: Vec<(PathBuf, MmapedSafetensors)>,
    index: HashMap<String, usize>,
    device: Device,
}

impl Weights {
    fn open(dir: &Path, device: &Device) -> Result<Self> {
        let index_path = dir.join("model.safetensors.index.json");
        let paths: Vec<PathBuf> = if index_path.exists() {
            let text =
                std::fs::read_to_string(&index_path).map_err(|e| LmError::file(&index_path, e))?;
            let json: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| LmError::file(&index_path, format!("invalid JSON: {e}")))?;
            let map = json["weight_map"]
                .as_object()
                .ok_or_else(|| LmError::file(&index_path, "no `weight_map` object"))?;
            let mut names: Vec<&str> = map.values().filter_map(|v| v.as_str()).collect();
            names.sort();
            names.dedup();
            names.iter().map(|n| dir.join(n)).collect()
        } else if dir.join("model.safetensors").exists() {
            vec![dir.join("model.safetensors")]
        } else {
            return Err(LmError::file(
                dir,
                "no model.safetensors or model.safetensors.index.json in this folder",
            ));
        };
        let mut files = Vec::new();
        let mut index = HashMap::new();
        for path in paths {
            // SAFETY: the file is mapped read-only; alignscope never writes to a file it has open.
            let st = unsafe { MmapedSafetensors::new(&path) }
                .map_err(|e| LmError::file(&path, format!("not a valid safetensors file: {e}")))?;
            for (name, _) in st.tensors() {
                index.insert(name, files.len());
            }
            files.push((path, st));
        }
        Ok(Self {
            files,
            index,
            device: device.clone(),
        })
    }

    fn has(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    fn get(&self, name: &str) -> Result<Tensor> {
        let i = *self.index.get(name).ok_or_else(|| {
            LmError::file(&self.files[0].0, format!("tensor `{name}` is missing"))
        })?;
        let (path, st) = &self.files[i];
        st.load(name, &self.device)
            .and_then(|t| t.to_dtype(DType::F32))
            .map_err(|e| LmError::file(path, format!("tensor `{name}`: {e}")))
    }

    fn vector(&self, name: &str) -> Result<Vec<f32>> {
        self.get(name)?
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| LmError::file(&self.files[0].0, format!("tensor `{name}`: {e}")))
    }

    fn matrix(&self, name: &str) -> Result<QuantMatrix> {
        let t = self.get(name)?;
        let (rows, cols) = t
            .dims2()
            .map_err(|e| LmError::file(&self.files[0].0, format!("tensor `{name}`: {e}")))?;
        Ok(QuantMatrix::from_f32(rows, cols, self.vector(name)?))
    }

    fn projection(&self, prefixes: &[&str]) -> Result<Projection> {
        let linears = prefixes
            .iter()
            .map(|prefix| {
                let bias = format!("{prefix}.bias");
                Ok(Linear {
                    weight: self.matrix(&format!("{prefix}.weight"))?,
                    bias: if self.has(&bias) {
                        Some(self.vector(&bias)?)
                    } else {
                        None
                    },
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Projection::fuse(linears))
    }

    fn norm(&self, name: &str, eps: f32) -> Result<RmsNorm> {
        Ok(RmsNorm {
            weight: self.vector(name)?,
            eps,
        })
    }
}

pub struct HfModel {
    pub transformer: Transformer,
    pub tokenizer: TextTokenizer,
    pub chat_template: Option<ChatTemplate>,
    pub parameters: usize,
    pub dtype: String,
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| LmError::file(path, format!("cannot read: {e}")))?;
    serde_json::from_str(&text).map_err(|e| LmError::file(path, format!("invalid JSON: {e}")))
}

/// `bos_token` in tokenizer_config.json is a string or `{ "content": ... }`.
fn token_field(cfg: &serde_json::Value, key: &str) -> Option<String> {
    match &cfg[key] {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content").and_then(|c| c.as_str()).map(String::from),
        _ => None,
    }
}

/// The llama-family kind a config.json names; `Err` for any other architecture.
fn family_of(config_path: &Path, raw: &serde_json::Value) -> Result<Family> {
    let model_type = raw["model_type"].as_str().unwrap_or("").to_string();
    match model_type.as_str() {
        "llama" | "mistral" => Ok(Family::Llama),
        "qwen2" => Ok(Family::Qwen2),
        _ => Err(LmError::UnsupportedArchitecture {
            path: config_path.to_path_buf(),
            arch: if model_type.is_empty() {
                "(no model_type)".into()
            } else {
                model_type
            },
            supported: SUPPORTED,
        }),
    }
}

/// A decoder folder's tokenizer alone, without its weights (what the fusion lab's text data
/// needs).
pub fn load_tokenizer(dir: &Path) -> Result<TextTokenizer> {
    let config_path = dir.join("config.json");
    let family = family_of(&config_path, &read_json(&config_path)?)?;
    Ok(tokenizer_and_template(dir, family)?.0)
}

/// `tokenizer.json` with the special tokens of `tokenizer_config.json`, and its chat template.
fn tokenizer_and_template(
    dir: &Path,
    family: Family,
) -> Result<(TextTokenizer, Option<ChatTemplate>)> {
    let tokenizer_path = dir.join("tokenizer.json");
    if !tokenizer_path.exists() {
        return Err(LmError::file(
            dir,
            "tokenizer.json is missing: the folder needs the model's tokenizer.json",
        ));
    }
    let tok_cfg_path = dir.join("tokenizer_config.json");
    let tok_cfg = if tok_cfg_path.exists() {
        read_json(&tok_cfg_path)?
    } else {
        serde_json::Value::Null
    };
    let bos = token_field(&tok_cfg, "bos_token");
    let eos = token_field(&tok_cfg, "eos_token");
    let add_bos = tok_cfg["add_bos_token"]
        .as_bool()
        .unwrap_or(family == Family::Llama && bos.is_some());
    let tokenizer =
        TextTokenizer::from_json_file(&tokenizer_path, bos.as_deref(), eos.as_deref(), add_bos)?;
    let chat_template = match tok_cfg["chat_template"].as_str() {
        Some(src) => Some(
            ChatTemplate::new(
                src.to_string(),
                bos.unwrap_or_default(),
                eos.unwrap_or_default(),
            )
            .map_err(|e| LmError::file(&tok_cfg_path, e))?,
        ),
        None => None,
    };
    Ok((tokenizer, chat_template))
}

pub fn load(dir: &Path, device: &Device) -> Result<HfModel> {
    let config_path = dir.join("config.json");
    let raw = read_json(&config_path)?;
    let family = family_of(&config_path, &raw)?;
    let cfg: HfConfig = serde_json::from_value(raw.clone())
        .map_err(|e| LmError::file(&config_path, format!("unexpected config: {e}")))?;
    let (tokenizer, chat_template) = tokenizer_and_template(dir, family)?;

    let weights = Weights::open(dir, device)?;
    let head_dim = cfg
        .head_dim
        .unwrap_or(cfg.hidden_size / cfg.num_attention_heads);
    let config = DecoderConfig {
        family,
        vocab_size: cfg.vocab_size,
        hidden_size: cfg.hidden_size,
        intermediate_size: cfg.intermediate_size,
        num_layers: cfg.num_hidden_layers,
        num_heads: cfg.num_attention_heads,
        num_kv_heads: cfg.num_key_value_heads.unwrap_or(cfg.num_attention_heads),
        head_dim,
        rms_norm_eps: cfg.rms_norm_eps,
        rope_theta: cfg.rope_theta,
        rope_style: RopeStyle::Halves,
        context_length: cfg.max_position_embeddings.min(8192),
        tie_embeddings: cfg.tie_word_embeddings || !weights.has("lm_head.weight"),
        sliding_window: None,
        attention_scale: 1.0 / (head_dim as f64).sqrt(),
    };
    let eps = config.rms_norm_eps as f32;
    let embeddings = weights.matrix("model.embed_tokens.weight")?;
    let lm_head = if config.tie_embeddings {
        embeddings.clone()
    } else {
        weights.matrix("lm_head.weight")?
    };
    let mut blocks = Vec::with_capacity(config.num_layers);
    for i in 0..config.num_layers {
        let p = format!("model.layers.{i}");
        blocks.push(Block {
            attn_norm: weights.norm(&format!("{p}.input_layernorm.weight"), eps)?,
            qkv: weights.projection(&[
                &format!("{p}.self_attn.q_proj"),
                &format!("{p}.self_attn.k_proj"),
                &format!("{p}.self_attn.v_proj"),
            ])?,
            o: weights.projection(&[&format!("{p}.self_attn.o_proj")])?,
            qk_norm: None,
            post_attn_norm: None,
            ffn_norm: weights.norm(&format!("{p}.post_attention_layernorm.weight"), eps)?,
            gate_up: weights
                .projection(&[&format!("{p}.mlp.gate_proj"), &format!("{p}.mlp.up_proj")])?,
            down: weights.projection(&[&format!("{p}.mlp.down_proj")])?,
            post_ffn_norm: None,
        });
    }
    let final_norm = weights.norm("model.norm.weight", eps)?;
    let dtype = weights
        .files
        .first()
        .and_then(|(_, st)| {
            st.tensors()
                .first()
                .map(|(_, v)| format!("{:?}", v.dtype()))
        })
        .unwrap_or_default();
    let parameters = weights
        .files
        .iter()
        .flat_map(|(_, st)| st.tensors())
        .map(|(_, v)| v.shape().iter().product::<usize>())
        .sum();
    Ok(HfModel {
        transformer: Transformer::new(config, embeddings, blocks, final_norm, lm_head),
        tokenizer,
        chat_template,
        parameters,
        dtype,
    })
}
