//! The RAG page: ask a question and see the retrieved passages with the retriever's and the
//! reranker's scores, each coloured by what it does to this reader (read live, with and
//! without it), and the answers before and after DPA-RAG; browse the knowledge graph; run the
//! lab's training jobs with per-loss curves and the MGDA-UB weights; read the results table.
//! Jobs are `rag::jobs` / `rag::eval` / `rag::reader_train`, as in `alignscope rag`.

mod view;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::folder_cache::FolderCache;
use super::{Lab, LabCtx};
use crate::jobs::{JobBoard, JobHandle};
use crate::knowledge::KnowledgeBase;
use crate::rag::eval::{read_results, EvalOutcome};
use crate::rag::jobs::{
    spawn_ask, spawn_reranker, AskRequest, RerankerJob, RerankerOutcome, HISTORY_FILE,
};
use crate::rag::pipeline::Asked;
use crate::rag::reader_train::{spawn_train_reader, ReaderOutcome, ReaderStep, ReaderTrainRequest};
use crate::rag::reranker::{Loss, RerankerStep};

/// The evaluated pipelines, and the result files that could not be read.
type ResultsTable = (Vec<EvalOutcome>, Vec<String>);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RagTab {
    Ask,
    Knowledge,
    Training,
    Results,
}

impl RagTab {
    pub const ALL: [RagTab; 4] = [
        RagTab::Ask,
        RagTab::Knowledge,
        RagTab::Training,
        RagTab::Results,
    ];
    pub fn label(self) -> &'static str {
        match self {
            RagTab::Ask => "Question",
            RagTab::Knowledge => "Knowledge graph",
            RagTab::Training => "Training",
            RagTab::Results => "Results",
        }
    }
}

/// The question on the first visit: a test-split question where the retriever's top three
/// passages lead the reader to "Baghdad" and the reranker's to "Riyadh".
pub const DEMO_QUESTION: &str = "What is the capital of Saudi Arabia?";

pub struct RagPanel {
    pub tab: RagTab,
    pub question: String,
    pub k: usize,
    pub depth: usize,
    /// Where rerankers, readers and results are read and written (the shipped folder).
    pub root: PathBuf,
    ask_job: Option<JobHandle<(), Asked>>,
    pub asked: Option<Asked>,
    pub error: Option<String>,
    kb: Option<Result<KnowledgeBase, String>>,
    pub entity_filter: String,
    pub entity: Option<String>,
    /// Losses of the next reranker run.
    pub losses: [bool; 3],
    pub reranker_steps: usize,
    reranker_job: Option<JobHandle<RerankerStep, RerankerOutcome>>,
    /// Ask again when the running reranker job ends (it was started from the Ask tab).
    ask_after_training: bool,
    /// The running (or last) reranker run's steps; the shipped run's until one starts.
    pub reranker_history: Vec<RerankerStep>,
    pub reranker_history_of: String,
    pub reader_request: ReaderTrainRequest,
    reader_job: Option<JobHandle<ReaderStep, ReaderOutcome>>,
    /// (stage, step, loss) of the running (or last) reader run.
    pub reader_losses: Vec<(&'static str, f64, f64)>,
    /// The results table, read from this folder.
    results: FolderCache<ResultsTable>,
}

impl Default for RagPanel {
    fn default() -> Self {
        let root = crate::rag::dir();
        Self {
            tab: RagTab::Ask,
            question: DEMO_QUESTION.into(),
            k: 3,
            depth: 10,
            ask_job: None,
            asked: None,
            error: None,
            kb: None,
            entity_filter: String::new(),
            entity: None,
            losses: [true; 3],
            reranker_steps: RerankerJob::new().train.steps,
            reranker_job: None,
            ask_after_training: false,
            reranker_history: Vec::new(),
            reranker_history_of: String::new(),
            reader_request: ReaderTrainRequest::new(),
            reader_job: None,
            reader_losses: Vec::new(),
            results: FolderCache::new(read_results),
            root,
        }
    }
}

impl RagPanel {
    pub fn is_asking(&self) -> bool {
        self.ask_job.is_some()
    }
    pub fn ask_job_id(&self) -> Option<crate::jobs::JobId> {
        self.ask_job.as_ref().map(|j| j.id())
    }
    pub fn reranker_job_id(&self) -> Option<crate::jobs::JobId> {
        self.reranker_job.as_ref().map(|j| j.id())
    }
    pub fn reader_job_id(&self) -> Option<crate::jobs::JobId> {
        self.reader_job.as_ref().map(|j| j.id())
    }

    pub fn reranker_path(&self) -> PathBuf {
        self.root.join("reranker")
    }

    /// Asks the question as a job.
    pub fn ask(&mut self, board: &JobBoard) {
        if let Some(job) = self.ask_job.take() {
            board.cancel(job.id());
        }
        self.error = None;
        let mut request = AskRequest::new(&self.question, &self.root);
        (request.k, request.depth) = (self.k, self.depth);
        self.ask_job = Some(spawn_ask(board, request));
    }

    pub fn train_reranker(&mut self, board: &JobBoard) {
        let mut job = RerankerJob::new();
        job.train.losses = Loss::ALL
            .iter()
            .zip(self.losses)
            .filter(|(_, on)| *on)
            .map(|(l, _)| *l)
            .collect();
        job.train.steps = self.reranker_steps;
        let name = crate::rag::jobs::reranker_dir(&job.train.losses);
        job.out = self.root.join(name.file_name().unwrap_or_default());
        self.reranker_history.clear();
        self.reranker_history_of = "this run".into();
        self.reranker_job = Some(spawn_reranker(board, job));
    }

    /// Trains the full reranker, then asks the question again with it.
    pub fn build_reranker_and_ask(&mut self, board: &JobBoard) {
        self.losses = [true; 3];
        self.train_reranker(board);
        self.ask_after_training = true;
    }

    pub fn train_reader(&mut self, board: &JobBoard) {
        let mut r = self.reader_request.clone();
        r.out = self.root.join("reader");
        r.reranker = self.reranker_path();
        self.reader_losses.clear();
        self.reader_job = Some(spawn_train_reader(board, r));
    }

    pub fn cancel_all(&mut self, board: &JobBoard) {
        for id in [
            self.ask_job_id(),
            self.reranker_job_id(),
            self.reader_job_id(),
        ]
        .into_iter()
        .flatten()
        {
            board.cancel(id);
        }
    }

    /// The knowledge base, loaded on first use.
    pub fn kb(&mut self) -> Result<&KnowledgeBase, &String> {
        self.kb
            .get_or_insert_with(|| KnowledgeBase::shipped().map_err(|e| format!("{e:#}")))
            .as_ref()
    }

    /// The results table's rows and the files that could not be read (read again when the
    /// folder changes).
    pub fn results(&mut self) -> &ResultsTable {
        self.results.get(self.root.join("results"))
    }

    pub fn reload_results(&mut self) {
        self.results.clear();
    }

    /// The shipped reranker's training history, until a run here replaces it.
    fn load_history(&mut self) {
        if !self.reranker_history_of.is_empty() {
            return;
        }
        self.reranker_history_of = "shipped run".into();
        let path = self.reranker_path().join(HISTORY_FILE);
        if let Ok(text) = std::fs::read_to_string(&path) {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                if let Ok(h) = serde_json::from_value(v["outcome"]["history"].clone()) {
                    self.reranker_history = h;
                }
            }
        }
    }

    fn take_results(&mut self, board: &JobBoard) {
        if let Some(job) = &self.ask_job {
            if let Some(r) = job.take_result() {
                self.ask_job = None;
                match r {
                    Ok(a) => self.asked = Some(a),
                    Err(e) => self.error = Some(e),
                }
            }
        }
        if let Some(job) = &self.reranker_job {
            self.reranker_history.extend(job.drain());
            if let Some(r) = job.take_result() {
                self.reranker_job = None;
                match r {
                    Ok(_) if std::mem::take(&mut self.ask_after_training) => self.ask(board),
                    Ok(_) => {}
                    Err(e) => {
                        self.ask_after_training = false;
                        self.error = Some(format!("reranker: {e}"));
                    }
                }
            }
        }
        if let Some(job) = &self.reader_job {
            for s in job.drain() {
                self.reader_losses.push((
                    s.stage,
                    s.step.report.step as f64,
                    s.step.report.loss as f64,
                ));
            }
            if let Some(r) = job.take_result() {
                self.reader_job = None;
                if let Err(e) = r {
                    self.error = Some(format!("reader: {e}"));
                }
            }
        }
    }
}

impl Lab for RagPanel {
    fn id(&self) -> &'static str {
        "rag"
    }
    fn name(&self) -> &'static str {
        "RAG"
    }
    fn title(&self) -> &'static str {
        "DPA-RAG: passages that help this reader"
    }
    fn description(&self) -> &'static str {
        "Dong et al.: the passages a retriever ranks high are not always the ones that help the \
         reader. Mine which ones help SmolLM2 (right with the passage, wrong without), train a \
         reranker on them, and fine-tune the reader to judge passages."
    }
    fn poll(&mut self, ctx: &mut LabCtx) {
        self.load_history();
        self.take_results(ctx.board);
    }
    fn ui(&mut self, ui: &mut egui::Ui, ctx: &mut LabCtx) {
        view::ui(ui, self, ctx);
    }
    fn save(&self) -> Option<serde_json::Value> {
        Some(
            serde_json::json!({ "tab": self.tab, "question": self.question, "k": self.k, "depth": self.depth }),
        )
    }
    fn restore(&mut self, saved: serde_json::Value) {
        if let Ok(t) = serde_json::from_value(saved["tab"].clone()) {
            self.tab = t;
        }
        if let Some(q) = saved["question"].as_str() {
            self.question = q.into();
        }
        if let Some(k) = saved["k"].as_u64() {
            self.k = (k as usize).clamp(1, 10);
        }
        if let Some(d) = saved["depth"].as_u64() {
            self.depth = (d as usize).clamp(1, 50);
        }
    }
}
