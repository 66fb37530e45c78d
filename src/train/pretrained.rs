//! A pretrained language model made trainable: the shipped GGUF (dequantised to f32, so it
//! trains the quantised model's function) or a Hugging Face llama/mistral/qwen2 folder, read into
//! [`TrainLlama`] under Hugging Face names; and the way back out, a Hugging Face folder that
//! this app's runtime, transformers and llama.cpp's converter load.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use candle_core::{Tensor, Var};
use candle_nn::VarMap;

use super::llama::{LlamaShape, TrainLlama};
use crate::lm::gguf::GgufFile;
use crate::lm::LanguageModel;

/// Pretrained weights by Hugging Face name, f32, with the model's shape.
pub struct Pretrained {
    pub shape: LlamaShape,
    pub weights: HashMap<String, Tensor>,
    pub source: PathBuf,
    /// The source's weight formats (`Q4_1 ×210, F32 ×61`, `float32`), for records.
    pub formats: String,
}

impl Pretrained {
    /// A GGUF file (llama or qwen2) or a Hugging Face folder (`model_type` llama, mistral or
    /// qwen2).
    pub fn load(path: &Path) -> Result<Self> {
        if path.is_dir() {
            Self::from_hf(path)
        } else if path.exists() {
            Self::from_gguf(path)
        } else {
            bail!("{}: no such file or folder", path.display())
        }
    }

    fn from_gguf(path: &Path) -> Result<Self> {
        let mut g = GgufFile::open(path)?;
        let c = g.config()?;
        use crate::lm::config::Family;
        ensure!(
            matches!(c.family, Family::Llama | Family::Qwen2),
            "{}: training supports llama-family models (SmolLM2, Llama, Mistral) and Qwen2, not {:?}",
            path.display(),
            c.family
        );
        let qwen2 = c.family == Family::Qwen2;
        let shape = LlamaShape {
            vocab_size: c.vocab_size,
            hidden_size: c.hidden_size,
            intermediate_size: c.intermediate_size,
            num_layers: c.num_layers,
            num_heads: c.num_heads,
            num_kv_heads: c.num_kv_heads,
            max_positions: c.context_length,
            rope_theta: c.rope_theta as f64,
            rms_norm_eps: c.rms_norm_eps,
            tie_embeddings: c.tie_embeddings,
            qkv_bias: qwen2,
        };
        ensure!(
            c.head_dim == shape.head_dim(),
            "{}: head size {} is not hidden / heads",
            path.display(),
            c.head_dim
        );
        let mut weights = HashMap::new();
        let mut take = |t: Tensor, to: String| {
            weights.insert(to, t);
        };
        take(
            g.dequantize("token_embd.weight")?,
            "model.embed_tokens.weight".into(),
        );
        take(
            g.dequantize("output_norm.weight")?,
            "model.norm.weight".into(),
        );
        if !shape.tie_embeddings {
            take(g.dequantize("output.weight")?, "lm_head.weight".into());
        }
        for i in 0..shape.num_layers {
            let (b, p) = (format!("blk.{i}"), format!("model.layers.{i}"));
            for (from, to) in [
                ("attn_norm", "input_layernorm"),
                ("attn_v", "self_attn.v_proj"),
                ("attn_output", "self_attn.o_proj"),
                ("ffn_norm", "post_attention_layernorm"),
                ("ffn_gate", "mlp.gate_proj"),
                ("ffn_up", "mlp.up_proj"),
                ("ffn_down", "mlp.down_proj"),
            ] {
                take(
                    g.dequantize(&format!("{b}.{from}.weight"))?,
                    format!("{p}.{to}.weight"),
                );
            }
            // llama.cpp's converter interleaves the rotary halves of llama's q and k (not
            // Qwen2's, whose rotary layout is already the halves); undo it.
            for (from, to, heads) in [
                ("attn_q", "q_proj", shape.num_heads),
                ("attn_k", "k_proj", shape.num_kv_heads),
            ] {
                let w = g.dequantize(&format!("{b}.{from}.weight"))?;
                let w = if qwen2 { w } else { unpermute_rope(&w, heads)? };
                take(w, format!("{p}.self_attn.{to}.weight"));
            }
            if qwen2 {
                for (from, to) in [
                    ("attn_q", "q_proj"),
                    ("attn_k", "k_proj"),
                    ("attn_v", "v_proj"),
                ] {
                    take(
                        g.dequantize(&format!("{b}.{from}.bias"))?,
                        format!("{p}.self_attn.{to}.bias"),
                    );
                }
            }
        }
        Ok(Self {
            shape,
            weights,
            source: path.to_path_buf(),
            formats: g.quantization_summary(),
        })
    }

    fn from_hf(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        let c: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not valid JSON", path.display()))?;
        let model_type = c["model_type"].as_str().unwrap_or("(none)");
        ensure!(
            matches!(model_type, "llama" | "mistral" | "qwen2"),
            "{}: training supports model_type llama, mistral and qwen2, not {model_type}",
            path.display()
        );
        let shape = LlamaShape::from_hf_config(&c)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        // What the training forward pass does not do: refuse rather than train another model.
        for key in [
            "rope_scaling",
            "attention_bias",
            "mlp_bias",
            "use_sliding_window",
        ] {
            let unset = matches!(
                &c[key],
                serde_json::Value::Null | serde_json::Value::Bool(false)
            );
            ensure!(
                unset,
                "{}: `{key}` is set; training supports plain llama attention (no rotary scaling, no biases but Qwen2's, no sliding window)",
                path.display()
            );
        }
        if let Some(d) = c["head_dim"].as_u64() {
            ensure!(
                d as usize == shape.head_dim(),
                "{}: head_dim {d} is not hidden_size / num_attention_heads",
                path.display()
            );
        }
        let ckpt = crate::checkpoint::Checkpoint::open(dir)?;
        let mut weights = HashMap::new();
        for t in ckpt.tensors().iter().filter(|t| t.is_float()) {
            let values = ckpt.read_f32(t)?;
            let tensor = Tensor::from_vec(values, t.shape.as_slice(), &candle_core::Device::Cpu)?;
            weights.insert(t.name.clone(), tensor);
        }
        Ok(Self {
            shape,
            weights,
            source: dir.to_path_buf(),
            formats: "safetensors".into(),
        })
    }

    /// The model with these weights as variables of `varmap` (what an optimiser over
    /// `varmap` trains: full fine-tuning). Errs if the weights lack one the model needs.
    pub fn model(&self, varmap: &VarMap) -> Result<TrainLlama> {
        {
            let mut data = varmap
                .data()
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned VarMap"))?;
            for (name, t) in &self.weights {
                data.insert(name.clone(), Var::from_tensor(t)?);
            }
        }
        let before = varmap.all_vars().len();
        let model = TrainLlama::new(self.shape, super::seeded_builder(varmap, 0))?;
        if varmap.all_vars().len() != before {
            let known: Vec<String> = self.weights.keys().cloned().collect();
            let data = varmap
                .data()
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned VarMap"))?;
            let missing: Vec<&String> = data.keys().filter(|k| !known.contains(k)).collect();
            bail!("{}: no weights for {missing:?}", self.source.display());
        }
        Ok(model)
    }

    /// The model with its weights frozen (no gradients): the base of LoRA and prompt tuning.
    /// It shares the weights' storage (no copy).
    pub fn frozen_model(&self) -> Result<TrainLlama> {
        let vb = candle_nn::VarBuilder::from_tensors(
            self.weights.clone(),
            candle_core::DType::F32,
            &candle_core::Device::Cpu,
        );
        let mut model = TrainLlama::new(self.shape, vb)
            .with_context(|| format!("{}: weights missing", self.source.display()))?;
        model.freeze();
        Ok(model)
    }
}

/// Rows of a q or k projection from llama.cpp's order (rotary pairs interleaved within each
/// head: 0, d/2, 1, d/2+1, …) back to Hugging Face's (the two halves of each head).
fn unpermute_rope(w: &Tensor, heads: usize) -> Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    let d = rows / heads;
    Ok(w.reshape((heads, d / 2, 2, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, cols))?)
}

/// Writes `model` (adapters merged) as a Hugging Face folder: f32 `model.safetensors`,
/// `config.json`, and the tokenizer and chat template of `lm` as `tokenizer.json` and
/// `tokenizer_config.json`. A soft prompt, if any, goes to `soft_prompt.safetensors`, LoRA
/// adapters also on their own (PEFT's `adapter_model.safetensors`, see [`super::adapter`]).
/// The folder is written beside `out` and renamed into place.
pub fn write_hf_folder(out: &Path, model: &TrainLlama, lm: &LanguageModel) -> Result<()> {
    let weights: HashMap<String, Tensor> = model.merged_weights()?.into_iter().collect();
    let tok = &lm.tokenizer;
    let token = |id: Option<u32>| id.map(|i| tok.token_str(i));
    let mut config = model
        .shape
        .hf_config(tok.bos.unwrap_or(0), tok.eos.unwrap_or(0));
    config["torch_dtype"] = "float32".into();
    let tokenizer_config = serde_json::json!({
        "bos_token": token(tok.bos),
        "eos_token": token(tok.eos),
        "add_bos_token": tok.add_bos,
        "chat_template": lm.chat_template.as_ref().map(|t| t.source()),
        "model_max_length": model.shape.max_positions,
        "tokenizer_class": "PreTrainedTokenizerFast",
    });
    let tokenizer_json = tok.to_json()?;
    crate::fs::write_folder(out, |dir| {
        candle_core::safetensors::save(&weights, dir.join("model.safetensors"))?;
        std::fs::write(
            dir.join("config.json"),
            serde_json::to_string_pretty(&config)?,
        )?;
        std::fs::write(dir.join("tokenizer.json"), &tokenizer_json)?;
        std::fs::write(
            dir.join("tokenizer_config.json"),
            serde_json::to_string_pretty(&tokenizer_config)?,
        )?;
        super::adapter::write(dir, model, &lm.info.path)?;
        if let Some(p) = model.soft_prompt() {
            use crate::lm::soft_prompt::{FILE, TENSOR};
            let prompt = HashMap::from([(TENSOR.to_string(), p.detach())]);
            candle_core::safetensors::save(&prompt, dir.join(FILE))?;
        }
        Ok(())
    })
}

crate::named_enum! {
    "GGUF type";
    /// How an exported GGUF stores its weight matrices (norms stay f32).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum GgufType {
        /// 8-bit blocks: near the trained weights.
        Q8_0 = "q8_0",
        /// 4-bit blocks with a minimum, as the shipped SmolLM2 (the embedding stays 8-bit).
        Q4_1 = "q4_1",
    }
}

/// Writes `model` (adapters merged) as a llama GGUF of `dtype`, with the metadata (tokenizer,
/// chat template, hyper-parameters) of `source`, the GGUF it was loaded from. Matrices go
/// back to llama.cpp's names and rotary row order. Written through a temporary file.
pub fn write_gguf(out: &Path, model: &TrainLlama, source: &Path, dtype: GgufType) -> Result<()> {
    use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
    let src = GgufFile::open(source)?;
    let architecture = src.architecture()?;
    let expected = if model.shape.qkv_bias {
        "qwen2"
    } else {
        "llama"
    };
    ensure!(
        architecture == expected,
        "{}: GGUF export writes llama and qwen2 models with the source's metadata; the source \
         is {architecture}, the model {expected}",
        source.display(),
    );
    let (matrix_type, embed_type, file_type) = match dtype {
        GgufType::Q8_0 => (GgmlDType::Q8_0, GgmlDType::Q8_0, 7u32),
        GgufType::Q4_1 => (GgmlDType::Q4_1, GgmlDType::Q8_0, 3u32),
    };
    let shape = &model.shape;
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    for (name, t) in model.merged_weights()? {
        let Some((gguf_name, kind)) = gguf_name(&name) else {
            bail!("{name}: no GGUF name for this tensor");
        };
        let t = match kind {
            Kind::Query if !shape.qkv_bias => permute_rope(&t, shape.num_heads)?,
            Kind::Key if !shape.qkv_bias => permute_rope(&t, shape.num_kv_heads)?,
            _ => t,
        };
        let q = match kind {
            Kind::Vector => QTensor::quantize(&t, GgmlDType::F32)?,
            Kind::Embedding => QTensor::quantize(&t, embed_type)?,
            _ => QTensor::quantize(&t, matrix_type)?,
        };
        tensors.push((gguf_name, q));
    }
    let mut metadata: Vec<(String, gguf_file::Value)> = src
        .content
        .metadata
        .iter()
        .filter(|(k, _)| k.as_str() != "general.file_type")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    metadata.push(("general.file_type".into(), gguf_file::Value::U32(file_type)));
    metadata.sort_by(|a, b| a.0.cmp(&b.0));
    let meta_refs: Vec<(&str, &gguf_file::Value)> =
        metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut file = crate::fs::StagedFile::create(out)?;
    // The GGUF writer seeks; write into memory first, then through the staged file.
    let mut bytes = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut bytes, &meta_refs, &tensor_refs)
        .with_context(|| format!("{}: cannot write the GGUF", out.display()))?;
    std::io::Write::write_all(&mut file, bytes.get_ref())?;
    file.commit()
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Embedding,
    /// Norm weights and biases: kept f32.
    Vector,
    Query,
    Key,
    Matrix,
}

/// llama.cpp's name for a Hugging Face llama or qwen2 tensor.
fn gguf_name(hf: &str) -> Option<(String, Kind)> {
    match hf {
        "model.embed_tokens.weight" => return Some(("token_embd.weight".into(), Kind::Embedding)),
        "model.norm.weight" => return Some(("output_norm.weight".into(), Kind::Vector)),
        "lm_head.weight" => return Some(("output.weight".into(), Kind::Embedding)),
        _ => {}
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, name) = rest.split_once('.')?;
    if let Some(proj) = name.strip_suffix("_proj.bias") {
        let gguf = match proj {
            "self_attn.q" => "attn_q",
            "self_attn.k" => "attn_k",
            "self_attn.v" => "attn_v",
            _ => return None,
        };
        return Some((format!("blk.{layer}.{gguf}.bias"), Kind::Vector));
    }
    let (gguf, kind) = match name {
        "input_layernorm.weight" => ("attn_norm", Kind::Vector),
        "post_attention_layernorm.weight" => ("ffn_norm", Kind::Vector),
        "self_attn.q_proj.weight" => ("attn_q", Kind::Query),
        "self_attn.k_proj.weight" => ("attn_k", Kind::Key),
        "self_attn.v_proj.weight" => ("attn_v", Kind::Matrix),
        "self_attn.o_proj.weight" => ("attn_output", Kind::Matrix),
        "mlp.gate_proj.weight" => ("ffn_gate", Kind::Matrix),
        "mlp.up_proj.weight" => ("ffn_up", Kind::Matrix),
        "mlp.down_proj.weight" => ("ffn_down", Kind::Matrix),
        _ => return None,
    };
    Some((format!("blk.{layer}.{gguf}.weight"), kind))
}

/// The inverse of [`unpermute_rope`]: Hugging Face's row order to llama.cpp's.
fn permute_rope(w: &Tensor, heads: usize) -> Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    let d = rows / heads;
    Ok(w.reshape((heads, 2, d / 2, cols))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((rows, cols))?)
}
