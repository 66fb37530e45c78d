//! Loading decoders and their tokenizers from GGUF files.

use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;

use candle_core::quantized::gguf_file;
use candle_core::Device;

use super::config::{DecoderConfig, Family, RopeStyle, SlidingWindow};
use super::error::{LmError, Result};
use super::kernels::QuantMatrix;
use super::transformer::{Block, Linear, Projection, RmsNorm, Transformer};

pub const SUPPORTED: &str = "llama (SmolLM2, Llama, Mistral), qwen2, gemma3";

/// An opened GGUF: its metadata and a reader positioned anywhere.
pub struct GgufFile {
    pub content: gguf_file::Content,
    reader: BufReader<File>,
    path: std::path::PathBuf,
}

impl GgufFile {
    pub fn open(path: &Path) -> Result<Self> {
        let file =
            File::open(path).map_err(|e| LmError::file(path, format!("cannot open: {e}")))?;
        let mut reader = BufReader::new(file);
        let mut magic = [0u8; 4];
        if reader.read_exact(&mut magic).is_err() || &magic != b"GGUF" {
            return Err(LmError::file(
                path,
                "not a GGUF file (the first four bytes are not `GGUF`)",
            ));
        }
        reader.rewind().map_err(|e| LmError::file(path, e))?;
        let content = gguf_file::Content::read(&mut reader)
            .map_err(|e| LmError::file(path, format!("damaged GGUF header: {e}")))?;
        let file_len = std::fs::metadata(path)
            .map_err(|e| LmError::file(path, e))?
            .len();
        // A truncated download keeps a valid header; check the tensor data is all there.
        let data_end = content
            .tensor_infos
            .values()
            .map(|t| {
                let bytes =
                    t.shape.elem_count() / t.ggml_dtype.block_size() * t.ggml_dtype.type_size();
                content.tensor_data_offset + t.offset + bytes as u64
            })
            .max()
            .unwrap_or(content.tensor_data_offset);
        if data_end > file_len {
            return Err(LmError::file(
                path,
                format!(
                    "truncated: tensor data needs {data_end} bytes but the file has {file_len}"
                ),
            ));
        }
        Ok(Self {
            content,
            reader,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn architecture(&self) -> Result<String> {
        self.string("general.architecture")
    }

    pub fn string(&self, key: &str) -> Result<String> {
        self.value(key)?
            .to_string()
            .cloned()
            .map_err(|e| LmError::file(&self.path, format!("metadata `{key}`: {e}")))
    }

    pub fn u32(&self, key: &str) -> Result<u32> {
        let v = self.value(key)?;
        v.to_u32()
            .or_else(|_| v.to_u64().map(|x| x as u32))
            .or_else(|_| v.to_i32().map(|x| x as u32))
            .map_err(|e| LmError::file(&self.path, format!("metadata `{key}`: {e}")))
    }

    pub fn f32(&self, key: &str) -> Result<f32> {
        self.value(key)?
            .to_f32()
            .map_err(|e| LmError::file(&self.path, format!("metadata `{key}`: {e}")))
    }

    pub fn value(&self, key: &str) -> Result<&gguf_file::Value> {
        self.content
            .metadata
            .get(key)
            .ok_or_else(|| LmError::file(&self.path, format!("metadata key `{key}` is missing")))
    }

    pub fn has_tensor(&self, name: &str) -> bool {
        self.content.tensor_infos.contains_key(name)
    }

    fn qtensor(&mut self, name: &str) -> Result<candle_core::quantized::QTensor> {
        self.content
            .tensor(&mut self.reader, name, &Device::Cpu)
            .map_err(|e| LmError::file(&self.path, format!("tensor `{name}`: {e}")))
    }

    fn matrix(&mut self, name: &str) -> Result<QuantMatrix> {
        QuantMatrix::from_qtensor(&self.qtensor(name)?)
            .map_err(|e| LmError::file(&self.path, format!("tensor `{name}`: {e}")))
    }

    /// Tensor `name` dequantised to f32, dimensions in PyTorch's order (`[rows, cols]`).
    pub fn dequantize(&mut self, name: &str) -> Result<candle_core::Tensor> {
        self.qtensor(name)?
            .dequantize(&Device::Cpu)
            .map_err(|e| LmError::file(&self.path, format!("tensor `{name}`: {e}")))
    }

    fn float(&mut self, name: &str) -> Result<Vec<f32>> {
        self.dequantize(name)?
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| LmError::file(&self.path, format!("tensor `{name}`: {e}")))
    }

    fn linear(&mut self, name: &str) -> Result<Linear> {
        let bias_name = name.replace(".weight", ".bias");
        let bias = if self.has_tensor(&bias_name) {
            Some(self.float(&bias_name)?)
        } else {
            None
        };
        Ok(Linear {
            weight: self.matrix(name)?,
            bias,
        })
    }

    fn projection(&mut self, names: &[&str]) -> Result<Projection> {
        let linears = names
            .iter()
            .map(|n| self.linear(n))
            .collect::<Result<Vec<_>>>()?;
        Ok(Projection::fuse(linears))
    }

    fn norm(&mut self, name: &str, eps: f32) -> Result<RmsNorm> {
        Ok(RmsNorm {
            weight: self.float(name)?,
            eps,
        })
    }

    /// Quantisation types of the weights, most common first (`Q4_1 ×180, F32 ×61`).
    pub fn quantization_summary(&self) -> String {
        let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
        for t in self.content.tensor_infos.values() {
            *counts.entry(format!("{:?}", t.ggml_dtype)).or_default() += 1;
        }
        let mut counts: Vec<_> = counts.into_iter().collect();
        counts.sort_by_key(|c| std::cmp::Reverse(c.1));
        counts
            .iter()
            .map(|(k, n)| format!("{k} ×{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn parameter_count(&self) -> usize {
        self.content
            .tensor_infos
            .values()
            .map(|t| t.shape.elem_count())
            .sum()
    }

    pub fn config(&self) -> Result<DecoderConfig> {
        let arch = self.architecture()?;
        let family = match arch.as_str() {
            "llama" | "mistral" => Family::Llama,
            "qwen2" => Family::Qwen2,
            "gemma3" => Family::Gemma3,
            _ => {
                return Err(LmError::UnsupportedArchitecture {
                    path: self.path.clone(),
                    arch,
                    supported: SUPPORTED,
                })
            }
        };
        let key = |k: &str| format!("{arch}.{k}");
        if self.u32(&key("expert_count")).unwrap_or(0) > 1 {
            return Err(LmError::file(
                &self.path,
                "mixture-of-experts models are not supported",
            ));
        }
        let hidden = self.u32(&key("embedding_length"))? as usize;
        let heads = self.u32(&key("attention.head_count"))? as usize;
        let head_dim = self
            .u32(&key("attention.key_length"))
            .map(|v| v as usize)
            .unwrap_or(hidden / heads);
        let vocab_size = match self.value("tokenizer.ggml.tokens")? {
            gguf_file::Value::Array(a) => a.len(),
            _ => {
                return Err(LmError::file(
                    &self.path,
                    "`tokenizer.ggml.tokens` is not an array",
                ))
            }
        };
        let sliding_window = if family == Family::Gemma3 {
            Some(SlidingWindow {
                size: self.u32(&key("attention.sliding_window"))? as usize,
                global_every: self
                    .u32(&key("attention.sliding_window_pattern"))
                    .or_else(|_| self.u32(&key("attention.sliding_window_type")))
                    .unwrap_or(6) as usize,
                // llama.cpp reads `rope.freq_base_swa`; some converters wrote `rope.local_freq_base`.
                local_rope_theta: self
                    .f32(&key("rope.freq_base_swa"))
                    .or_else(|_| self.f32(&key("rope.local_freq_base")))
                    .unwrap_or(10_000.0),
            })
        } else {
            None
        };
        Ok(DecoderConfig {
            family,
            vocab_size,
            hidden_size: hidden,
            intermediate_size: self.u32(&key("feed_forward_length"))? as usize,
            num_layers: self.u32(&key("block_count"))? as usize,
            num_heads: heads,
            num_kv_heads: self
                .u32(&key("attention.head_count_kv"))
                .map(|v| v as usize)
                .unwrap_or(heads),
            head_dim,
            rms_norm_eps: self.f32(&key("attention.layer_norm_rms_epsilon"))? as f64,
            rope_theta: self
                .f32(&key("rope.freq_base"))
                .unwrap_or(if family == Family::Gemma3 {
                    1_000_000.0
                } else {
                    10_000.0
                }),
            rope_style: match family {
                Family::Llama => RopeStyle::Interleaved,
                Family::Qwen2 | Family::Gemma3 => RopeStyle::Halves,
            },
            // Long-context models would allocate huge rotary tables; 8192 is plenty here.
            context_length: (self.u32(&key("context_length")).unwrap_or(2048) as usize).min(8192),
            tie_embeddings: !self.has_tensor("output.weight"),
            sliding_window,
            attention_scale: 1.0 / (head_dim as f64).sqrt(),
        })
    }

    /// Reads all weights into a [`Transformer`].
    pub fn transformer(&mut self) -> Result<Transformer> {
        let cfg = self.config()?;
        let eps = cfg.rms_norm_eps as f32;
        let embeddings = self.matrix("token_embd.weight")?;
        let lm_head = if cfg.tie_embeddings {
            embeddings.clone()
        } else {
            self.matrix("output.weight")?
        };
        let final_norm = self.norm("output_norm.weight", eps)?;
        let gemma = cfg.family == Family::Gemma3;
        let mut blocks = Vec::with_capacity(cfg.num_layers);
        for i in 0..cfg.num_layers {
            let t = |s: &str| format!("blk.{i}.{s}.weight");
            let gemma_norm = |this: &mut Self, s: &str| -> Result<Option<RmsNorm>> {
                if gemma {
                    this.norm(&t(s), eps).map(Some)
                } else {
                    Ok(None)
                }
            };
            let qk_norm = match (
                gemma_norm(self, "attn_q_norm")?,
                gemma_norm(self, "attn_k_norm")?,
            ) {
                (Some(q), Some(k)) => Some((q, k)),
                _ => None,
            };
            blocks.push(Block {
                attn_norm: self.norm(&t("attn_norm"), eps)?,
                qkv: self.projection(&[&t("attn_q"), &t("attn_k"), &t("attn_v")])?,
                o: self.projection(&[&t("attn_output")])?,
                qk_norm,
                post_attn_norm: gemma_norm(self, "post_attention_norm")?,
                ffn_norm: self.norm(&t("ffn_norm"), eps)?,
                gate_up: self.projection(&[&t("ffn_gate"), &t("ffn_up")])?,
                down: self.projection(&[&t("ffn_down")])?,
                post_ffn_norm: gemma_norm(self, "post_ffw_norm")?,
            });
        }
        Ok(Transformer::new(
            cfg, embeddings, blocks, final_norm, lm_head,
        ))
    }
}
