//! The RAG lab on the real knowledge base, encoder and reader: retrieval finds the passage that
//! answers, evaluation scores are what the answers say, the reranker trains with MGDA-UB
//! weights and loads back, the reader's two stages run, and bad files are named.

use std::process::Command;

use alignscope::knowledge::{Hops, KnowledgeBase, Split};
use alignscope::rag::eval::{evaluate, read_results, Condition, EvalRequest};
use alignscope::rag::jobs::{read_mined, reranker_job, run_ask, AskRequest, RerankerJob};
use alignscope::rag::mine::{Alignment, MinedPassage, MinedQuery};
use alignscope::rag::pipeline::Pipeline;
use alignscope::rag::reader_train::{train_reader, ReaderTrainRequest};
use alignscope::rag::reranker::{Loss, Reranker};
use alignscope::rag::retrieve::RetrieverKind;
use alignscope::rag::score::{exact_match, f1};

fn pipeline() -> Pipeline {
    Pipeline::load(&mut |_| Ok(())).unwrap()
}

#[test]
fn both_retrievers_find_the_passage_that_answers() {
    let p = pipeline();
    for kind in RetrieverKind::ALL {
        let hits = p
            .retrieve(*kind, "What is the capital of Peru?", 3)
            .unwrap();
        assert_eq!(hits.len(), 3);
        assert!(
            hits.iter()
                .any(|h| p.text(h.passage).contains("Lima") && p.text(h.passage).contains("Peru")),
            "{kind}: {:?}",
            hits.iter().map(|h| p.text(h.passage)).collect::<Vec<_>>()
        );
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    }
}

#[test]
fn evaluation_scores_are_what_the_answers_say() {
    let out = tempfile::tempdir().unwrap();
    let mut r = EvalRequest::new(Condition::Dense);
    (r.single, r.two_hop, r.label) = (6, 3, "tiny".into());
    let file = out.path().join("tiny.json");
    let outcome = evaluate(&r, Some(&file), &mut |_| Ok(()), &mut |_, _| Ok(())).unwrap();
    assert_eq!(outcome.answers.len(), 9);
    let kb = KnowledgeBase::shipped().unwrap();
    for a in &outcome.answers {
        let q = kb.questions.iter().find(|q| q.id == a.id).unwrap();
        assert_eq!(q.split, Split::Test);
        assert_eq!(a.passages.len(), 3);
        assert_eq!(a.em, exact_match(&a.reply, &q.answers));
        assert_eq!(a.f1, f1(&a.reply, &q.answers));
    }
    let single = outcome.score(Hops::Single).unwrap();
    assert_eq!(single.n, 6);
    let em = outcome
        .answers
        .iter()
        .filter(|a| a.hops == Hops::Single && a.em)
        .count();
    assert!((single.em - em as f64 / 6.0).abs() < 1e-12);
    // The table reads it back; a broken file beside it is named, not fatal.
    std::fs::write(out.path().join("broken.json"), "{").unwrap();
    let (rows, errors) = read_results(out.path());
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].request.label, "tiny");
    assert!(
        errors.len() == 1 && errors[0].contains("broken.json"),
        "{errors:?}"
    );
}

/// The first passage containing `needle` (about `title`, if given).
fn passage(kb: &KnowledgeBase, title: Option<&str>, needle: &str) -> usize {
    kb.passages
        .iter()
        .position(|p| title.is_none_or(|t| p.title == t) && p.text.contains(needle))
        .unwrap()
}

fn mined(query: &str, answers: &[&str], passages: &[(usize, Alignment)]) -> MinedQuery {
    MinedQuery {
        question: query.into(),
        query: query.into(),
        answers: answers.iter().map(|a| a.to_string()).collect(),
        reply_without: String::new(),
        right_without: false,
        passages: passages
            .iter()
            .enumerate()
            .map(|(rank, &(passage, label))| MinedPassage {
                passage,
                rank: rank + 1,
                reply: String::new(),
                label,
            })
            .collect(),
    }
}

#[test]
fn the_reranker_trains_with_mgda_weights_and_loads_back() {
    let kb = KnowledgeBase::shipped().unwrap();
    let find = |needle: &str| passage(&kb, None, needle);
    let about = |title: &str, needle: &str| passage(&kb, Some(title), needle);
    let dir = tempfile::tempdir().unwrap();
    let rows = [
        mined(
            "What is the capital of Peru?",
            &["Lima"],
            &[
                (about("Peru", "Lima"), Alignment::Aligned),
                (find("Peru shares a border"), Alignment::Unaligned),
            ],
        ),
        mined(
            "What currency is used in Japan?",
            &["Yen"],
            &[
                (about("Japan", "Yen"), Alignment::Aligned),
                (about("Japan", "Tokyo"), Alignment::BothWrong),
            ],
        ),
    ];
    let text: String = rows
        .iter()
        .map(|m| serde_json::to_string(m).unwrap() + "\n")
        .collect();
    let file = dir.path().join("mined.jsonl");
    std::fs::write(&file, text).unwrap();
    let mut job = RerankerJob::new();
    job.mined = file.clone();
    job.out = dir.path().join("reranker");
    (job.train.steps, job.train.queries) = (3, 2);
    job.train.both_wrong_negatives = true;
    let outcome = reranker_job(&job, &mut |_| Ok(()), &mut |_| Ok(())).unwrap();
    assert_eq!(
        (outcome.lists, outcome.positives, outcome.negatives),
        (2, 2, 2)
    );
    assert_eq!(outcome.history.len(), 3);
    for s in &outcome.history {
        assert!(s.parts.iter().all(|p| p.is_finite()), "{s:?}");
        let sum: f32 = s.weights.iter().sum();
        assert!((sum - 1.0).abs() < 1e-4, "weights on the simplex: {s:?}");
    }
    let reranker = Reranker::load(&job.out).unwrap();
    let scores = reranker
        .scores(
            "What is the capital of Peru?",
            &[&kb.passages[0].text, "Lima"],
        )
        .unwrap();
    assert_eq!(scores.len(), 2);
    assert!(job.out.join("training.json").exists());

    // An ablation without the pair-wise loss reports it as off.
    job.train.losses = vec![Loss::Pointwise, Loss::Contrastive];
    job.out = dir.path().join("ablation");
    let outcome = reranker_job(&job, &mut |_| Ok(()), &mut |_| Ok(())).unwrap();
    assert!(outcome
        .history
        .iter()
        .all(|s| s.parts[1].is_nan() && s.weights[1] == 0.0));

    // A broken line is named with its number.
    std::fs::write(
        &file,
        format!("{}\nnot json\n", serde_json::to_string(&rows[0]).unwrap()),
    )
    .unwrap();
    let err = format!("{:#}", read_mined(&file).unwrap_err());
    assert!(
        err.contains("mined.jsonl") && err.contains("line 2"),
        "{err}"
    );
}

#[test]
fn ask_colours_passages_against_the_gold_answer() {
    let root = tempfile::tempdir().unwrap();
    let mut r = AskRequest::new("What is the capital of Peru?", root.path());
    r.depth = 4;
    assert!(r.reranker.is_none() && r.aligned_reader.is_none());
    let asked = run_ask(&r, &mut |_| Ok(()), &mut |_| Ok(())).unwrap();
    assert_eq!(asked.gold.as_deref(), Some(&["Lima".to_string()][..]));
    assert_eq!(asked.passages.len(), 4);
    assert!(asked.passages.iter().all(|p| p.label.is_some()));
    assert!(
        asked.reranked.is_empty()
            && asked.answer_reranked.is_none()
            && asked.answer_aligned.is_none()
    );
    // A free question has no gold answer and no colours.
    r.question = "Which river is the longest?".into();
    let asked = run_ask(&r, &mut |_| Ok(()), &mut |_| Ok(())).unwrap();
    assert!(asked.gold.is_none() && asked.passages.iter().all(|p| p.label.is_none()));
}

#[test]
fn the_reader_trains_in_two_stages_from_mined_preferences() {
    let dir = tempfile::tempdir().unwrap();
    let kb = KnowledgeBase::shipped().unwrap();
    let find = |needle: &str| passage(&kb, None, needle);
    let about = |title: &str, needle: &str| passage(&kb, Some(title), needle);
    let rows = [mined(
        "What is the capital of Peru?",
        &["Lima"],
        &[
            (about("Peru", "Lima"), Alignment::Aligned),
            (find("Peru shares a border"), Alignment::Unaligned),
        ],
    )];
    let file = dir.path().join("mined.jsonl");
    std::fs::write(&file, serde_json::to_string(&rows[0]).unwrap() + "\n").unwrap();
    // A reranker to pick the SFT passages: one step is enough for the pipeline.
    let mut job = RerankerJob::new();
    (job.mined, job.out, job.train.steps) = (file.clone(), dir.path().join("reranker"), 1);
    reranker_job(&job, &mut |_| Ok(()), &mut |_| Ok(())).unwrap();
    let mut r = ReaderTrainRequest::new();
    (r.mined, r.reranker, r.out) = (file, job.out.clone(), dir.path().join("reader"));
    (r.judge_steps, r.sft_steps, r.batch, r.questions) = (1, 1, 1, 2);
    let mut stages = Vec::new();
    let outcome = train_reader(&r, &mut |_| Ok(()), &mut |s| {
        stages.push(s.stage);
        Ok(())
    })
    .unwrap();
    assert_eq!(stages, ["pre-align", "sft"]);
    assert_eq!((outcome.judge_examples, outcome.sft_examples), (2, 2));
    assert!(outcome.reader.exists(), "{}", outcome.reader.display());
    let judge = std::fs::read_to_string(dir.path().join("reader/judge.jsonl")).unwrap();
    assert!(judge.contains("\"yes\"") && judge.contains("\"no\""));
    alignscope::lm::LanguageModel::load(&outcome.reader).unwrap();
}

#[test]
fn rag_headless_asks_and_evaluates() {
    let runs = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_alignscope"))
        .env("ALIGNSCOPE_RUNS", runs.path())
        .args([
            "rag",
            "ask",
            "What is the capital of Peru?",
            "--depth",
            "2",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let asked: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(asked["passages"].as_array().unwrap().len(), 2);
    assert_eq!(asked["gold"][0], "Lima");
    let file = runs.path().join("none.json");
    let out = Command::new(env!("CARGO_BIN_EXE_alignscope"))
        .env("ALIGNSCOPE_RUNS", runs.path())
        .args([
            "rag",
            "eval",
            "--condition",
            "none",
            "--single",
            "2",
            "--two-hop",
            "1",
            "--out",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("two-hop"));
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(written["answers"].as_array().unwrap().len(), 3);
    // A mined file that is not there: the command says which and how to make it.
    let out = Command::new(env!("CARGO_BIN_EXE_alignscope"))
        .env("ALIGNSCOPE_RUNS", runs.path())
        .args([
            "rag",
            "train-reranker",
            "--mined",
            "/nonexistent/mined.jsonl",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("mined.jsonl") && err.contains("rag mine"),
        "{err}"
    );
}

#[test]
fn the_reranker_learns_to_put_the_answering_passage_first() {
    let kb = KnowledgeBase::shipped().unwrap();
    let capital_passage = |country: &str| {
        let c = kb.graph.country(country).unwrap();
        kb.passages
            .iter()
            .position(|p| p.title == country && p.text.contains(&c.capital))
            .unwrap()
    };
    let countries = ["Peru", "Japan", "Kenya", "Norway", "Chile", "Egypt"];
    let rows: Vec<MinedQuery> = countries
        .iter()
        .map(|c| {
            let mut passages = vec![(capital_passage(c), Alignment::Aligned)];
            passages.extend(
                countries
                    .iter()
                    .filter(|o| *o != c)
                    .take(3)
                    .map(|o| (capital_passage(o), Alignment::BothWrong)),
            );
            let cap = kb.graph.country(c).unwrap().capital.clone();
            mined(&format!("What is the capital of {c}?"), &[&cap], &passages)
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mined.jsonl");
    std::fs::write(
        &file,
        rows.iter()
            .map(|m| serde_json::to_string(m).unwrap() + "\n")
            .collect::<String>(),
    )
    .unwrap();
    let mut job = RerankerJob::new();
    (job.mined, job.out) = (file, dir.path().join("reranker"));
    (
        job.train.steps,
        job.train.queries,
        job.train.both_wrong_negatives,
    ) = (40, 3, true);
    let outcome = reranker_job(&job, &mut |_| Ok(()), &mut |_| Ok(())).unwrap();
    let mean = |s: &[alignscope::rag::reranker::RerankerStep]| {
        s.iter().map(|s| s.parts[1]).sum::<f32>() / s.len() as f32
    };
    let (first, last) = (mean(&outcome.history[..8]), mean(&outcome.history[32..]));
    assert!(last < 0.5 * first, "pair-wise loss {first} → {last}");
    let reranker = Reranker::load(&job.out).unwrap();
    let texts: Vec<&str> = ["Kenya", "Peru", "Japan"]
        .iter()
        .map(|c| kb.passages[capital_passage(c)].text.as_str())
        .collect();
    let scores = reranker
        .scores("What is the capital of Peru?", &texts)
        .unwrap();
    assert!(scores[1] > scores[0] && scores[1] > scores[2], "{scores:?}");
}
