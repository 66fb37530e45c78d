//! The Fine-tune page: pick a model and a chat data set, train it (LoRA, full or a soft
//! prompt) as a job with the loss curve growing live, then chat with the result in the
//! Generate lab. The job is `train::finetune::spawn_finetune`, as in `alignscope finetune`.

mod view;

use std::path::PathBuf;

use super::{Lab, LabCtx};
use crate::jobs::{JobBoard, JobHandle};
use crate::train::finetune::{
    spawn_finetune, FinetuneOutcome, FinetuneRequest, FinetuneStep, Method,
};

/// The shipped worked example (docs/finetune.md): answers in a pirate's voice.
fn example_data(name: &str) -> String {
    crate::assets::dir()
        .join("data/finetune")
        .join(name)
        .display()
        .to_string()
}

pub struct FinetunePanel {
    /// Empty: the model loaded in the app.
    pub model_input: String,
    pub data_input: String,
    pub eval_input: String,
    pub request: FinetuneRequest,
    job: Option<JobHandle<FinetuneStep, FinetuneOutcome>>,
    /// (step, loss) so far.
    pub losses: Vec<[f64; 2]>,
    pub tokens_per_second: f64,
    pub outcome: Option<Result<FinetuneOutcome, String>>,
    /// Where the last run writes its checkpoints (kept when it is cancelled).
    pub last_out: Option<PathBuf>,
}

impl Default for FinetunePanel {
    fn default() -> Self {
        let mut request = FinetuneRequest::new(PathBuf::new(), PathBuf::new(), Method::Lora);
        // Enough for the style to show in the answers (docs/finetune.md): 13 minutes on 2 cores.
        request.steps = 60;
        Self {
            model_input: String::new(),
            data_input: example_data("pirate-train.jsonl"),
            eval_input: example_data("pirate-eval.jsonl"),
            request,
            job: None,
            losses: Vec::new(),
            tokens_per_second: 0.0,
            outcome: None,
            last_out: None,
        }
    }
}

impl FinetunePanel {
    pub fn is_running(&self) -> bool {
        self.job.is_some()
    }

    pub fn job_id(&self) -> Option<crate::jobs::JobId> {
        self.job.as_ref().map(|j| j.id())
    }

    /// Starts the fine-tune of `model` (the input's path, else this one) into a new folder
    /// under the runs folder (or the system's temporary folder).
    pub fn start(&mut self, board: &JobBoard, loaded: Option<PathBuf>) {
        if self.is_running() {
            return;
        }
        let model = match self.model_input.trim() {
            "" => loaded.unwrap_or_else(crate::assets::default_model),
            typed => PathBuf::from(typed),
        };
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|t| t.as_millis())
            .unwrap_or(0);
        let folder = board
            .runs_dir()
            .cloned()
            .unwrap_or_else(std::env::temp_dir)
            .join("finetuned")
            .join(format!("{}-{stamp}", self.request.method));
        let mut request = self.request.clone();
        request.model = model;
        request.data = PathBuf::from(self.data_input.trim());
        request.eval = Some(self.eval_input.trim())
            .filter(|s| !s.is_empty())
            .map(PathBuf::from);
        request.out = Some(folder.clone());
        self.last_out = Some(folder);
        self.losses.clear();
        self.outcome = None;
        self.job = Some(spawn_finetune(board, request));
    }

    pub fn cancel(&self, board: &JobBoard) {
        if let Some(job) = &self.job {
            board.cancel(job.id());
        }
    }

    fn take_results(&mut self) {
        let Some(job) = &self.job else { return };
        for s in job.drain() {
            self.losses
                .push([s.report.step as f64, s.report.loss as f64]);
            self.tokens_per_second = s.tokens_per_second;
        }
        if let Some(r) = job.take_result() {
            self.outcome = Some(r);
            self.job = None;
        }
    }
}

impl Lab for FinetunePanel {
    fn id(&self) -> &'static str {
        "finetune"
    }
    fn name(&self) -> &'static str {
        "Fine-tune"
    }
    fn title(&self) -> &'static str {
        "Fine-tune a language model"
    }
    fn description(&self) -> &'static str {
        "Train the model on chat examples: LoRA adapters (merged on export), every weight, or a \
         soft prompt. The answers are learned, the prompts masked. Opens on a small set that \
         teaches SmolLM2 to answer like a pirate."
    }
    fn poll(&mut self, _ctx: &mut LabCtx) {
        self.take_results();
    }
    fn ui(&mut self, ui: &mut egui::Ui, ctx: &mut LabCtx) {
        view::ui(ui, self, ctx);
    }
}
