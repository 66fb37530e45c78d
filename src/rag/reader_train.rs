//! DPA-RAG's internal alignment: the reader is fine-tuned first to judge passages as helpful
//! or not for a question (the pre-aligned stage, from the mined preferences), then with
//! standard SFT on answers read from the reranker's top k. Both stages are full fine-tunes
//! with `train::finetune`; each exports a Q8_0 GGUF, and the second starts from the first's.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::jobs::{mined_path, read_mined, reranker_dir, sample};
use super::mine::{Alignment, MinedQuery};
use super::pipeline::Pipeline;
use super::reader::user_turn;
use super::reranker::{Loss, Reranker};
use super::retrieve::RetrieverKind;
use crate::jobs::{JobBoard, JobCtx, JobHandle, JobSpec, Report};
use crate::knowledge::Split;
use crate::train::finetune::{finetune, gguf_beside, FinetuneRequest, FinetuneStep, Method};
use crate::train::pretrained::GgufType;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReaderTrainRequest {
    pub model: PathBuf,
    pub reranker: PathBuf,
    pub mined: PathBuf,
    /// Pre-aligned stage steps (0 skips the stage: plain SFT with reranked passages).
    pub judge_steps: usize,
    pub sft_steps: usize,
    pub batch: usize,
    pub lr: f64,
    /// Training questions for the SFT stage.
    pub questions: usize,
    pub k: usize,
    pub depth: usize,
    pub seed: u64,
    pub out: PathBuf,
}

impl ReaderTrainRequest {
    pub fn new() -> Self {
        Self {
            model: crate::assets::default_model(),
            reranker: reranker_dir(Loss::ALL),
            mined: mined_path(),
            judge_steps: 15,
            sft_steps: 30,
            batch: 8,
            lr: Method::Full.default_lr(),
            questions: 320,
            k: 3,
            depth: 20,
            seed: 0,
            out: super::dir().join("reader"),
        }
    }

    /// The reader the job exports: the SFT stage's Q8_0 GGUF.
    pub fn reader(&self) -> PathBuf {
        gguf_beside(&self.out.join("model"), GgufType::Q8_0)
    }
}

impl Default for ReaderTrainRequest {
    fn default() -> Self {
        Self::new()
    }
}

/// The judging prompt of the pre-aligned stage.
pub fn judge_turn(question: &str, passage: &str) -> String {
    format!(
        "Passage: {passage}\n\nQuestion: {question}\n\n\
         Does the passage help answer the question? Reply yes or no."
    )
}

/// Judging examples: aligned passages → "yes", unaligned ones → "no" (the preference knowledge
/// the reranker learns from), as many of each (the rarer label sets the count).
pub fn judge_examples(mined: &[MinedQuery], texts: &[&str], seed: u64) -> Vec<(String, String)> {
    let mut yes = Vec::new();
    let mut no = Vec::new();
    for q in mined {
        for p in &q.passages {
            let turn = judge_turn(&q.query, texts[p.passage]);
            match p.label {
                Alignment::Aligned => yes.push((turn, "yes".to_string())),
                Alignment::Unaligned => no.push((turn, "no".to_string())),
                Alignment::BothRight | Alignment::BothWrong => {}
            }
        }
    }
    let mut rng = StdRng::seed_from_u64(seed);
    yes.shuffle(&mut rng);
    no.shuffle(&mut rng);
    let n = yes.len().min(no.len());
    let mut out: Vec<(String, String)> = yes
        .into_iter()
        .take(n)
        .chain(no.into_iter().take(n))
        .collect();
    out.shuffle(&mut rng);
    out
}

fn write_chat_jsonl(rows: &[(String, String)], path: &Path) -> Result<()> {
    let text: String = rows
        .iter()
        .map(|(user, answer)| {
            json!({ "messages": [
                { "role": "user", "content": user },
                { "role": "assistant", "content": answer },
            ]})
            .to_string()
                + "\n"
        })
        .collect();
    crate::fs::write_atomic(path, text.as_bytes())
}

#[derive(Debug, Clone)]
pub struct ReaderStep {
    /// `pre-align` or `sft`.
    pub stage: &'static str,
    pub step: FinetuneStep,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReaderOutcome {
    pub judge_examples: usize,
    pub sft_examples: usize,
    pub judge_losses: Vec<f32>,
    pub sft_losses: Vec<f32>,
    pub seconds: f64,
    pub reader: PathBuf,
}

impl Report for ReaderOutcome {
    fn metrics(&self) -> serde_json::Value {
        json!({ "judge_last_loss": self.judge_losses.last(), "sft_last_loss": self.sft_losses.last(),
                "seconds": self.seconds })
    }
    fn outputs(&self) -> serde_json::Value {
        json!({ "reader": self.reader })
    }
}

pub fn train_reader(
    request: &ReaderTrainRequest,
    on_stage: &mut dyn FnMut(&str) -> Result<()>,
    on_step: &mut dyn FnMut(ReaderStep) -> Result<()>,
) -> Result<ReaderOutcome> {
    let start = Instant::now();
    std::fs::create_dir_all(&request.out)?;
    on_stage("indexing the passages")?;
    let pipeline = Pipeline::load(&mut |_| Ok(()))?;
    let texts: Vec<&str> = pipeline
        .kb
        .passages
        .iter()
        .map(|p| p.text.as_str())
        .collect();
    let mined = read_mined(&request.mined)?;
    let judge = judge_examples(&mined, &texts, request.seed);
    on_stage("reranking the training questions")?;
    let reranker = Reranker::load(&request.reranker)?;
    let mut sft = Vec::new();
    for q in sample(
        &pipeline.kb.questions,
        Split::Train,
        request.questions,
        request.seed,
    ) {
        let hits = pipeline.retrieve(RetrieverKind::Dense, q.text(), request.depth)?;
        let ranked = pipeline.rerank(&reranker, q.text(), &hits)?;
        let passages: Vec<&str> = ranked
            .iter()
            .take(request.k)
            .map(|h| texts[h.passage])
            .collect();
        sft.push((user_turn(q.text(), &passages), q.answers[0].clone()));
    }
    let stage_request = |data: PathBuf, model: PathBuf, out: PathBuf, steps: usize| {
        let mut r = FinetuneRequest::new(model, data, Method::Full);
        (r.steps, r.lr, r.batch, r.seed, r.save_every) =
            (steps, request.lr, request.batch, request.seed, steps);
        r.out = Some(out);
        r.gguf = Some(GgufType::Q8_0);
        r
    };
    let mut model = request.model.clone();
    let mut judge_losses = Vec::new();
    if request.judge_steps > 0 {
        anyhow::ensure!(
            !judge.is_empty(),
            "the mined preferences have no aligned and negative passages to judge"
        );
        let data = request.out.join("judge.jsonl");
        write_chat_jsonl(&judge, &data)?;
        let folder = request.out.join("judge");
        let r = stage_request(data, model.clone(), folder.clone(), request.judge_steps);
        on_stage("pre-aligned stage: judging passages")?;
        judge_losses = finetune(&r, on_stage, &mut |step| {
            on_step(ReaderStep {
                stage: "pre-align",
                step,
            })
        })?
        .losses;
        model = gguf_beside(&folder, GgufType::Q8_0);
    }
    let data = request.out.join("sft.jsonl");
    write_chat_jsonl(&sft, &data)?;
    let r = stage_request(data, model, request.out.join("model"), request.sft_steps);
    on_stage("SFT stage: answering from reranked passages")?;
    let sft_losses = finetune(&r, on_stage, &mut |step| {
        on_step(ReaderStep { stage: "sft", step })
    })?
    .losses;
    let outcome = ReaderOutcome {
        judge_examples: judge.len(),
        sft_examples: sft.len(),
        judge_losses,
        sft_losses,
        seconds: start.elapsed().as_secs_f64(),
        reader: request.reader(),
    };
    crate::fs::write_json(
        &request.out.join("training.json"),
        &json!({ "request": request, "outcome": outcome }),
    )?;
    Ok(outcome)
}

pub fn spawn_train_reader(
    board: &JobBoard,
    request: ReaderTrainRequest,
) -> JobHandle<ReaderStep, ReaderOutcome> {
    let spec = JobSpec {
        kind: "rag-reader".into(),
        title: "pre-aligned reader".into(),
        inputs: serde_json::to_value(&request).unwrap_or_default(),
        seed: Some(request.seed),
    };
    board.spawn(spec, move |ctx: &JobCtx<ReaderStep>| {
        train_reader(&request, &mut |s| ctx.stage(s), &mut |s| {
            ctx.check()?;
            let r = &s.step.report;
            ctx.progress(
                Some(r.step as f32 / r.total as f32),
                format!(
                    "{} step {}/{} · loss {:.3}",
                    s.stage, r.step, r.total, r.loss
                ),
            );
            ctx.send(s);
            Ok(())
        })
    })
}
