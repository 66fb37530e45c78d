//! KnowPAT's preference sets, built per question and cached as JSON Lines:
//! - the *style* set: the gold answer (domain style) over answers by progressively weaker
//!   models given the same knowledge — SmolLM2-135M-Instruct, then the zoo's 1.1 M-parameter
//!   `tiny-kgqa` (fine-tuned for fact lookup), then `tiny-base` (pre-trained only);
//! - the *knowledge* set: the gold answer over SmolLM2 answering with the top-k retrieved
//!   triples, with no knowledge, and with misleading (worse-ranked, wrong-entity) triples.
//!
//! The builder writes the file after every chunk of questions and skips the questions already
//! in it, so a cancelled build resumes where it stopped.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::context::{tiny_prompt, user_turn, TripleIndex};
use super::style::gold_answer;
use crate::jobs::{JobBoard, JobCtx, JobHandle, JobSpec, Report};
use crate::knowledge::{Hops, Question, Split, Triple};
use crate::lm::chat::Message;
use crate::lm::LanguageModel;

crate::named_enum! {
    "answer source";
    /// Who wrote an answer, and with what knowledge.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum Source {
        /// The gold answer in the domain style.
        Gold = "gold",
        /// SmolLM2 with the top-k retrieved triples.
        Knowledge = "knowledge",
        /// SmolLM2 with no triples.
        NoKnowledge = "no-knowledge",
        /// SmolLM2 with worse-ranked, misleading triples.
        Misleading = "misleading",
        /// The zoo's tiny-kgqa decoder with the top-k triples.
        TinyQa = "tiny-kgqa",
        /// The zoo's tiny-base decoder with the top-k triples.
        TinyBase = "tiny-base",
    }
}

crate::named_enum! {
    "preference set";
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum SetKind {
        /// Gold over progressively weaker models.
        Style = "style",
        /// Gold over top-k knowledge, no knowledge, misleading knowledge.
        Knowledge = "knowledge",
    }
}

impl SetKind {
    /// The set's answers, best first.
    pub fn order(self) -> [Source; 4] {
        match self {
            SetKind::Style => [
                Source::Gold,
                Source::Knowledge,
                Source::TinyQa,
                Source::TinyBase,
            ],
            SetKind::Knowledge => [
                Source::Gold,
                Source::Knowledge,
                Source::NoKnowledge,
                Source::Misleading,
            ],
        }
    }
}

/// One question with its knowledge and every answer its two sets rank.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrefQuestion {
    pub id: String,
    pub split: Split,
    pub hops: Hops,
    pub question: String,
    /// Accepted answers (the fact), canonical first.
    pub facts: Vec<String>,
    /// The triples that answer the question.
    pub gold_triples: Vec<Triple>,
    /// The top-k retrieved triples: the knowledge the question is asked with.
    pub knowledge: Vec<Triple>,
    pub misleading: Vec<Triple>,
    /// One answer per source, in [`Source::ALL`] order (indexed by `source as usize`).
    pub answers: Vec<String>,
}

impl PrefQuestion {
    pub fn answer(&self, source: Source) -> &str {
        self.answers.get(source as usize).map_or("", String::as_str)
    }

    /// The user turn it is trained and tested with: the question and its top-k triples.
    pub fn prompt(&self) -> String {
        user_turn(&self.question, &self.knowledge)
    }
}

/// A question with its top-k and misleading triples.
type Prepared<'a> = (&'a Question, Vec<Triple>, Vec<Triple>);

/// What [`build`] makes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildRequest {
    /// The chat model whose answers fill the knowledge set (and the style set's first rung).
    pub model: PathBuf,
    pub tiny_qa: PathBuf,
    pub tiny_base: PathBuf,
    /// Training questions (the test split's countries never appear among them).
    pub train: usize,
    /// Test questions (their sets score how a model ranks answers).
    pub test: usize,
    /// Triples given with a question.
    pub k: usize,
    pub seed: u64,
    pub out: PathBuf,
}

/// Tokens per answer: a sentence and its source for the chat model, a value for the tiny ones.
const CHAT_NEW: usize = 48;
const TINY_NEW: usize = 12;
/// Questions answered per chunk (then the file is written).
const CHUNK: usize = 20;

impl BuildRequest {
    /// 160 training and 60 test questions with their top-3 triples; the shipped models.
    pub fn new() -> Self {
        let zoo = crate::assets::dir().join("zoo");
        Self {
            model: crate::assets::default_model(),
            tiny_qa: zoo.join("tiny-kgqa"),
            tiny_base: zoo.join("tiny-base"),
            train: 160,
            test: 60,
            k: 3,
            seed: 0,
            out: sets_path(),
        }
    }
}

impl Default for BuildRequest {
    fn default() -> Self {
        Self::new()
    }
}

pub fn sets_path() -> PathBuf {
    super::dir().join("sets.jsonl")
}

/// Reads a sets file; a bad line is refused with its number.
pub fn read_sets(path: &Path) -> Result<Vec<PrefQuestion>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            let q: PrefQuestion = serde_json::from_str(l).with_context(|| {
                format!(
                    "{}: line {} is not a preference question",
                    path.display(),
                    i + 1
                )
            })?;
            anyhow::ensure!(
                q.answers.len() == Source::ALL.len(),
                "{}: line {}: {} answers, expected {}",
                path.display(),
                i + 1,
                q.answers.len(),
                Source::ALL.len()
            );
            Ok(q)
        })
        .collect()
}

fn write_sets(path: &Path, sets: &[PrefQuestion]) -> Result<()> {
    let text: String = sets
        .iter()
        .map(|q| serde_json::to_string(q).map(|l| l + "\n"))
        .collect::<Result<_, _>>()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    crate::fs::write_atomic(path, text.as_bytes())
}

/// The questions a build covers: `train` training and `test` test questions, shuffled.
pub fn chosen<'a>(questions: &'a [Question], request: &BuildRequest) -> Vec<&'a Question> {
    let mut out = crate::rag::jobs::sample(questions, Split::Train, request.train, request.seed);
    out.extend(crate::rag::jobs::sample(
        questions,
        Split::Test,
        request.test,
        request.seed,
    ));
    out
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildOutcome {
    pub questions: usize,
    /// Questions answered by this run (the rest were in the file already).
    pub new: usize,
    pub seconds: f64,
    pub out: PathBuf,
}

impl Report for BuildOutcome {
    fn metrics(&self) -> serde_json::Value {
        json!({ "questions": self.questions, "new": self.new, "seconds": self.seconds })
    }
    fn outputs(&self) -> serde_json::Value {
        json!({ "sets": self.out })
    }
}

/// Greedy replies of `model` to `prompts`, first lines only, chat-templated when `chat`.
fn replies(
    model: &Arc<LanguageModel>,
    prompts: &[String],
    chat: bool,
    max_new: usize,
) -> Result<Vec<String>> {
    let rendered = prompts
        .iter()
        .map(|p| match chat {
            true => model.chat_prompt(&[Message::new("user", p)]),
            false => Ok(p.clone()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let refs: Vec<&str> = rendered.iter().map(String::as_str).collect();
    Ok(
        crate::eval::decoder::greedy_answers(model, None, &refs, max_new)?
            .into_iter()
            .map(|r| r.trim().lines().next().unwrap_or("").trim().to_string())
            .collect(),
    )
}

pub fn build(
    request: &BuildRequest,
    on_stage: &mut dyn FnMut(&str) -> Result<()>,
    on_chunk: &mut dyn FnMut(usize, usize) -> Result<()>,
) -> Result<BuildOutcome> {
    let start = Instant::now();
    on_stage("indexing the triples")?;
    let index = TripleIndex::load(&mut |_| Ok(()))?;
    let mut sets = match request.out.exists() {
        true => read_sets(&request.out)?,
        false => Vec::new(),
    };
    let done: BTreeSet<String> = sets.iter().map(|q| q.id.clone()).collect();
    let todo: Vec<&Question> = chosen(&index.kb.questions, request)
        .into_iter()
        .filter(|q| !done.contains(&q.id))
        .collect();
    let total = done.len() + todo.len();
    on_stage("loading the models")?;
    let chat = Arc::new(LanguageModel::load(&request.model)?);
    let tiny_qa = Arc::new(LanguageModel::load(&request.tiny_qa)?);
    let tiny_base = Arc::new(LanguageModel::load(&request.tiny_base)?);
    on_chunk(done.len(), total)?;
    for chunk in todo.chunks(CHUNK) {
        let mut made = Vec::new();
        for q in chunk {
            let (knowledge, misleading) = index.knowledge(q, request.k)?;
            made.push((*q, knowledge, misleading));
        }
        let turns = |f: &dyn Fn(&Prepared) -> String| made.iter().map(f).collect::<Vec<String>>();
        let with = replies(
            &chat,
            &turns(&|m| user_turn(m.0.text(), &m.1)),
            true,
            CHAT_NEW,
        )?;
        let without = replies(
            &chat,
            &turns(&|m| user_turn(m.0.text(), &[])),
            true,
            CHAT_NEW,
        )?;
        let misled = replies(
            &chat,
            &turns(&|m| user_turn(m.0.text(), &m.2)),
            true,
            CHAT_NEW,
        )?;
        let fits = |p: &str| {
            tiny_qa.tokenizer.encode_prompt(p).is_ok_and(|ids| {
                ids.len() + TINY_NEW
                    <= tiny_qa
                        .info
                        .context_length
                        .min(tiny_base.info.context_length)
            })
        };
        let tiny = turns(&|m| tiny_prompt(m.0, &m.1, &fits));
        let qa = replies(&tiny_qa, &tiny, false, TINY_NEW)?;
        let base = replies(&tiny_base, &tiny, false, TINY_NEW)?;
        for (i, (q, knowledge, misleading)) in made.into_iter().enumerate() {
            let mut answers = vec![String::new(); Source::ALL.len()];
            for (source, text) in [
                (Source::Gold, gold_answer(q)),
                (Source::Knowledge, with[i].clone()),
                (Source::NoKnowledge, without[i].clone()),
                (Source::Misleading, misled[i].clone()),
                (Source::TinyQa, qa[i].clone()),
                (Source::TinyBase, base[i].clone()),
            ] {
                answers[source as usize] = text;
            }
            sets.push(PrefQuestion {
                id: q.id.clone(),
                split: q.split,
                hops: q.hops,
                question: q.text().to_string(),
                facts: q.answers.clone(),
                gold_triples: q.triples.clone(),
                knowledge,
                misleading,
                answers,
            });
        }
        write_sets(&request.out, &sets)?;
        on_chunk(sets.len().min(total), total)?;
    }
    Ok(BuildOutcome {
        questions: sets.len(),
        new: todo.len(),
        seconds: start.elapsed().as_secs_f64(),
        out: request.out.clone(),
    })
}

pub fn spawn_build(
    board: &JobBoard,
    request: BuildRequest,
) -> JobHandle<(usize, usize), BuildOutcome> {
    let spec = JobSpec {
        kind: "prefs-build".into(),
        title: format!(
            "preference sets for {} + {} questions",
            request.train, request.test
        ),
        inputs: serde_json::to_value(&request).unwrap_or_default(),
        seed: Some(request.seed),
    };
    board.spawn(spec, move |ctx: &JobCtx<(usize, usize)>| {
        build(&request, &mut |s| ctx.stage(s), &mut |done, total| {
            ctx.check()?;
            ctx.progress(
                Some(done as f32 / total.max(1) as f32),
                format!("{done}/{total} questions answered"),
            );
            ctx.send((done, total));
            Ok(())
        })
    })
}
