//! Tiny random-weight GGUFs of each supported family (tests/fixtures/tiny, made by
//! scripts/tiny_gguf_fixtures.py) against llama.cpp's logits and tokenizer on the same files.

use std::sync::Arc;

use alignscope::lm::{LanguageModel, Session};

use crate::common::{fixture, max_abs_diff};

fn expected() -> serde_json::Value {
    let text = std::fs::read_to_string(fixture("tiny/expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    serde_json::from_value(v.clone()).unwrap()
}

/// Batch, position-5 (all-position output) and one-token-at-a-time logits against llama.cpp.
fn check_logits(file: &str, tolerance: f32) {
    let all = expected();
    let want = &all["models"][file];
    let model = Arc::new(LanguageModel::load(&fixture(&format!("tiny/{file}"))).unwrap());
    let ids: Vec<u32> = serde_json::from_value(want["token_ids"].clone()).unwrap();

    let mut s = Session::new(model.clone());
    s.feed(&ids).unwrap();
    let d = max_abs_diff(s.logits().unwrap(), &floats(&want["last_logits"]));
    assert!(d < tolerance, "{file} batch: max |Δlogit| = {d}");

    let mut cache = model.transformer.new_cache();
    let every = model.transformer.forward(&ids, &mut cache, true).unwrap();
    let vocab = model.transformer.config.vocab_size;
    let pos5 = &every[5 * vocab..6 * vocab];
    let d = max_abs_diff(pos5, &floats(&want["pos5_logits"]));
    assert!(d < tolerance, "{file} position 5: max |Δlogit| = {d}");

    let mut s = Session::new(model.clone());
    for id in &ids {
        s.feed(&[*id]).unwrap();
    }
    let d = max_abs_diff(s.logits().unwrap(), &floats(&want["last_logits_single"]));
    assert!(d < tolerance, "{file} one at a time: max |Δlogit| = {d}");
}

fn check_tokenizer(file: &str) {
    let all = expected();
    let model = LanguageModel::load(&fixture(&format!("tiny/{file}"))).unwrap();
    let cases = all["models"][file]["tokenize"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        assert_eq!(
            model.tokenizer.encode(text, false).unwrap(),
            want,
            "{file}: ids of {text:?}"
        );
    }
}

#[test]
fn llama_with_sentencepiece_vocabulary() {
    check_logits("tiny-llama-spm.gguf", 1e-3);
    check_tokenizer("tiny-llama-spm.gguf");
}

#[test]
fn qwen2_with_biases() {
    check_logits("tiny-qwen2.gguf", 1e-3);
    check_tokenizer("tiny-qwen2.gguf");
}

#[test]
fn gemma3_local_and_global_layers() {
    // llama.cpp's CPU GELU goes through an f16 lookup table; exact f32 GELU differs by ~3e-3.
    check_logits("tiny-gemma3.gguf", 1e-2);
    check_tokenizer("tiny-gemma3.gguf");
}
