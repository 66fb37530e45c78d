//! The preference lab on the real knowledge base: triples retrieved for a question and
//! misleading ones that never answer it, preference sets built with the shipped models (and a
//! build resumed), every method's loss on a tiny zoo decoder (KnowPAT's falls), the eval's
//! scores and rankings read back, and bad files named by the CLI.

use std::path::{Path, PathBuf};

use super::cli::{alignscope, failure_stderr, json_output};
use alignscope::knowledge::{Relation, Split};
use alignscope::prefs::context::TripleIndex;
use alignscope::prefs::eval::{evaluate, score_answer, PrefEvalRequest};
use alignscope::prefs::sets::{build, read_sets, sets_path, BuildRequest, Source};
use alignscope::prefs::style::gold_answer;
use alignscope::prefs::train::{read_training, train, PrefMethod, PrefTrainRequest};

fn tiny_base() -> PathBuf {
    alignscope::assets::dir().join("zoo/tiny-base")
}

/// A sets file in `dir` with the first `train` training and `test` test questions of the
/// shipped sets.
pub fn small_sets(dir: &Path, train: usize, test: usize) -> PathBuf {
    let all = read_sets(&sets_path()).unwrap();
    let pick = |split, n| all.iter().filter(move |q| q.split == split).take(n);
    let text: String = pick(Split::Train, train)
        .chain(pick(Split::Test, test))
        .map(|q| serde_json::to_string(q).unwrap() + "\n")
        .collect();
    let path = dir.join("sets.jsonl");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn triples_are_retrieved_and_misleading_ones_never_answer() {
    let index = TripleIndex::load(&mut |_| Ok(())).unwrap();
    let q = index
        .kb
        .questions
        .iter()
        .find(|q| q.id == "Peru/capital")
        .unwrap();
    let (top, bad) = index.knowledge(q, 3).unwrap();
    assert_eq!(top.len(), 3);
    assert!(top.contains(&q.triples[0]), "{top:?}");
    assert_eq!(bad.len(), 3);
    assert!(
        bad.iter()
            .all(|t| t.object != "Lima" && t.subject != "Peru"),
        "{bad:?}"
    );
    assert!(
        bad.iter().all(|t| t.relation == Relation::Capital),
        "{bad:?}"
    );
}

#[test]
fn the_builder_writes_both_sets_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = BuildRequest::new();
    (r.train, r.test, r.out) = (1, 1, dir.path().join("sets.jsonl"));
    let first = build(&r, &mut |_| Ok(()), &mut |_, _| Ok(())).unwrap();
    assert_eq!((first.questions, first.new), (2, 2));
    let before = read_sets(&r.out).unwrap();
    r.train = 2;
    let second = build(&r, &mut |_| Ok(()), &mut |_, _| Ok(())).unwrap();
    assert_eq!(
        (second.questions, second.new),
        (3, 1),
        "only the new question is answered"
    );
    let after = read_sets(&r.out).unwrap();
    assert_eq!(
        &after[..2],
        &before[..],
        "answers already built are kept as they were"
    );
    let kb = alignscope::knowledge::KnowledgeBase::shipped().unwrap();
    for q in &after {
        let question = kb.questions.iter().find(|x| x.id == q.id).unwrap();
        assert_eq!(q.answer(Source::Gold), gold_answer(question));
        assert_eq!(q.knowledge.len(), 3);
        for s in [Source::Knowledge, Source::NoKnowledge, Source::Misleading] {
            assert!(!q.answer(s).is_empty(), "{}: no {s} answer", q.id);
        }
    }
    assert_eq!(after.iter().filter(|q| q.split == Split::Test).count(), 1);
}

#[test]
fn every_method_trains_and_knowpat_lowers_its_loss() {
    let dir = tempfile::tempdir().unwrap();
    let sets = small_sets(dir.path(), 1, 1);
    for method in PrefMethod::ALL {
        let mut r = PrefTrainRequest::new(*method);
        r.model = tiny_base();
        r.sets = sets.clone();
        r.out = dir.path().join(method.name());
        r.lr = 1e-2;
        r.steps = if *method == PrefMethod::Knowpat { 8 } else { 2 };
        let outcome = train(&r, &mut |_| Ok(()), &mut |_| Ok(())).unwrap();
        assert_eq!(outcome.steps.len(), r.steps);
        let (first, last) = (outcome.steps[0], *outcome.steps.last().unwrap());
        assert!(
            first.loss.is_finite() && first.sft > 0.0,
            "{method}: {first:?}"
        );
        match method {
            PrefMethod::Sft => assert_eq!(first.align, 0.0),
            // DPO starts at the reference: log 2.
            PrefMethod::Dpo => assert!((first.align - 2f32.ln()).abs() < 0.05, "{first:?}"),
            _ => assert!(first.align > 0.0, "{method}: {first:?}"),
        }
        if *method == PrefMethod::Knowpat {
            assert!(last.loss < first.loss, "{first:?} → {last:?}");
        }
        assert!(r.out.join("adapter_model.safetensors").exists());
        assert!(
            outcome.model.join("config.json").exists(),
            "the merged model"
        );
        assert_eq!(read_training(&r.out).unwrap().0.method, *method);
    }
    // The eval reads the trained KnowPAT model back: answers, rankings and the curve.
    let mut e = PrefEvalRequest::new(Some(PrefMethod::Knowpat));
    e.base = tiny_base();
    e.trained = Some(dir.path().join("knowpat"));
    e.sets = sets;
    e.out = dir.path().join("results/knowpat.json");
    e.max_new = 8;
    let outcome = evaluate(&e, &mut |_| Ok(())).unwrap();
    assert_eq!(outcome.method, Some(PrefMethod::Knowpat));
    assert_eq!(outcome.answers.len(), 1);
    assert_eq!(outcome.rankings.len(), 1);
    assert_eq!(outcome.rankings[0].scores.len(), Source::ALL.len());
    assert!(outcome.rankings[0]
        .scores
        .iter()
        .all(|s| s.is_finite() && *s < 0.0));
    assert_eq!(outcome.training.len(), 8);
    let (rows, bad) = alignscope::prefs::eval::read_results(&dir.path().join("results"));
    assert!(bad.is_empty() && rows.len() == 1);
}

#[test]
fn answers_are_scored_for_the_fact_the_triple_and_misleading_entities() {
    let sets = read_sets(&sets_path()).unwrap();
    let q = sets
        .iter()
        .find(|q| {
            q.knowledge.iter().any(|t| {
                !q.gold_triples.contains(t)
                    && t.relation == q.gold_triples.last().unwrap().relation
                    && !q.facts.contains(&t.object)
            })
        })
        .expect("a question whose prompt has a wrong entity's fact");
    let gold = score_answer(q, q.answer(Source::Gold));
    assert!(
        gold.fact && gold.exact && gold.uses_triple && !gold.misled,
        "{gold:?}"
    );
    assert!((gold.bleu - 1.0).abs() < 1e-9 && (gold.rouge_l - 1.0).abs() < 1e-9);
    let wrong = q
        .knowledge
        .iter()
        .find(|t| !q.gold_triples.contains(t) && !q.facts.contains(&t.object))
        .unwrap();
    let misled = score_answer(q, &format!("It is {}.", wrong.object));
    assert!(
        misled.misled && !misled.fact && !misled.uses_triple,
        "{misled:?}"
    );
}

#[test]
fn the_shipped_sets_rank_gold_first_and_cover_both_splits() {
    let sets = read_sets(&sets_path()).unwrap();
    let train = sets.iter().filter(|q| q.split == Split::Train).count();
    let test = sets.iter().filter(|q| q.split == Split::Test).count();
    assert!(train >= 100 && test >= 40, "{train} train, {test} test");
    let test_countries: std::collections::BTreeSet<&str> = sets
        .iter()
        .filter(|q| q.split == Split::Test)
        .map(|q| q.id.split('/').next().unwrap())
        .collect();
    assert!(sets
        .iter()
        .filter(|q| q.split == Split::Train)
        .all(|q| !test_countries.contains(q.id.split('/').next().unwrap())));
    // The premise of the knowledge set: with the top triples SmolLM2 states the fact more
    // often than with misleading ones.
    let stated = |s: Source| {
        sets.iter()
            .filter(|q| alignscope::rag::score::hit(q.answer(s), &q.facts))
            .count()
    };
    assert!(
        stated(Source::Knowledge) > stated(Source::Misleading),
        "{} vs {}",
        stated(Source::Knowledge),
        stated(Source::Misleading)
    );
}

#[test]
fn cli_trains_a_tiny_model_and_names_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let sets = small_sets(dir.path(), 1, 1);
    let json = json_output(
        alignscope(dir.path())
            .args([
                "prefs", "train", "--method", "dpo", "--steps", "2", "--json", "--model",
            ])
            .arg(tiny_base())
            .arg("--sets")
            .arg(&sets)
            .arg("--out")
            .arg(dir.path().join("dpo")),
    );
    assert_eq!(json["method"], "dpo");
    assert_eq!(json["steps"].as_array().unwrap().len(), 2);

    let broken = dir.path().join("broken.jsonl");
    std::fs::write(&broken, "{\"id\": 3}\n").unwrap();
    let err = failure_stderr(
        alignscope(dir.path())
            .args(["prefs", "eval", "--sets"])
            .arg(&broken),
    );
    assert!(
        err.contains("broken.jsonl") && err.contains("line 1"),
        "{err}"
    );

    let err = failure_stderr(alignscope(dir.path()).args(["prefs", "train", "--method", "ppo"]));
    assert!(err.contains("knowpat"), "{err}");
}
