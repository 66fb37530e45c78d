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

/// A tiny BERT classifier pair over MiniLM's tokenizer in `dir`: `base/` (random weights, the
/// "pretrained" model) and `ft/`, fine-tuned from it on the sentiment task for a few steps
/// with the zoo's MiniLM recipe. Built once per test process.
pub fn tiny_bert_pair() -> (PathBuf, PathBuf) {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf, PathBuf)> = OnceLock::new();
    let (_, base, ft) = DIR.get_or_init(|| {
        use alignscope::data::classify::{class_data, ClassTask};
        use alignscope::train::bert::{BertShape, TrainBertClassifier};
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base");
        let ft = dir.path().join("ft");
        let minilm = alignscope::assets::embedding_model();
        let mut config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(minilm.join("config.json")).unwrap())
                .unwrap();
        for (k, v) in [
            ("hidden_size", 32),
            ("num_hidden_layers", 2),
            ("num_attention_heads", 2),
            ("intermediate_size", 64),
        ] {
            config[k] = v.into();
        }
        config["id2label"] = serde_json::json!({"0": "negative", "1": "positive"});
        let shape: BertShape = serde_json::from_value(config.clone()).unwrap();
        let varmap = candle_nn::VarMap::new();
        TrainBertClassifier::new(shape, 2, alignscope::train::seeded_builder(&varmap, 3)).unwrap();
        alignscope::train::model_folder::save_checkpoint(&base, &varmap, &config, |d| {
            std::fs::copy(minilm.join("tokenizer.json"), d.join("tokenizer.json"))?;
            Ok(())
        })
        .unwrap();
        let sources =
            alignscope::data::sources::Sources::load(&alignscope::zoo::dir().join("data")).unwrap();
        let data = class_data(ClassTask::Sentiment, &sources);
        let recipe = alignscope::zoo::minilm::MinilmRecipe {
            task: ClassTask::Sentiment,
            steps: 30,
            batch: 16,
            peak_lr: 3e-3,
            pull: alignscope::train::Pull::None,
            seed: 4,
        };
        alignscope::zoo::minilm::train(&recipe, &data, &base, &ft, &mut |_| Ok(())).unwrap();
        (dir, base, ft)
    });
    (base.clone(), ft.clone())
}
