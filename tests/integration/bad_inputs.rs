//! Broken files give clear errors that name the file and the problem, never a panic.

use std::io::Write;
use std::path::Path;

use alignscope::lm::LanguageModel;
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use crate::common::shipped_model_path;

fn load_error(path: &Path) -> String {
    match LanguageModel::load(path) {
        Ok(_) => panic!("{} loaded but should not", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn truncated_gguf() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.gguf");
    let bytes = std::fs::read(shipped_model_path()).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 3]).unwrap();
    let e = load_error(&path);
    assert!(e.contains("cut.gguf") && e.contains("truncated"), "{e}");
    // Cut inside the header.
    std::fs::write(&path, &bytes[..5000]).unwrap();
    let e = load_error(&path);
    assert!(
        e.contains("cut.gguf") && e.contains("damaged GGUF header"),
        "{e}"
    );
}

#[test]
fn wrong_architecture_gguf() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bert.gguf");
    let arch = gguf_file::Value::String("bert".into());
    let w = QTensor::quantize(
        &Tensor::zeros((4, 4), candle_core::DType::F32, &Device::Cpu).unwrap(),
        GgmlDType::F32,
    )
    .unwrap();
    let mut f = std::fs::File::create(&path).unwrap();
    gguf_file::write(
        &mut f,
        &[("general.architecture", &arch)],
        &[("token_embd.weight", &w)],
    )
    .unwrap();
    drop(f);
    let e = load_error(&path);
    assert!(
        e.contains("bert.gguf") && e.contains("`bert` is not supported") && e.contains("llama"),
        "{e}"
    );
}

#[test]
fn not_a_model_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.gguf");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(b"hello, not a model")
        .unwrap();
    let e = load_error(&path);
    assert!(
        e.contains("notes.gguf") && e.contains("not a GGUF file"),
        "{e}"
    );
    let e = load_error(&dir.path().join("nowhere.gguf"));
    assert!(
        e.contains("nowhere.gguf") && e.contains("no such file"),
        "{e}"
    );
    let e = load_error(dir.path());
    assert!(e.contains("config.json"), "{e}");
}

#[test]
fn hf_folder_with_bad_safetensors_header_or_no_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let config = serde_json::json!({
        "model_type": "llama", "vocab_size": 10, "hidden_size": 8, "intermediate_size": 16,
        "num_hidden_layers": 1, "num_attention_heads": 2,
    });
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    std::fs::write(
        dir.path().join("model.safetensors"),
        b"\xff\xff\x00\x00\x00\x00\x00\x00{garbage",
    )
    .unwrap();
    let e = load_error(dir.path());
    assert!(e.contains("tokenizer.json is missing"), "{e}");

    let tokenizer = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("assets/models/all-MiniLM-L6-v2/tokenizer.json");
    std::fs::copy(tokenizer, dir.path().join("tokenizer.json")).unwrap();
    let e = load_error(dir.path());
    assert!(
        e.contains("model.safetensors") && e.contains("not a valid safetensors file"),
        "{e}"
    );

    std::fs::write(dir.path().join("config.json"), r#"{"model_type": "gpt2"}"#).unwrap();
    let e = load_error(dir.path());
    assert!(
        e.contains("config.json") && e.contains("`gpt2` is not supported"),
        "{e}"
    );

    std::fs::write(dir.path().join("config.json"), "{ not json").unwrap();
    let e = load_error(dir.path());
    assert!(
        e.contains("config.json") && e.contains("invalid JSON"),
        "{e}"
    );
}

/// A soft prompt file that is not safetensors, lacks the tensor, or has the wrong width.
#[test]
fn broken_soft_prompts() {
    use alignscope::lm::{Session, SoftPrompt};
    use std::collections::HashMap;
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let err = |path: &Path| SoftPrompt::load(path).unwrap_err().to_string();

    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"not a tensor file").unwrap();
    let e = err(&junk);
    assert!(
        e.contains("junk.safetensors") && e.contains("not a readable safetensors"),
        "{e}"
    );

    let other = dir.path().join("other.safetensors");
    let t = Tensor::zeros((2, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
    candle_core::safetensors::save(&HashMap::from([("weights".to_string(), t)]), &other).unwrap();
    let e = err(&other);
    assert!(
        e.contains("other.safetensors")
            && e.contains("no `soft_prompt` tensor (the file holds: weights)"),
        "{e}"
    );

    let flat = dir.path().join("flat.safetensors");
    let t = Tensor::zeros(8, candle_core::DType::F32, &Device::Cpu).unwrap();
    candle_core::safetensors::save(&HashMap::from([("soft_prompt".to_string(), t)]), &flat)
        .unwrap();
    let e = err(&flat);
    assert!(e.contains("not [length, hidden]"), "{e}");

    // Width 8 against the shipped model's 576.
    let narrow = dir.path().join("narrow.safetensors");
    let t = Tensor::ones((3, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
    candle_core::safetensors::save(&HashMap::from([("soft_prompt".to_string(), t)]), &narrow)
        .unwrap();
    let prompt = Arc::new(SoftPrompt::load(&narrow).unwrap());
    let model = Arc::new(LanguageModel::load(&shipped_model_path()).unwrap());
    let e = Session::with_soft_prompt(model, prompt)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("narrow.safetensors") && e.contains("width 8") && e.contains("576"),
        "{e}"
    );
}
