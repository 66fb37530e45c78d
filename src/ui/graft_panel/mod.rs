//! The Graft page: pick a MiniLM fine-tune (and, for the multi-task one, a task), a sparsity
//! on a log scale, and learn a mask as a job with accuracy and loss per step arriving live;
//! compare learned / top-k / random / DARE masks across sparsities, the fine-tune's and the
//! graft's calibration, where the mask lives (layer × module), how masks of different tasks
//! overlap, and export the grafted model with its mask. Runs are `graft::tasks::spawn_graft`,
//! as in the CLI.

mod view;

use std::collections::VecDeque;
use std::path::PathBuf;

use super::{Lab, LabCtx};
use crate::data::classify::ClassTask;
use crate::graft::learn::{LearnOptions, LearnStep};
use crate::graft::tasks::{
    percent, spawn_export, spawn_graft, GraftOutcome, GraftRequest, GraftRow, GraftUpdate,
    SPARSITIES,
};
use crate::graft::{GraftMethod, Mask};
use crate::jobs::{JobBoard, JobHandle};

/// The zoo's single-task MiniLM fine-tunes, in the order of [`ClassTask::SINGLE`].
pub const ENCODERS: [&str; 4] = [
    "minilm-sentiment",
    "minilm-continent",
    "minilm-intensity",
    "minilm-size",
];
/// The MiniLM fine-tuned on all four tasks.
pub const MULTI_TASK: &str = "minilm-all";
/// The zoo's single-task decoder fine-tunes (plain and AdamR).
pub const DECODERS: [&str; 6] = [
    "tiny-add",
    "tiny-add-adamr",
    "tiny-sentiment",
    "tiny-sentiment-adamr",
    "tiny-reverse",
    "tiny-kgqa",
];

/// A finished mask with what it was made from.
pub struct KeptMask {
    pub label: String,
    pub model: String,
    pub task: Option<ClassTask>,
    pub row: GraftRow,
    pub mask: Mask,
}

pub struct GraftPanel {
    /// A zoo fine-tune or a folder.
    pub model: String,
    /// The pretrained model of a folder fine-tune (zoo fine-tunes know theirs).
    pub base: Option<String>,
    /// The task of the multi-task model.
    pub task: ClassTask,
    /// log10 of the kept fraction.
    pub log_sparsity: f64,
    pub learn: LearnOptions,
    job: Option<JobHandle<GraftUpdate, GraftOutcome>>,
    /// Requests waiting for the running one (a sweep or the overlap of all tasks).
    queue: VecDeque<GraftRequest>,
    /// The running request's model and task, for labelling its masks.
    running: Option<(String, Option<ClassTask>)>,
    /// The model and task the rows belong to.
    rows_of: Option<(String, Option<ClassTask>)>,
    /// The live search of the latest learned mask.
    pub steps: Vec<LearnStep>,
    /// Rows of the shown model and task: references and every graft made so far.
    pub rows: Vec<GraftRow>,
    /// Every mask of this session; the latest is shown.
    pub masks: Vec<KeptMask>,
    pub shown: Option<usize>,
    pub error: Option<String>,
    export: Option<JobHandle<(), PathBuf>>,
    pub export_status: Option<Result<String, String>>,
}

impl Default for GraftPanel {
    fn default() -> Self {
        Self {
            model: ENCODERS[0].to_string(),
            base: None,
            task: ClassTask::Sentiment,
            log_sparsity: -4.0,
            learn: LearnOptions::default(),
            job: None,
            queue: VecDeque::new(),
            running: None,
            rows_of: None,
            steps: Vec::new(),
            rows: Vec::new(),
            masks: Vec::new(),
            shown: None,
            error: None,
            export: None,
            export_status: None,
        }
    }
}

impl GraftPanel {
    pub fn sparsity(&self) -> f64 {
        10f64.powf(self.log_sparsity)
    }

    pub fn is_multi_task(&self) -> bool {
        self.model == MULTI_TASK
    }

    pub fn is_running(&self) -> bool {
        self.job.is_some()
    }

    pub fn job_id(&self) -> Option<crate::jobs::JobId> {
        self.job.as_ref().map(|j| j.id())
    }

    fn request(&self, model: &str, task: Option<ClassTask>) -> GraftRequest {
        let mut r = GraftRequest::new(model);
        r.task = task;
        if model == self.model {
            r.base = self.base.clone();
        }
        r.learn = self.learn.clone();
        r
    }

    fn task_arg(&self) -> Option<ClassTask> {
        self.is_multi_task().then_some(self.task)
    }

    /// Learns one mask at the chosen sparsity.
    pub fn learn(&mut self, board: &JobBoard) {
        let mut r = self.request(&self.model, self.task_arg());
        r.sparsities = vec![self.sparsity()];
        self.start(board, vec![r]);
    }

    /// Top-k, random and DARE at the four sparsities of the paper's range, then learned masks at
    /// each: the curves of accuracy against sparsity.
    pub fn sweep(&mut self, board: &JobBoard) {
        let mut quick = self.request(&self.model, self.task_arg());
        quick.methods = vec![GraftMethod::Topk, GraftMethod::Random, GraftMethod::Dare];
        quick.sparsities = SPARSITIES.to_vec();
        let mut learned = self.request(&self.model, self.task_arg());
        learned.sparsities = SPARSITIES.to_vec();
        self.start(board, vec![quick, learned]);
    }

    /// Learned masks of every single-task MiniLM fine-tune and of the multi-task model per
    /// task, at the chosen sparsity: the overlap matrix.
    pub fn all_tasks(&mut self, board: &JobBoard) {
        let sparsity = self.sparsity();
        let mut requests = Vec::new();
        for model in ENCODERS {
            requests.push((model.to_string(), None));
        }
        for task in ClassTask::SINGLE {
            requests.push((MULTI_TASK.to_string(), Some(task)));
        }
        let requests = requests
            .into_iter()
            .map(|(m, t)| {
                let mut r = self.request(&m, t);
                r.sparsities = vec![sparsity];
                r.eval = false;
                r
            })
            .collect();
        self.start(board, requests);
    }

    fn start(&mut self, board: &JobBoard, requests: Vec<GraftRequest>) {
        self.cancel(board);
        self.queue = requests.into();
        self.error = None;
        self.next(board);
    }

    fn next(&mut self, board: &JobBoard) {
        let Some(request) = self.queue.pop_front() else {
            return;
        };
        self.running = Some((request.finetuned.clone(), request.task));
        self.steps.clear();
        self.job = Some(spawn_graft(board, request));
    }

    pub fn cancel(&mut self, board: &JobBoard) {
        self.queue.clear();
        if let Some(job) = self.job.take() {
            board.cancel(job.id());
        }
    }

    /// Rows of the shown model; references are replaced, grafts accumulate.
    fn add_row(&mut self, row: GraftRow) {
        let shown = Some((self.model.clone(), self.task_arg()));
        if self.running != shown {
            return;
        }
        if self.rows_of != shown {
            // Another model's rows would mix into the curves.
            self.rows.clear();
            self.rows_of = shown;
        }
        if row.method.is_none() {
            self.rows.retain(|r| r.label != row.label);
        } else {
            self.rows
                .retain(|r| !(r.method == row.method && r.sparsity == row.sparsity));
        }
        self.rows.push(row);
        // The fine-tune, no graft, then grafts by sparsity, methods in their list order.
        let key = |r: &GraftRow| match r.method {
            None => (0, -r.sparsity, 0),
            Some(m) => (
                1,
                r.sparsity,
                GraftMethod::ALL.iter().position(|x| *x == m).unwrap_or(0),
            ),
        };
        self.rows.sort_by(|a, b| {
            key(a)
                .partial_cmp(&key(b))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
    }

    fn take_results(&mut self, board: &JobBoard) {
        if let Some(job) = &self.export {
            if let Some(result) = job.take_result() {
                self.export = None;
                self.export_status = Some(
                    result
                        .map(|dir| format!("wrote {}", dir.display()))
                        .map_err(|e| e.to_string()),
                );
            }
        }
        let Some(job) = &self.job else { return };
        // The result first: once it is in, every update has been sent and is drained here.
        let result = job.take_result();
        let updates = job.drain();
        let mut rows_seen = Vec::new();
        for update in updates {
            match update {
                GraftUpdate::Step { step, .. } => {
                    // A new search (the next sparsity of a sweep) replaces the curve.
                    if step.step == 1 {
                        self.steps.clear();
                    }
                    self.steps.push(step);
                }
                GraftUpdate::Row(row) => rows_seen.push(row),
                GraftUpdate::Mask(_, mask) => {
                    let Some(row) = rows_seen.last().cloned() else {
                        continue;
                    };
                    let (model, task) = self.running.clone().unwrap_or_default();
                    let label = format!(
                        "{}{} · {} {}",
                        model,
                        task.map(|t| format!("/{}", t.name())).unwrap_or_default(),
                        row.label,
                        percent(row.sparsity)
                    );
                    self.masks.push(KeptMask {
                        label,
                        model,
                        task,
                        row,
                        mask,
                    });
                    self.shown = Some(self.masks.len() - 1);
                }
            }
        }
        for row in rows_seen {
            self.add_row(row);
        }
        if let Some(result) = result {
            self.job = None;
            match result {
                Ok(_) => self.next(board),
                Err(e) => {
                    self.queue.clear();
                    self.error = Some(e);
                }
            }
        }
    }

    /// Writes the shown mask and its grafted model under `out` as a job.
    pub fn export(&mut self, board: &JobBoard, out: PathBuf) {
        let Some(kept) = self.shown.and_then(|i| self.masks.get(i)) else {
            self.export_status = Some(Err("nothing to export: learn a mask first".into()));
            return;
        };
        self.export_status = None;
        let request = self.request(&kept.model, kept.task);
        self.export = Some(spawn_export(
            board,
            request,
            kept.mask.clone(),
            kept.row.clone(),
            out,
        ));
    }

    pub fn shown_mask(&self) -> Option<&KeptMask> {
        self.shown.and_then(|i| self.masks.get(i))
    }
}

impl Lab for GraftPanel {
    fn id(&self) -> &'static str {
        "graft"
    }
    fn name(&self) -> &'static str {
        "Graft"
    }
    fn title(&self) -> &'static str {
        "Skill localization by grafting"
    }
    fn description(&self) -> &'static str {
        "Panigrahi et al.: a binary mask γ over the fine-tuning delta keeps a tiny share of the \
         transformer-block parameters, θ_pre + γ·δ, and the graft keeps most of the task. \
         Learned masks start from the top-k |δ| and follow the task loss; random and DARE masks \
         keep as many."
    }
    fn poll(&mut self, ctx: &mut LabCtx) {
        self.take_results(ctx.board);
    }
    fn ui(&mut self, ui: &mut egui::Ui, ctx: &mut LabCtx) {
        view::ui(ui, self, ctx.board, ctx.picker);
    }
    fn save(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({
            "model": self.model, "task": self.task, "log_sparsity": self.log_sparsity,
            "learn": self.learn,
        }))
    }
    fn restore(&mut self, saved: serde_json::Value) {
        if let Some(m) = saved["model"].as_str() {
            self.model = m.to_string();
        }
        if let Ok(t) = serde_json::from_value(saved["task"].clone()) {
            self.task = t;
        }
        if let Some(s) = saved["log_sparsity"].as_f64() {
            self.log_sparsity = s.clamp(-5.0, -2.0);
        }
        if let Ok(l) = serde_json::from_value(saved["learn"].clone()) {
            self.learn = l;
        }
    }
}
