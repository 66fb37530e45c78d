//! Hugging Face llama folders (generated here with random weights): sharded and single-file
//! loads agree, and logits equal candle-transformers' reference llama on the same weights.

use std::collections::HashMap;
use std::path::Path;

use alignscope::lm::{LanguageModel, Session};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::llama;

use crate::common::max_abs_diff;

const VOCAB: usize = 30522; // the MiniLM tokenizer.json shipped in assets/ is reused here

fn config() -> serde_json::Value {
    serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": VOCAB,
        "hidden_size": 64,
        "intermediate_size": 96,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "max_position_embeddings": 256,
        "tie_word_embeddings": false,
        "bos_token_id": 101,
        "eos_token_id": 102
    })
}

fn weights() -> HashMap<String, Tensor> {
    let d = Device::Cpu;
    let mut w = HashMap::new();
    let mut add = |name: String, shape: &[usize]| {
        let t = if name.contains("norm") {
            (Tensor::ones(shape, DType::F32, &d).unwrap()
                + Tensor::randn(0f32, 0.1, shape, &d).unwrap())
            .unwrap()
        } else {
            Tensor::randn(0f32, 0.08, shape, &d).unwrap()
        };
        w.insert(name, t);
    };
    add("model.embed_tokens.weight".into(), &[VOCAB, 64]);
    add("lm_head.weight".into(), &[VOCAB, 64]);
    add("model.norm.weight".into(), &[64]);
    for i in 0..2 {
        let p = format!("model.layers.{i}");
        add(format!("{p}.input_layernorm.weight"), &[64]);
        add(format!("{p}.post_attention_layernorm.weight"), &[64]);
        add(format!("{p}.self_attn.q_proj.weight"), &[64, 64]);
        add(format!("{p}.self_attn.k_proj.weight"), &[32, 64]);
        add(format!("{p}.self_attn.v_proj.weight"), &[32, 64]);
        add(format!("{p}.self_attn.o_proj.weight"), &[64, 64]);
        add(format!("{p}.mlp.gate_proj.weight"), &[96, 64]);
        add(format!("{p}.mlp.up_proj.weight"), &[96, 64]);
        add(format!("{p}.mlp.down_proj.weight"), &[64, 96]);
    }
    w
}

fn write_folder(dir: &Path, w: &HashMap<String, Tensor>, sharded: bool) {
    std::fs::write(dir.join("config.json"), config().to_string()).unwrap();
    let tok =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/models/all-MiniLM-L6-v2/tokenizer.json");
    std::fs::copy(tok, dir.join("tokenizer.json")).unwrap();
    if !sharded {
        candle_core::safetensors::save(w, dir.join("model.safetensors")).unwrap();
        return;
    }
    let (mut a, mut b) = (HashMap::new(), HashMap::new());
    let mut map = serde_json::Map::new();
    for (name, t) in w {
        let first = name.contains("layers.0") || name.contains("embed");
        let file = if first {
            "model-00001-of-00002.safetensors"
        } else {
            "model-00002-of-00002.safetensors"
        };
        map.insert(name.clone(), file.into());
        if first {
            a.insert(name.clone(), t.clone())
        } else {
            b.insert(name.clone(), t.clone())
        };
    }
    candle_core::safetensors::save(&a, dir.join("model-00001-of-00002.safetensors")).unwrap();
    candle_core::safetensors::save(&b, dir.join("model-00002-of-00002.safetensors")).unwrap();
    let index = serde_json::json!({ "metadata": {}, "weight_map": map });
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
}

#[test]
fn hf_llama_matches_reference_and_shards_load() {
    let w = weights();
    let single = tempfile::tempdir().unwrap();
    let sharded = tempfile::tempdir().unwrap();
    write_folder(single.path(), &w, false);
    write_folder(sharded.path(), &w, true);
    let a = std::sync::Arc::new(LanguageModel::load(single.path()).unwrap());
    let b = std::sync::Arc::new(LanguageModel::load(sharded.path()).unwrap());
    assert_eq!(a.info.format, "safetensors");
    assert_eq!(a.info.layers, 2);
    let ids = a
        .tokenizer
        .encode("the quick brown fox jumps over the lazy dog", false)
        .unwrap();
    assert!(ids.len() > 5);

    let mut sa = Session::new(a.clone());
    sa.feed(&ids).unwrap();
    let la = sa.logits().unwrap().to_vec();
    let mut sb = Session::new(b.clone());
    sb.feed(&ids).unwrap();
    assert_eq!(
        la,
        sb.logits().unwrap().to_vec(),
        "sharded and single-file loads differ"
    );

    // Reference: candle-transformers' llama on the same weights.
    let cfg: llama::LlamaConfig = serde_json::from_value(config()).unwrap();
    let cfg = cfg.into_config(false);
    let vb = VarBuilder::from_tensors(w.clone(), DType::F32, &Device::Cpu);
    let reference = llama::Llama::load(vb, &cfg).unwrap();
    let mut cache = llama::Cache::new(true, DType::F32, &cfg, &Device::Cpu).unwrap();
    let input = Tensor::new(ids.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let want: Vec<f32> = reference
        .forward(&input, 0, &mut cache)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec1()
        .unwrap();
    let d = max_abs_diff(&la, &want);
    assert!(d < 1e-3, "max |Δlogit| vs candle llama = {d}");

    // And the next step through the KV cache.
    let next = 2000u32;
    sa.feed(&[next]).unwrap();
    let input = Tensor::new(&[next], &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let want: Vec<f32> = reference
        .forward(&input, ids.len(), &mut cache)
        .unwrap()
        .squeeze(0)
        .unwrap()
        .to_vec1()
        .unwrap();
    let d = max_abs_diff(sa.logits().unwrap(), &want);
    assert!(d < 1e-3, "cached step: max |Δlogit| vs candle llama = {d}");
}
