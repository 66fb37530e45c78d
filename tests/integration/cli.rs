//! The binary, run as a user would.

use std::process::Command;

fn alignscope(runs: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_alignscope"));
    c.env("ALIGNSCOPE_RUNS", runs);
    c
}

/// Runs `cmd`, which must succeed, and parses its stdout as one JSON object.
fn json_output(cmd: &mut Command) -> serde_json::Value {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn help_lists_what_works() {
    let dir = tempfile::tempdir().unwrap();
    let out = alignscope(dir.path()).arg("--help").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["generate", "rain", "info", "embed", "bench"] {
        assert!(text.contains(cmd), "{cmd} missing from --help:\n{text}");
    }
}

#[test]
fn generate_json_greedy() {
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        json_output(alignscope(dir.path()).args([
            "generate",
            "--prompt",
            "What is 2+2?",
            "--max-tokens",
            "8",
            "--temperature",
            "0",
            "--json",
        ]))
    };
    let v = run();
    let tokens = v["tokens"].as_array().unwrap();
    assert!(!tokens.is_empty() && tokens.len() <= 8);
    assert!(!v["text"].as_str().unwrap().is_empty());
    assert!(v["timings"]["decode_tok_s"].as_f64().unwrap() > 0.0);
    assert_eq!(v["model"]["architecture"], "llama");
    assert!(tokens[0]["logprob"].as_f64().unwrap() <= 0.0);
    // Greedy is deterministic, and every run leaves records.
    assert_eq!(run()["text"], v["text"]);
    let records = alignscope::jobs::record::list(dir.path());
    assert!(
        records
            .iter()
            .any(|p| p.to_string_lossy().contains("generate")),
        "{records:?}"
    );
}

#[test]
fn bad_model_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.gguf");
    std::fs::write(&bad, b"GGUF\x03\x00\x00\x00garbage").unwrap();
    let out = alignscope(dir.path())
        .args(["generate", "--prompt", "hi", "--model"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("broken.gguf") && err.contains("damaged GGUF header"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn rain_json_reports_the_search() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("t.jsonl");
    let mut cmd = alignscope(dir.path());
    cmd.args([
        "rain",
        "--prompt",
        "Say something nice.",
        "--setting",
        "sentiment",
        "--max-tokens",
        "2",
    ])
    .args([
        "--t-max",
        "3",
        "--min-simulations",
        "2",
        "--json",
        "--trace",
    ])
    .arg(&trace);
    let v = json_output(&mut cmd);
    assert!(v["simulations"].as_u64().unwrap() >= 2);
    assert_eq!(v["simulations"], v["rewinds"]);
    assert!(v["tokens_processed"].as_u64().unwrap() > 0);
    assert_eq!(v["setting"], "sentiment");
    assert!(alignscope::rain::read_trace(&trace).unwrap().len() > 5);
    let bad = alignscope(dir.path())
        .args(["rain", "--prompt", "x", "--setting", "nonsense"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown setting `nonsense`"));
}
