use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use alignscope::lm::LanguageModel;

pub fn shipped_model_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/models/SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// The shipped model, loaded once for all tests of this binary.
pub fn shipped_model() -> Arc<LanguageModel> {
    static MODEL: OnceLock<Arc<LanguageModel>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            Arc::new(LanguageModel::load(&shipped_model_path()).expect("the shipped model loads"))
        })
        .clone()
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

pub fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .unwrap_or(0)
}

/// `n` prompt/completion pairs ("double 3" → "6") as JSON Lines in `dir`: a set the tiny zoo
/// decoder learns from in a few steps.
pub fn doubling_pairs(dir: &std::path::Path, n: usize) -> PathBuf {
    let path = dir.join("pairs.jsonl");
    let lines: Vec<String> = (1..=n)
        .map(|i| {
            serde_json::json!({"prompt": format!("double {i}"), "completion": format!("{}", 2 * i)})
                .to_string()
        })
        .collect();
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}
