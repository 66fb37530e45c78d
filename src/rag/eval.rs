//! Test-split evaluation: one pipeline condition (no retrieval, dense, BM25, or dense then the
//! reranker) with one reader, scored by EM, F1 and hit on single- and two-hop questions. Each
//! run is written to `assets/rag/results/<label>.json`, where the page reads the table.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::jobs::sample;
use super::pipeline::{load_reader, Pipeline};
use super::reader::{read, Reading};
use super::reranker::Reranker;
use super::retrieve::RetrieverKind;
use super::score::{exact_match, f1, hit};
use crate::jobs::{JobBoard, JobCtx, JobHandle, JobSpec, Report};
use crate::knowledge::{Hops, Question, Split};

crate::named_enum! {
    "condition";
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum Condition {
        /// The reader alone, no passages.
        NoRetrieval = "none",
        /// The dense retriever's top k.
        Dense = "dense",
        /// BM25's top k.
        Bm25 = "bm25",
        /// The dense retriever's top `depth`, reordered by the reranker; its top k.
        Reranked = "reranked",
    }
}

pub fn results_dir() -> PathBuf {
    super::dir().join("results")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalRequest {
    pub condition: Condition,
    /// The reader (GGUF files are scored as their Q8_0 re-export, as tuned readers are).
    pub reader: PathBuf,
    pub reranker: Option<PathBuf>,
    /// The row's name in the results table (and its file name).
    pub label: String,
    /// Passages given to the reader.
    pub k: usize,
    /// Passages the reranker reorders.
    pub depth: usize,
    pub single: usize,
    pub two_hop: usize,
    pub seed: u64,
}

impl EvalRequest {
    /// `condition` with the shipped reader (and the full reranker, when it reranks).
    pub fn new(condition: Condition) -> Self {
        Self {
            condition,
            reader: crate::assets::default_model(),
            reranker: (condition == Condition::Reranked)
                .then(|| super::jobs::reranker_dir(super::reranker::Loss::ALL)),
            label: condition.name().into(),
            k: 3,
            depth: 20,
            single: 120,
            two_hop: 60,
            seed: 0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HopScore {
    pub hops: Hops,
    pub n: usize,
    pub em: f64,
    pub f1: f64,
    pub hit: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalAnswer {
    pub id: String,
    pub hops: Hops,
    pub question: String,
    pub passages: Vec<usize>,
    pub reply: String,
    pub em: bool,
    pub f1: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalOutcome {
    pub request: EvalRequest,
    pub scores: Vec<HopScore>,
    pub answers: Vec<EvalAnswer>,
    pub seconds: f64,
}

impl Report for EvalOutcome {
    fn metrics(&self) -> serde_json::Value {
        json!({ "scores": self.scores, "seconds": self.seconds })
    }
    fn outputs(&self) -> serde_json::Value {
        json!({ "label": self.request.label })
    }
}

impl EvalOutcome {
    pub fn score(&self, hops: Hops) -> Option<&HopScore> {
        self.scores.iter().find(|s| s.hops == hops)
    }

    pub fn read(path: &Path) -> Result<Self> {
        crate::fs::read_json(path, "a RAG evaluation result")
    }
}

/// Every result in `dir`, sorted by label; unreadable files are reported, not fatal.
pub fn read_results(dir: &Path) -> (Vec<EvalOutcome>, Vec<String>) {
    let (mut rows, errors) =
        crate::fs::read_json_folder::<EvalOutcome>(dir, "a RAG evaluation result");
    rows.sort_by(|a, b| a.request.label.cmp(&b.request.label));
    (rows, errors)
}

/// The test questions scored: `single` single-hop and `two_hop` two-hop ones, by `seed`.
pub fn test_questions(
    questions: &[Question],
    single: usize,
    two_hop: usize,
    seed: u64,
) -> Vec<&Question> {
    let shuffled = sample(questions, Split::Test, usize::MAX, seed);
    [(Hops::Single, single), (Hops::TwoHop, two_hop)]
        .into_iter()
        .flat_map(|(hops, n)| {
            shuffled
                .iter()
                .copied()
                .filter(move |q| q.hops == hops)
                .take(n)
        })
        .collect()
}

/// Questions read per reader batch.
const EVAL_CHUNK: usize = 30;

pub fn evaluate(
    request: &EvalRequest,
    out: Option<&Path>,
    on_stage: &mut dyn FnMut(&str) -> Result<()>,
    on_progress: &mut dyn FnMut(usize, usize) -> Result<()>,
) -> Result<EvalOutcome> {
    let start = Instant::now();
    on_stage("indexing the passages")?;
    let pipeline = Pipeline::load(&mut |_| Ok(()))?;
    let reranker = match (request.condition, &request.reranker) {
        (Condition::Reranked, Some(dir)) => Some(Reranker::load(dir)?),
        (Condition::Reranked, None) => anyhow::bail!("the reranked condition needs a reranker"),
        _ => None,
    };
    on_stage("loading the reader")?;
    let reader_path = crate::promot::run::base_for_eval(&request.reader, on_stage)?;
    let reader = load_reader(&reader_path)?;
    let questions = test_questions(
        &pipeline.kb.questions,
        request.single,
        request.two_hop,
        request.seed,
    );
    on_stage("reading")?;
    let mut answers = Vec::with_capacity(questions.len());
    for chunk in questions.chunks(EVAL_CHUNK) {
        let mut contexts: Vec<Vec<usize>> = Vec::with_capacity(chunk.len());
        for q in chunk {
            let query = q.text();
            let hits = match request.condition {
                Condition::NoRetrieval => Vec::new(),
                Condition::Dense => pipeline.retrieve(RetrieverKind::Dense, query, request.k)?,
                Condition::Bm25 => pipeline.retrieve(RetrieverKind::Bm25, query, request.k)?,
                Condition::Reranked => {
                    let hits = pipeline.retrieve(RetrieverKind::Dense, query, request.depth)?;
                    let r = reranker.as_ref().context("no reranker")?;
                    pipeline.rerank(r, query, &hits)?
                }
            };
            contexts.push(hits.iter().take(request.k).map(|h| h.passage).collect());
        }
        let readings: Vec<Reading> = chunk
            .iter()
            .zip(&contexts)
            .map(|(q, ps)| Reading {
                question: q.text(),
                passages: ps.iter().map(|&p| pipeline.text(p)).collect(),
            })
            .collect();
        let replies = read(&reader, &readings)?;
        for ((q, ps), reply) in chunk.iter().zip(contexts).zip(replies) {
            answers.push(EvalAnswer {
                id: q.id.clone(),
                hops: q.hops,
                question: q.text().into(),
                passages: ps,
                em: exact_match(&reply, &q.answers),
                f1: f1(&reply, &q.answers),
                reply,
            });
        }
        on_progress(answers.len(), questions.len())?;
    }
    let scores = [Hops::Single, Hops::TwoHop]
        .into_iter()
        .map(|hops| {
            let of: Vec<(&EvalAnswer, &&Question)> = answers
                .iter()
                .zip(&questions)
                .filter(|(a, _)| a.hops == hops)
                .collect();
            let n = of.len().max(1) as f64;
            HopScore {
                hops,
                n: of.len(),
                em: of.iter().filter(|(a, _)| a.em).count() as f64 / n,
                f1: of.iter().map(|(a, _)| a.f1).sum::<f64>() / n,
                hit: of.iter().filter(|(a, q)| hit(&a.reply, &q.answers)).count() as f64 / n,
            }
        })
        .collect();
    let outcome = EvalOutcome {
        request: request.clone(),
        scores,
        answers,
        seconds: start.elapsed().as_secs_f64(),
    };
    if let Some(out) = out {
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent)?;
        }
        crate::fs::write_atomic(out, serde_json::to_string_pretty(&outcome)?.as_bytes())?;
    }
    Ok(outcome)
}

/// Evaluates and writes the result to `out` (default: the results folder, by label).
pub fn spawn_eval(
    board: &JobBoard,
    request: EvalRequest,
    out: Option<PathBuf>,
) -> JobHandle<(usize, usize), EvalOutcome> {
    let spec = JobSpec {
        kind: "rag-eval".into(),
        title: format!("evaluate {}", request.label),
        inputs: serde_json::to_value(&request).unwrap_or_default(),
        seed: Some(request.seed),
    };
    board.spawn(spec, move |ctx: &JobCtx<(usize, usize)>| {
        evaluate(
            &request,
            out.as_deref(),
            &mut |s| ctx.stage(s),
            &mut |done, total| {
                ctx.check()?;
                ctx.progress(
                    Some(done as f32 / total.max(1) as f32),
                    format!("{done}/{total} questions"),
                );
                ctx.send((done, total));
                Ok(())
            },
        )
    })
}
