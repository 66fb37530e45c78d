//! The shipped sentence-embedding model (all-MiniLM-L6-v2, f16).

use alignscope::embed::{cosine, SentenceEmbedder};

use crate::common::fixture;

fn shipped() -> SentenceEmbedder {
    SentenceEmbedder::load(&alignscope::assets::embedding_model()).unwrap()
}

#[test]
fn f16_weights_match_the_f32_original() {
    // Embeddings of the original f32 checkpoint, computed with `alignscope embed --model <f32 folder>`.
    let text = std::fs::read_to_string(fixture("minilm_f32_embeddings.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(rows.len() >= 5);
    let sentences: Vec<&str> = rows.iter().map(|r| r["text"].as_str().unwrap()).collect();
    let ours = shipped().embed(&sentences).unwrap();
    for (row, got) in rows.iter().zip(&ours) {
        let want: Vec<f32> = serde_json::from_value(row["embedding"].clone()).unwrap();
        let c = cosine(got, &want);
        assert!(1.0 - c < 1e-3, "{:?}: cosine {c}", row["text"]);
    }
}

#[test]
fn similar_sentences_are_closer() {
    let e = shipped()
        .embed(&[
            "How do I bake bread at home?",
            "What is a simple recipe for homemade bread?",
            "The stock market fell sharply on Monday.",
        ])
        .unwrap();
    assert!(
        (e[0].iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-4,
        "not unit length"
    );
    let related = cosine(&e[0], &e[1]);
    let unrelated = cosine(&e[0], &e[2]);
    assert!(
        related > 0.6 && unrelated < 0.2 && related > unrelated + 0.4,
        "{related} vs {unrelated}"
    );
}

#[test]
fn broken_embedding_folder_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let src = alignscope::assets::embedding_model();
    std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
    let err = SentenceEmbedder::load(dir.path())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("tokenizer.json"), "{err}");
    std::fs::copy(
        src.join("tokenizer.json"),
        dir.path().join("tokenizer.json"),
    )
    .unwrap();
    std::fs::write(dir.path().join("model.safetensors"), b"nope").unwrap();
    let err = SentenceEmbedder::load(dir.path())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("model.safetensors"), "{err}");
}

#[test]
fn anchor_sentiment_ranks_the_labelled_sentiment_set() {
    // The independent sentiment measure rain-eval reports in the sentiment setting: every
    // positive reply of the shipped labelled set scores above every negative one.
    let path = alignscope::assets::dir().join("data/sentiment_labelled.jsonl");
    let e = shipped();
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let text = row["text"].as_str().unwrap();
        let reply = text.split_once("Assistant: ").unwrap().1;
        let score = alignscope::rain::eval::anchor_sentiment(&e, reply).unwrap();
        if row["label"] == "good" {
            good.push(score);
        } else {
            bad.push(score);
        }
    }
    assert_eq!((good.len(), bad.len()), (12, 12));
    let lowest_good = good.iter().copied().fold(f32::INFINITY, f32::min);
    let highest_bad = bad.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    assert!(
        lowest_good > 0.0 && highest_bad < 0.0,
        "{lowest_good} / {highest_bad}"
    );
}
