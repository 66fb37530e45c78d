//! Scoring a model on the test split's preference questions: its greedy answers (asked with
//! the top-k triples) against the gold answers — the fact, the gold statement (EM, F1), the
//! gold style (BLEU-4, ROUGE-L) and knowledge use (states the answering triple; repeats a
//! misleading one) — and how its length-normalised log-likelihoods rank each preference set.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::metrics::{bleu, rouge_l};
use super::sets::{read_sets, PrefQuestion, SetKind, Source};
use super::style::statement;
use super::train::{exported, read_training, scores, tokenized, PrefMethod, PrefStep};
use crate::jobs::{JobBoard, JobCtx, JobHandle, JobSpec, Report};
use crate::knowledge::{Hops, Split};
use crate::lm::chat::Message;
use crate::lm::LanguageModel;
use crate::rag::score::{hit, normalise, token_f1};
use crate::train::pretrained::Pretrained;

pub fn results_dir() -> PathBuf {
    super::dir().join("results")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrefEvalRequest {
    /// The base chat model.
    pub base: PathBuf,
    /// A trained method's output folder (adapter and merged model); none scores the base.
    pub trained: Option<PathBuf>,
    pub label: String,
    pub sets: PathBuf,
    /// Test questions answered (at most).
    pub questions: usize,
    /// Test questions whose preference sets are ranked by the model's scores.
    pub ranked: usize,
    pub max_new: usize,
    pub out: PathBuf,
}

impl PrefEvalRequest {
    /// The base model (`trained` none) or a trained method, on 60 test questions, 20 of them
    /// ranked, 48 new tokens per answer.
    pub fn new(trained: Option<PrefMethod>) -> Self {
        let label = trained.map_or("base".to_string(), |m| m.name().to_string());
        Self {
            base: crate::assets::default_model(),
            trained: trained.map(|m| super::dir().join("models").join(m.name())),
            out: results_dir().join(format!("{label}.json")),
            label,
            sets: super::sets::sets_path(),
            questions: 60,
            ranked: 20,
            max_new: 48,
        }
    }
}

/// One test answer and its scores.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScoredAnswer {
    pub id: String,
    pub hops: Hops,
    pub reply: String,
    /// A gold answer is stated.
    pub fact: bool,
    /// The first sentence is the gold statement (normalised).
    pub exact: bool,
    /// Token F1 of the first sentence against the gold statement.
    pub f1: f64,
    pub bleu: f64,
    pub rouge_l: f64,
    /// Subject and object of the answering triple are both stated.
    pub uses_triple: bool,
    /// The object of a wrong-entity triple from the prompt is stated.
    pub misled: bool,
}

/// Means over a group of answers (shares in %, BLEU and ROUGE-L ×100).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub questions: usize,
    pub fact: f64,
    pub exact: f64,
    pub f1: f64,
    pub bleu: f64,
    pub rouge_l: f64,
    pub uses_triple: f64,
    pub misled: f64,
}

impl Summary {
    pub fn of<'a>(answers: impl Iterator<Item = &'a ScoredAnswer>) -> Self {
        let all: Vec<&ScoredAnswer> = answers.collect();
        let n = all.len().max(1) as f64;
        let share = |f: &dyn Fn(&ScoredAnswer) -> bool| {
            100.0 * all.iter().filter(|a| f(a)).count() as f64 / n
        };
        let mean =
            |f: &dyn Fn(&ScoredAnswer) -> f64| 100.0 * all.iter().map(|a| f(a)).sum::<f64>() / n;
        Self {
            questions: all.len(),
            fact: share(&|a| a.fact),
            exact: share(&|a| a.exact),
            f1: mean(&|a| a.f1),
            bleu: mean(&|a| a.bleu),
            rouge_l: mean(&|a| a.rouge_l),
            uses_triple: share(&|a| a.uses_triple),
            misled: share(&|a| a.misled),
        }
    }
}

/// A test question's answer scores `S` under the model, in [`Source::ALL`] order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ranking {
    pub id: String,
    pub scores: Vec<f32>,
}

impl Ranking {
    pub fn score(&self, source: Source) -> f32 {
        self.scores[source as usize]
    }
}

/// The share of a set's ordered pairs (better, worse) the scores put in the preferred order.
pub fn agreement(rankings: &[Ranking], set: SetKind) -> f64 {
    let (mut right, mut all) = (0, 0);
    for r in rankings {
        let order = set.order();
        for i in 0..order.len() {
            for j in i + 1..order.len() {
                all += 1;
                right += usize::from(r.score(order[i]) > r.score(order[j]));
            }
        }
    }
    100.0 * right as f64 / all.max(1) as f64
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PrefEvalOutcome {
    pub label: String,
    pub method: Option<PrefMethod>,
    pub all: Summary,
    pub single: Summary,
    pub two_hop: Summary,
    /// Pairs of the style / knowledge sets ranked in the preferred order, %.
    pub style_agreement: f64,
    pub knowledge_agreement: f64,
    pub rankings: Vec<Ranking>,
    pub answers: Vec<ScoredAnswer>,
    /// Training wall time of the method, from its record.
    pub train_seconds: Option<f64>,
    /// The method's training curve, from its record.
    #[serde(default)]
    pub training: Vec<PrefStep>,
    pub seconds: f64,
}

impl PrefEvalOutcome {
    pub fn read(path: &Path) -> Result<Self> {
        crate::fs::read_json(path, "a preference-lab result")
    }
}

impl Report for PrefEvalOutcome {
    fn metrics(&self) -> serde_json::Value {
        json!({ "all": self.all, "style_agreement": self.style_agreement,
                "knowledge_agreement": self.knowledge_agreement })
    }
    fn outputs(&self) -> serde_json::Value {
        json!({})
    }
}

/// Every result in `dir`, in the methods' order (base first); unreadable files are named in
/// the second list.
pub fn read_results(dir: &Path) -> (Vec<PrefEvalOutcome>, Vec<String>) {
    let (mut rows, errors) =
        crate::fs::read_json_folder::<PrefEvalOutcome>(dir, "a preference-lab result");
    rows.sort_by_key(|r| r.method.map_or(0, |m| 1 + m as usize));
    (rows, errors)
}

/// Scores one reply to `q`.
pub fn score_answer(q: &PrefQuestion, reply: &str) -> ScoredAnswer {
    let gold = q.answer(Source::Gold);
    let words = format!(" {} ", normalise(reply));
    let says = |x: &str| words.contains(&format!(" {} ", normalise(x)));
    let answering = q.gold_triples.last();
    let relation = answering.map(|t| t.relation);
    let misled = q
        .knowledge
        .iter()
        .filter(|t| Some(t.relation) == relation && !q.facts.contains(&t.object))
        .any(|t| says(&t.object));
    ScoredAnswer {
        id: q.id.clone(),
        hops: q.hops,
        reply: reply.to_string(),
        fact: hit(reply, &q.facts),
        exact: normalise(statement(reply)) == normalise(statement(gold)),
        f1: token_f1(&normalise(statement(reply)), &normalise(statement(gold))),
        bleu: bleu(reply, gold),
        rouge_l: rouge_l(reply, gold),
        uses_triple: answering.is_some_and(|t| says(&t.subject) && says(&t.object)),
        misled,
    }
}

pub fn evaluate(
    request: &PrefEvalRequest,
    on_stage: &mut dyn FnMut(&str) -> Result<()>,
) -> Result<PrefEvalOutcome> {
    let start = Instant::now();
    let test: Vec<PrefQuestion> = read_sets(&request.sets)?
        .into_iter()
        .filter(|q| q.split == Split::Test)
        .take(request.questions)
        .collect();
    anyhow::ensure!(
        !test.is_empty(),
        "{}: no test questions",
        request.sets.display()
    );
    let (method, train_seconds, training) = match &request.trained {
        Some(dir) => {
            let (r, o) = read_training(dir)?;
            (Some(r.method), Some(o.seconds), o.steps)
        }
        None => (None, None, Vec::new()),
    };
    let generator = match &request.trained {
        Some(dir) => exported(&request.base, dir),
        None => crate::promot::run::base_for_eval(&request.base, on_stage)?,
    };
    on_stage("answering the test questions")?;
    let lm = Arc::new(LanguageModel::load(&generator)?);
    let prompts = test
        .iter()
        .map(|q| lm.chat_prompt(&[Message::new("user", q.prompt())]))
        .collect::<Result<Vec<_>, _>>()?;
    let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let replies = crate::eval::decoder::greedy_answers(&lm, None, &refs, request.max_new)?;
    let answers: Vec<ScoredAnswer> = test
        .iter()
        .zip(&replies)
        .map(|(q, r)| score_answer(q, r.trim()))
        .collect();
    on_stage("ranking the preference sets")?;
    let pretrained = Pretrained::load(&request.base)?;
    let mut model = pretrained.frozen_model()?;
    if let Some(dir) = &request.trained {
        crate::train::adapter::apply(&mut model, dir)?;
    }
    model.train = false;
    let pad = lm.tokenizer.eos.unwrap_or(0);
    let mut rankings = Vec::new();
    for q in test.iter().take(request.ranked) {
        on_stage(&format!(
            "ranking the preference sets ({}/{})",
            rankings.len() + 1,
            request.ranked.min(test.len())
        ))?;
        // The generator is the base (or its export), so its tokenizer is the base's.
        let items = tokenized(&lm, q, Source::ALL, 256)?;
        let (s, _) = scores(&model, &items, pad)?;
        rankings.push(Ranking {
            id: q.id.clone(),
            scores: s.to_vec1()?,
        });
    }
    let outcome = PrefEvalOutcome {
        label: request.label.clone(),
        method,
        all: Summary::of(answers.iter()),
        single: Summary::of(answers.iter().filter(|a| a.hops == Hops::Single)),
        two_hop: Summary::of(answers.iter().filter(|a| a.hops == Hops::TwoHop)),
        style_agreement: agreement(&rankings, SetKind::Style),
        knowledge_agreement: agreement(&rankings, SetKind::Knowledge),
        rankings,
        answers,
        train_seconds,
        training,
        seconds: start.elapsed().as_secs_f64(),
    };
    if let Some(dir) = request.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    crate::fs::write_json(&request.out, &outcome)?;
    Ok(outcome)
}

pub fn spawn_eval(board: &JobBoard, request: PrefEvalRequest) -> JobHandle<(), PrefEvalOutcome> {
    let spec = JobSpec {
        kind: "prefs-eval".into(),
        title: format!("preference eval ({})", request.label),
        inputs: serde_json::to_value(&request).unwrap_or_default(),
        seed: None,
    };
    board.spawn(spec, move |ctx: &JobCtx<()>| {
        evaluate(&request, &mut |s| ctx.stage(s))
    })
}
