//! The lab's jobs with their defaults: mine preference knowledge, train a reranker, ask one
//! question. (Evaluation and the reader's fine-tune live in [`super::eval`] and
//! [`super::reader_train`].) The CLI and the page both call these.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::mine::{counts, label, readings, Alignment, MinedQuery};
use super::pipeline::{ask, load_reader, Asked, Pipeline};
use super::reader::read;
use super::reranker::{
    ranked_lists, train_reranker, Loss, Reranker, RerankerRequest, RerankerStep,
};
use super::retrieve::RetrieverKind;
use crate::jobs::{JobBoard, JobCtx, JobHandle, JobSpec, Report};
use crate::knowledge::{Question, Split};

/// The mined preference knowledge the lab ships.
pub fn mined_path() -> PathBuf {
    super::dir().join("mined.jsonl")
}

/// The reranker folder for a set of losses (`reranker`, or `reranker-no-<loss>` for an
/// ablation).
pub fn reranker_dir(losses: &[super::reranker::Loss]) -> PathBuf {
    let off: Vec<&str> = super::reranker::Loss::ALL
        .iter()
        .filter(|l| !losses.contains(l))
        .map(|l| l.name())
        .collect();
    if off.is_empty() {
        super::dir().join("reranker")
    } else {
        super::dir().join(format!("reranker-no-{}", off.join("-")))
    }
}

/// Training questions, shuffled by `seed`, at most `n`.
pub fn sample(questions: &[Question], split: Split, n: usize, seed: u64) -> Vec<&Question> {
    let mut qs: Vec<&Question> = questions.iter().filter(|q| q.split == split).collect();
    qs.shuffle(&mut StdRng::seed_from_u64(seed));
    qs.truncate(n);
    qs
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MineRequest {
    /// The reader whose preferences are mined.
    pub model: PathBuf,
    /// 1-based dense-retrieval ranks read per query (the paper: 1, 25, 50, 100 of a top 100
    /// that its reranker reorders; here the reranker reorders a top 20).
    pub ranks: Vec<usize>,
    /// Training questions mined.
    pub questions: usize,
    /// Wordings per question (the first, then augmentations).
    pub wordings: usize,
    pub seed: u64,
    pub out: PathBuf,
}

impl MineRequest {
    pub fn new() -> Self {
        Self {
            model: crate::assets::default_model(),
            ranks: vec![1, 5, 10, 20],
            questions: 300,
            wordings: 2,
            seed: 0,
            out: mined_path(),
        }
    }
}

impl Default for MineRequest {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MineOutcome {
    pub queries: usize,
    pub reader_calls: usize,
    pub counts: Vec<(Alignment, usize)>,
    pub seconds: f64,
    pub out: PathBuf,
}

impl Report for MineOutcome {
    fn metrics(&self) -> serde_json::Value {
        json!({ "queries": self.queries, "reader_calls": self.reader_calls,
                "counts": self.counts, "seconds": self.seconds })
    }
    fn outputs(&self) -> serde_json::Value {
        json!({ "out": self.out })
    }
}

/// Queries read per reader batch while mining.
const MINE_CHUNK: usize = 20;

/// Mines preference knowledge and writes it as JSON lines.
pub fn mine(
    request: &MineRequest,
    on_stage: &mut dyn FnMut(&str) -> Result<()>,
    on_progress: &mut dyn FnMut(usize, usize) -> Result<()>,
) -> Result<MineOutcome> {
    anyhow::ensure!(!request.ranks.is_empty(), "give at least one rank to read");
    let start = Instant::now();
    on_stage("indexing the passages")?;
    let pipeline = Pipeline::load(&mut |_| Ok(()))?;
    on_stage("loading the reader")?;
    let reader = load_reader(&request.model)?;
    let depth = *request.ranks.iter().max().unwrap_or(&1);
    let mut queries: Vec<(&Question, &str)> = Vec::new();
    for q in sample(
        &pipeline.kb.questions,
        Split::Train,
        request.questions,
        request.seed,
    ) {
        for w in q.wordings.iter().take(request.wordings.max(1)) {
            queries.push((q, w));
        }
    }
    on_stage("reading")?;
    let mut mined: Vec<MinedQuery> = Vec::with_capacity(queries.len());
    let mut calls = 0;
    for chunk in queries.chunks(MINE_CHUNK) {
        let mut picked = Vec::with_capacity(chunk.len());
        for (_, query) in chunk {
            let hits = pipeline.retrieve(RetrieverKind::Dense, query, depth)?;
            let at: Vec<(usize, usize)> = request
                .ranks
                .iter()
                .filter_map(|&r| hits.get(r.checked_sub(1)?).map(|h| (h.passage, r)))
                .collect();
            picked.push(at);
        }
        let all: Vec<_> = chunk
            .iter()
            .zip(&picked)
            .flat_map(|((_, query), at)| {
                let texts: Vec<&str> = at.iter().map(|&(p, _)| pipeline.text(p)).collect();
                readings(query, &texts)
            })
            .collect();
        let replies = read(&reader, &all)?;
        calls += replies.len();
        let mut offset = 0;
        for ((q, query), at) in chunk.iter().zip(&picked) {
            let n = at.len() + 1;
            mined.push(label(
                &q.id,
                query,
                &q.answers,
                at,
                &replies[offset..offset + n],
            ));
            offset += n;
        }
        on_progress(mined.len(), queries.len())?;
    }
    let text: String = mined
        .iter()
        .map(|m| serde_json::to_string(m).map(|s| s + "\n"))
        .collect::<Result<_, _>>()?;
    if let Some(parent) = request.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    crate::fs::write_atomic(&request.out, text.as_bytes())?;
    Ok(MineOutcome {
        queries: mined.len(),
        reader_calls: calls,
        counts: counts(&mined),
        seconds: start.elapsed().as_secs_f64(),
        out: request.out.clone(),
    })
}

/// Reads mined preference knowledge, naming the file and line of a bad row.
pub fn read_mined(path: &Path) -> Result<Vec<MinedQuery>> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "{}: cannot read the mined preferences (run `alignscope rag mine`)",
            path.display()
        )
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{}: line {} is not a mined query", path.display(), i + 1))
        })
        .collect()
}

pub fn spawn_mine(
    board: &JobBoard,
    request: MineRequest,
) -> JobHandle<(usize, usize), MineOutcome> {
    let spec = JobSpec {
        kind: "rag-mine".into(),
        title: format!("mine preferences of {} questions", request.questions),
        inputs: serde_json::to_value(&request).unwrap_or_default(),
        seed: Some(request.seed),
    };
    board.spawn(spec, move |ctx: &JobCtx<(usize, usize)>| {
        mine(&request, &mut |s| ctx.stage(s), &mut |done, total| {
            ctx.check()?;
            ctx.progress(
                Some(done as f32 / total.max(1) as f32),
                format!("{done}/{total} queries read"),
            );
            ctx.send((done, total));
            Ok(())
        })
    })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RerankerJob {
    pub train: RerankerRequest,
    pub mined: PathBuf,
    pub out: PathBuf,
}

impl RerankerJob {
    /// The full reranker (all three losses, MGDA-UB) from the shipped encoder and mined data.
    pub fn new() -> Self {
        let train = RerankerRequest::new(crate::assets::embedding_model());
        let out = reranker_dir(&train.losses);
        Self {
            train,
            mined: mined_path(),
            out,
        }
    }
}

impl Default for RerankerJob {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RerankerOutcome {
    pub lists: usize,
    pub positives: usize,
    pub negatives: usize,
    pub history: Vec<RerankerStep>,
    pub seconds: f64,
    pub out: PathBuf,
}

impl Report for RerankerOutcome {
    fn metrics(&self) -> serde_json::Value {
        json!({ "lists": self.lists, "positives": self.positives, "negatives": self.negatives,
                "last_loss": self.history.last().map(|s| s.loss), "seconds": self.seconds })
    }
    fn outputs(&self) -> serde_json::Value {
        json!({ "out": self.out })
    }
}

/// File in a reranker folder with its training history.
pub const HISTORY_FILE: &str = "training.json";

pub fn reranker_job(
    job: &RerankerJob,
    on_stage: &mut dyn FnMut(&str) -> Result<()>,
    on_step: &mut dyn FnMut(RerankerStep) -> Result<()>,
) -> Result<RerankerOutcome> {
    let start = Instant::now();
    on_stage("reading the mined preferences")?;
    let mined = read_mined(&job.mined)?;
    let kb = crate::knowledge::KnowledgeBase::shipped()?;
    let texts: Vec<&str> = kb.passages.iter().map(|p| p.text.as_str()).collect();
    let lists = ranked_lists(&mined, job.train.both_wrong_negatives);
    let labelled = || lists.iter().flat_map(|l| &l.docs).filter_map(|d| d.label);
    let positives = labelled().filter(|&y| y > 0.5).count();
    let negatives = labelled().count() - positives;
    on_stage("training the reranker")?;
    let history = train_reranker(&job.train, &lists, &texts, &job.out, on_step)?;
    let outcome = RerankerOutcome {
        lists: lists.len(),
        positives,
        negatives,
        history,
        seconds: start.elapsed().as_secs_f64(),
        out: job.out.clone(),
    };
    crate::fs::write_atomic(
        &job.out.join(HISTORY_FILE),
        serde_json::to_string_pretty(&json!({ "job": job, "outcome": outcome }))?.as_bytes(),
    )?;
    Ok(outcome)
}

pub fn spawn_reranker(
    board: &JobBoard,
    job: RerankerJob,
) -> JobHandle<RerankerStep, RerankerOutcome> {
    let losses: Vec<&str> = job.train.losses.iter().map(|l| l.name()).collect();
    let spec = JobSpec {
        kind: "rag-reranker".into(),
        title: format!("reranker ({})", losses.join(" + ")),
        inputs: serde_json::to_value(&job).unwrap_or_default(),
        seed: Some(job.train.seed),
    };
    board.spawn(spec, move |ctx: &JobCtx<RerankerStep>| {
        reranker_job(&job, &mut |s| ctx.stage(s), &mut |s| {
            ctx.check()?;
            ctx.progress(
                Some(s.step as f32 / s.total as f32),
                format!("step {}/{} · loss {:.3}", s.step, s.total, s.loss),
            );
            ctx.send(s);
            Ok(())
        })
    })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AskRequest {
    pub question: String,
    /// Passages given to the reader.
    pub k: usize,
    /// Passages retrieved, reranked and read one by one.
    pub depth: usize,
    pub reader: PathBuf,
    /// The reader of the reranked passages (the pre-aligned one), if any.
    pub aligned_reader: Option<PathBuf>,
    pub reranker: Option<PathBuf>,
}

impl AskRequest {
    /// The shipped reader, and the full reranker and the pre-aligned reader where they have
    /// been built under `root` (the lab's folder).
    pub fn new(question: &str, root: &Path) -> Self {
        let reranker = root.join(reranker_dir(Loss::ALL).file_name().unwrap_or_default());
        let aligned = {
            let mut r = super::reader_train::ReaderTrainRequest::new();
            r.out = root.join("reader");
            r.reader()
        };
        Self {
            question: question.trim().into(),
            k: 3,
            depth: 10,
            reader: crate::assets::default_model(),
            aligned_reader: aligned.exists().then_some(aligned),
            reranker: reranker
                .join("model.safetensors")
                .exists()
                .then_some(reranker),
        }
    }
}

impl Report for Asked {
    fn metrics(&self) -> serde_json::Value {
        json!({ "answer_standard": self.answer_standard, "answer_reranked": self.answer_reranked,
                "answer_aligned": self.answer_aligned })
    }
    fn outputs(&self) -> serde_json::Value {
        json!({ "passages": self.passages.iter().map(|p| p.passage).collect::<Vec<_>>() })
    }
}

/// Asks one question; a knowledge-base question's wording brings its gold answer (and so the
/// passages' colours).
pub fn run_ask(
    request: &AskRequest,
    on_stage: &mut dyn FnMut(&str) -> Result<()>,
    on_progress: &mut dyn FnMut(f32) -> Result<()>,
) -> Result<Asked> {
    on_stage("indexing the passages")?;
    let pipeline = Pipeline::load(on_progress)?;
    on_stage("loading the models")?;
    let reader = load_reader(&request.reader)?;
    let aligned = request
        .aligned_reader
        .as_deref()
        .map(load_reader)
        .transpose()?;
    let reranker = request
        .reranker
        .as_deref()
        .map(Reranker::load)
        .transpose()?;
    let question = request.question.trim();
    let gold = pipeline
        .kb
        .questions
        .iter()
        .find(|q| q.wordings.iter().any(|w| w.eq_ignore_ascii_case(question)))
        .map(|q| q.answers.clone());
    on_stage("reading")?;
    ask(
        &pipeline,
        &reader,
        aligned.as_ref(),
        reranker.as_ref(),
        question,
        gold.as_deref(),
        request.k,
        request.depth,
    )
}

pub fn spawn_ask(board: &JobBoard, request: AskRequest) -> JobHandle<(), Asked> {
    let spec = JobSpec {
        kind: "rag-ask".into(),
        title: format!("ask: {}", crate::text::elide(&request.question, 40)),
        inputs: serde_json::to_value(&request).unwrap_or_default(),
        seed: None,
    };
    board.spawn(spec, move |ctx: &JobCtx<()>| {
        run_ask(&request, &mut |s| ctx.stage(s), &mut |f| {
            ctx.progress(Some(f), "embedding the passages (once)");
            ctx.check()
        })
    })
}
