//! The ProMoT page: pick a fine-tuning task and a method, run it as a job with both stages'
//! loss curves live, and compare the four models (base, fine-tune, prompt tuning, ProMoT) on
//! the target task and the in-context suite, with the format-specialisation rate, a bar chart
//! per task, and one few-shot chat answered by each side by side. The shipped results
//! (`assets/promot/TASK/METHOD/result.json`) show on the first visit; a run replaces its row.
//! Runs are `promot::run::spawn_promot`, as in `alignscope promot`.

mod view;

use std::collections::HashMap;
use std::path::PathBuf;

use super::{Lab, LabCtx};
use crate::jobs::{JobBoard, JobHandle};
use crate::promot::icl::IclTask;
use crate::promot::run::{
    dir, run_dir, spawn_promot, tuned_model, PromotMethod, PromotOutcome, PromotRequest,
    PromotStep, Stage, RESULT_FILE,
};
use crate::promot::tasks::PromotTask;

pub struct PromotPanel {
    pub task: PromotTask,
    pub method: PromotMethod,
    /// Schedule and base model of the next run (its task, method and folder are set on Run).
    pub request: PromotRequest,
    /// Where runs are written and results read (the shipped ones by default).
    pub root: PathBuf,
    job: Option<JobHandle<PromotStep, PromotOutcome>>,
    /// The running (or last) run's losses: (step, loss) per stage.
    pub prompt_losses: Vec<[f64; 2]>,
    pub model_losses: Vec<[f64; 2]>,
    /// The results of `task` by method, read from `root` (a file that cannot be read: why).
    pub results: HashMap<PromotMethod, Result<PromotOutcome, String>>,
    results_of: Option<(PromotTask, PathBuf)>,
    pub error: Option<String>,
    /// Open the run's model in the Generate lab when the running job ends.
    chat_after_run: bool,
    /// The question shown side by side.
    pub question_task: IclTask,
    pub question: usize,
}

impl Default for PromotPanel {
    fn default() -> Self {
        Self {
            task: PromotTask::Sentiment,
            method: PromotMethod::Promot,
            request: PromotRequest::new(PromotTask::Sentiment, PromotMethod::Promot),
            root: dir(),
            job: None,
            prompt_losses: Vec::new(),
            model_losses: Vec::new(),
            results: HashMap::new(),
            results_of: None,
            error: None,
            chat_after_run: false,
            // Where a fine-tune's specialisation shows at once ("positive" as the opposite of "light").
            question_task: IclTask::Opposite,
            question: 0,
        }
    }
}

impl PromotPanel {
    pub fn is_running(&self) -> bool {
        self.job.is_some()
    }

    pub fn job_id(&self) -> Option<crate::jobs::JobId> {
        self.job.as_ref().map(|j| j.id())
    }

    /// Runs the chosen method on the chosen task.
    pub fn run(&mut self, board: &JobBoard) {
        self.cancel(board);
        let mut r = self.request.clone();
        r.task = self.task;
        r.method = self.method;
        r.out = run_dir(&self.root, self.task, self.method);
        self.prompt_losses.clear();
        self.model_losses.clear();
        self.error = None;
        self.job = Some(spawn_promot(board, r));
    }

    pub fn cancel(&mut self, board: &JobBoard) {
        self.chat_after_run = false;
        if let Some(job) = self.job.take() {
            board.cancel(job.id());
        }
    }

    /// Reads the results of the shown task when the task or the folder changed.
    fn load_results(&mut self) {
        let key = (self.task, self.root.clone());
        if self.results_of.as_ref() == Some(&key) {
            return;
        }
        self.results.clear();
        for &m in PromotMethod::ALL {
            let path = run_dir(&self.root, self.task, m).join(RESULT_FILE);
            if path.exists() {
                self.results
                    .insert(m, PromotOutcome::read(&path).map_err(|e| format!("{e:#}")));
            }
        }
        self.results_of = Some(key);
        self.question = self.telling_question().unwrap_or(0);
    }

    /// The first question of the shown in-context task that the fine-tune answers with one of
    /// its task's labels while ProMoT answers it right: the paper's point in one chat.
    fn telling_question(&self) -> Option<usize> {
        let answers = |m: PromotMethod| -> Option<Vec<&crate::promot::icl::Answered>> {
            let o = self.results.get(&m)?.as_ref().ok()?;
            Some(
                o.icl
                    .answers
                    .iter()
                    .filter(|a| a.question.task == self.question_task)
                    .collect(),
            )
        };
        let (finetune, promot) = (
            answers(PromotMethod::Finetune)?,
            answers(PromotMethod::Promot)?,
        );
        let labels = self.task.labels();
        (0..finetune.len().min(promot.len())).find(|&i| {
            promot[i].correct && crate::promot::icl::in_labels(&finetune[i].got, &labels)
        })
    }

    /// What "Chat with it" opens for the chosen method: its model (the Q8_0 export, else the
    /// folder) and, for prompt tuning, the soft prompt; `None` until the weights are built here.
    pub fn chat_files(&self) -> Option<(PathBuf, Option<PathBuf>)> {
        let dir = run_dir(&self.root, self.task, self.method);
        let prompt = dir.join(crate::lm::soft_prompt::FILE);
        match self.method {
            PromotMethod::Base => Some((self.request.model.clone(), None)),
            PromotMethod::Prompt => prompt
                .exists()
                .then(|| (self.request.model.clone(), Some(prompt))),
            PromotMethod::Finetune | PromotMethod::Promot => tuned_model(&dir).map(|m| (m, None)),
        }
    }

    /// Opens the chosen method's model in the Generate lab, building it first if needed.
    pub fn chat(&mut self, ctx: &mut LabCtx) {
        match self.chat_files() {
            Some((model, prompt)) => {
                ctx.model.load(ctx.board, model);
                ctx.settings.soft_prompt = prompt;
                ctx.settings.lab = "generate".into();
            }
            None => {
                self.run(ctx.board);
                self.chat_after_run = true;
            }
        }
    }

    /// The readable results in method order.
    pub fn rows(&self) -> Vec<(PromotMethod, &PromotOutcome)> {
        PromotMethod::ALL
            .iter()
            .filter_map(|m| match self.results.get(m) {
                Some(Ok(o)) => Some((*m, o)),
                _ => None,
            })
            .collect()
    }

    fn take_results(&mut self, ctx: &mut LabCtx) {
        let Some(job) = &self.job else { return };
        let result = job.take_result();
        for s in job.drain() {
            let point = [s.step.report.step as f64, s.step.report.loss as f64];
            match s.stage {
                Stage::Prompt => self.prompt_losses.push(point),
                Stage::Model => self.model_losses.push(point),
            }
        }
        if let Some(result) = result {
            self.job = None;
            match result {
                Ok(outcome) => {
                    if outcome.request.task == self.task {
                        self.results.insert(outcome.request.method, Ok(outcome));
                    }
                    if std::mem::take(&mut self.chat_after_run) {
                        self.chat(ctx);
                    }
                }
                Err(e) => {
                    self.chat_after_run = false;
                    self.error = Some(e);
                }
            }
        }
    }
}

impl Lab for PromotPanel {
    fn id(&self) -> &'static str {
        "promot"
    }
    fn name(&self) -> &'static str {
        "ProMoT"
    }
    fn title(&self) -> &'static str {
        "ProMoT: fine-tuning without losing in-context ability"
    }
    fn description(&self) -> &'static str {
        "Wang et al.: fine-tuning SmolLM2 on one rigid format can make it answer every chat in \
         that format. ProMoT tunes a soft prompt first, then the model with the prompt frozen in \
         front; the prompt is left out for other tasks."
    }
    fn poll(&mut self, ctx: &mut LabCtx) {
        self.load_results();
        self.take_results(ctx);
    }
    fn ui(&mut self, ui: &mut egui::Ui, ctx: &mut LabCtx) {
        view::ui(ui, self, ctx);
    }
    fn save(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({
            "task": self.task, "method": self.method,
            "steps": self.request.steps, "prompt_steps": self.request.prompt_steps,
        }))
    }
    fn restore(&mut self, saved: serde_json::Value) {
        if let Ok(t) = serde_json::from_value(saved["task"].clone()) {
            self.task = t;
        }
        if let Ok(m) = serde_json::from_value(saved["method"].clone()) {
            self.method = m;
        }
        if let Some(s) = saved["steps"].as_u64() {
            self.request.steps = (s as usize).clamp(1, 1000);
        }
        if let Some(s) = saved["prompt_steps"].as_u64() {
            self.request.prompt_steps = (s as usize).clamp(1, 5000);
        }
    }
}
