//! Language-model runtime: loading (GGUF, safetensors folders), tokenizers, chat templates,
//! KV-cache sessions that fork and rewind, sampling and generation.

mod attention;
pub mod chat;
pub mod config;
pub mod error;
pub mod generate;
pub mod gguf;
pub mod hf;
pub mod kernels;
pub mod kv_cache;
pub mod sampling;
pub mod session;
pub mod soft_prompt;
pub mod tasks;
pub mod tokenizer;
pub mod transformer;

use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::Serialize;

pub use chat::{ChatTemplate, Message};
pub use error::{LmError, Result};
pub use generate::{generate, GeneratedToken, Generation, GenerationConfig, StopReason};
pub use sampling::{Sampler, SamplingParams, TokenChoice};
pub use session::Session;
pub use soft_prompt::SoftPrompt;
pub use tokenizer::TextTokenizer;
pub use transformer::Transformer;

/// What the model picker and `--json` outputs show about a loaded model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    /// The file or folder name: what the user picked.
    pub name: String,
    /// The name the model gives itself (GGUF `general.name`), if any.
    pub metadata_name: String,
    pub path: PathBuf,
    pub format: &'static str,
    pub architecture: String,
    pub parameters: usize,
    pub quantization: String,
    pub context_length: usize,
    pub vocab_size: usize,
    pub layers: usize,
    pub hidden_size: usize,
    pub heads: usize,
    pub kv_heads: usize,
}

/// What the file format says about its weights (the rest of [`ModelInfo`] is the config).
struct Weights {
    format: &'static str,
    metadata_name: String,
    architecture: String,
    parameters: usize,
    quantization: String,
}

impl ModelInfo {
    fn new(path: &Path, cfg: &config::DecoderConfig, w: Weights) -> Self {
        Self {
            name: file_stem(path),
            metadata_name: w.metadata_name,
            path: path.to_path_buf(),
            format: w.format,
            architecture: w.architecture,
            parameters: w.parameters,
            quantization: w.quantization,
            context_length: cfg.context_length,
            vocab_size: cfg.vocab_size,
            layers: cfg.num_layers,
            hidden_size: cfg.hidden_size,
            heads: cfg.num_heads,
            kv_heads: cfg.num_kv_heads,
        }
    }
}

pub struct LanguageModel {
    pub transformer: Transformer,
    pub tokenizer: TextTokenizer,
    pub chat_template: Option<ChatTemplate>,
    pub info: ModelInfo,
}

impl LanguageModel {
    /// Opens a GGUF file or a Hugging Face model folder.
    pub fn load(path: &Path) -> Result<Self> {
        let device = Device::Cpu;
        if !path.exists() {
            return Err(LmError::file(path, "no such file or folder"));
        }
        if path.is_dir() {
            return Self::load_hf(path, &device);
        }
        let mut gguf = gguf::GgufFile::open(path)?;
        let transformer = gguf.transformer()?;
        let tokenizer = TextTokenizer::from_gguf(&gguf)?;
        let token = |id: Option<u32>| id.map(|i| tokenizer.token_str(i)).unwrap_or_default();
        let chat_template = match gguf.string("tokenizer.chat_template") {
            Ok(src) => Some(
                ChatTemplate::new(src, token(tokenizer.bos), token(tokenizer.eos))
                    .map_err(|e| LmError::file(path, e))?,
            ),
            Err(_) => None,
        };
        let info = ModelInfo::new(
            path,
            &transformer.config,
            Weights {
                format: "GGUF",
                metadata_name: gguf.string("general.name").unwrap_or_default(),
                architecture: gguf.architecture()?,
                parameters: gguf.parameter_count(),
                quantization: gguf.quantization_summary(),
            },
        );
        Ok(Self {
            transformer,
            tokenizer,
            chat_template,
            info,
        })
    }

    fn load_hf(dir: &Path, device: &Device) -> Result<Self> {
        let m = hf::load(dir, device)?;
        let info = ModelInfo::new(
            dir,
            &m.transformer.config,
            Weights {
                format: "safetensors",
                metadata_name: String::new(),
                architecture: format!("{:?}", m.transformer.config.family).to_lowercase(),
                parameters: m.parameters,
                quantization: m.dtype.clone(),
            },
        );
        Ok(Self {
            transformer: m.transformer,
            tokenizer: m.tokenizer,
            chat_template: m.chat_template,
            info,
        })
    }

    /// The prompt text for a chat: the model's template, or plain `role: content` lines when the
    /// model has none.
    pub fn chat_prompt(&self, messages: &[Message]) -> Result<String> {
        match &self.chat_template {
            Some(t) => t.render(messages, true),
            None => {
                let mut s: String = messages
                    .iter()
                    .map(|m| format!("{}: {}\n", m.role, m.content))
                    .collect();
                s.push_str("assistant:");
                Ok(s)
            }
        }
    }

    /// Token ids of a single user turn rendered with the chat template.
    pub fn chat_ids(&self, user: &str) -> Result<Vec<u32>> {
        let text = self.chat_prompt(&[Message::new("user", user)])?;
        self.tokenizer.encode_prompt(&text)
    }
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}
