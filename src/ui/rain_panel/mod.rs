//! The RAIN lab: run a search and watch its tree grow, step it one simulation at a time,
//! inspect nodes, compare with the vanilla answer, open a saved trace and scrub through it.

mod view;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::jobs::{JobBoard, JobHandle};
use crate::lm::generate::GeneratedToken;
use crate::lm::tasks::{spawn_generate, GenerateOutcome, GenerateRequest};
use crate::lm::{GenerationConfig, LanguageModel, SamplingParams};
use crate::rain::events::Event;
use crate::rain::replay::Replay;
use crate::rain::task::{spawn_rain, RainRequest, SearchControl};
use crate::rain::{read_trace, RainConfig, RainOutcome, Setting};

use super::widgets::tree_view::TreeViewState;
use super::{Lab, LabCtx};

/// The page's answers are short, so a whole search can be watched in seconds (the CLI keeps
/// the setting's cap).
const DEMO_MAX_TOKENS: usize = 16;

/// The shipped demo: a trace and the vanilla answer to the same prompt (assets/rain/demo).
#[derive(serde::Deserialize)]
struct DemoInfo {
    trace: String,
    vanilla: String,
}

/// Playing a trace back as if it were live, `events_per_second` at a time.
pub struct Playback {
    pub events_per_second: f32,
    /// Events owed from earlier frames (fractions carry over).
    owed: f32,
}

/// What the page keeps between starts.
#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    prompt: String,
    config: RainConfig,
}

pub struct RainPanel {
    pub prompt: String,
    pub config: RainConfig,
    job: Option<JobHandle<Event, RainOutcome>>,
    control: Arc<SearchControl>,
    vanilla: Option<JobHandle<GeneratedToken, GenerateOutcome>>,
    pub vanilla_text: String,
    /// Every event of the search shown (live or from a trace).
    pub events: Vec<Event>,
    /// The tree after `shown()` events.
    pub replay: Replay,
    /// `Some(k)`: showing the state after the first k events (scrubbing); `None`: the latest.
    pub scrub: Option<usize>,
    pub view: TreeViewState,
    pub trace_input: String,
    /// The judge as typed: empty or `self` for self-evaluation, else a shipped judge's name or
    /// a model file or folder.
    pub judge_input: String,
    /// Where the running search writes its trace.
    pub trace_dir: Option<PathBuf>,
    pub last_trace: Option<PathBuf>,
    pub error: Option<String>,
    pub outcome: Option<RainOutcome>,
    /// Playing the shown events back (the demo).
    pub playback: Option<Playback>,
    /// The demo starts by itself the first time the page is shown with nothing on it.
    demo_offered: bool,
}

impl Default for RainPanel {
    fn default() -> Self {
        Self {
            prompt: "Write one sentence about the sea.".into(),
            config: RainConfig {
                max_tokens: DEMO_MAX_TOKENS,
                ..RainConfig::for_setting(Setting::Sentiment)
            },
            job: None,
            control: Arc::new(SearchControl::default()),
            vanilla: None,
            vanilla_text: String::new(),
            events: Vec::new(),
            replay: Replay::default(),
            scrub: None,
            view: TreeViewState::default(),
            trace_input: String::new(),
            judge_input: String::new(),
            trace_dir: None,
            last_trace: None,
            error: None,
            outcome: None,
            playback: None,
            demo_offered: false,
        }
    }
}

impl RainPanel {
    pub fn is_running(&self) -> bool {
        self.job.is_some()
    }

    pub fn is_paused(&self) -> bool {
        self.control.is_paused()
    }

    /// Starts a search (paused if `paused`: then Step runs one simulation at a time) and the
    /// vanilla answer for the same prompt beside it.
    pub fn start(&mut self, board: &JobBoard, model: &Arc<LanguageModel>, paused: bool) {
        if self.is_running() {
            return;
        }
        self.reset_view();
        self.playback = None;
        self.error = None;
        self.outcome = None;
        self.control = Arc::new(if paused {
            SearchControl::paused()
        } else {
            SearchControl::default()
        });
        let trace = self.trace_dir.as_ref().map(|d| {
            let _ = std::fs::create_dir_all(d);
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|t| t.as_millis())
                .unwrap_or(0);
            d.join(format!("rain-{stamp}.jsonl"))
        });
        self.last_trace = trace.clone();
        let judge = self.judge_input.trim();
        self.config.judge = (!judge.is_empty() && judge != "self").then(|| PathBuf::from(judge));
        let request = RainRequest {
            prompt: self.prompt.clone(),
            config: self.config.clone(),
            trace,
            control: self.control.clone(),
        };
        self.job = Some(spawn_rain(board, model.clone(), request));
        let ids = model.chat_ids(&self.prompt);
        match ids {
            Ok(prompt_ids) => {
                let config = GenerationConfig {
                    max_tokens: self.config.max_tokens,
                    sampling: SamplingParams {
                        seed: self.config.seed,
                        ..SamplingParams::greedy()
                    },
                };
                let request = GenerateRequest {
                    prompt_label: self.prompt.clone(),
                    prompt_ids,
                    config,
                    soft_prompt: None,
                };
                self.vanilla_text.clear();
                self.vanilla = Some(spawn_generate(board, model.clone(), None, request));
            }
            Err(e) => self.error = Some(e.to_string()),
        }
    }

    pub fn toggle_pause(&self) {
        self.control.set_paused(!self.control.is_paused());
    }

    /// One more simulation (starts a paused search if none runs).
    pub fn step(&mut self, board: &JobBoard, model: &Arc<LanguageModel>) {
        if !self.is_running() {
            self.start(board, model, true);
        }
        self.control.set_paused(true);
        self.control.step();
    }

    pub fn stop(&self) {
        if let Some(job) = &self.job {
            job.cancel();
        }
        if let Some(v) = &self.vanilla {
            v.cancel();
        }
    }

    fn reset_view(&mut self) {
        self.events.clear();
        self.replay = Replay::default();
        self.scrub = None;
        self.view = TreeViewState::default();
    }

    /// Takes new events and results from the jobs.
    pub fn take_results(&mut self) {
        if let Some(job) = &self.job {
            let new = job.drain();
            for e in &new {
                if self.scrub.is_none() {
                    self.replay.apply(e);
                }
            }
            self.events.extend(new);
            if let Some(result) = job.take_result() {
                match result {
                    Ok(outcome) => self.outcome = Some(outcome),
                    Err(e) if e == "cancelled" => {}
                    Err(e) => self.error = Some(e),
                }
                self.job = None;
            }
        }
        if let Some(v) = &self.vanilla {
            for t in v.drain() {
                self.vanilla_text.push_str(&t.text);
            }
            if v.take_result().is_some() {
                self.vanilla = None;
            }
        }
    }

    /// Shows the state after the first `k` events (`None`: follow the latest).
    pub fn set_scrub(&mut self, k: Option<usize>) {
        self.scrub = k.filter(|&k| k < self.events.len());
        let n = self.scrub.unwrap_or(self.events.len());
        self.replay = Replay::from_events(&self.events[..n]);
    }

    /// The number of events shown.
    pub fn shown(&self) -> usize {
        self.scrub.unwrap_or(self.events.len())
    }

    /// Opens the shipped demo (a search judged by the harm judge that rewinds into a refusal)
    /// and plays it from the first event, the vanilla answer beside it.
    pub fn play_demo(&mut self) {
        let dir = crate::assets::dir().join("rain").join("demo");
        let info = dir.join("demo.json");
        let info: DemoInfo = match crate::fs::read_json(&info, "a RAIN demo description") {
            Ok(i) => i,
            Err(e) => {
                self.error = Some(format!("{e:#}"));
                return;
            }
        };
        self.open_trace(&dir.join(&info.trace));
        if self.error.is_none() {
            self.vanilla_text = info.vanilla;
            self.set_scrub(Some(0));
            self.playback = Some(Playback {
                events_per_second: 40.0,
                owed: 0.0,
            });
        }
    }

    /// Plays the demo on the page's first showing, unless something is already on it.
    pub fn offer_demo(&mut self) {
        if !self.demo_offered {
            self.demo_offered = true;
            if self.events.is_empty() && !self.is_running() {
                self.play_demo();
            }
        }
    }

    /// Moves a playback on by `dt` seconds; at the end it follows the latest event again.
    pub fn advance_playback(&mut self, dt: f32) {
        let Some(p) = &mut self.playback else { return };
        p.owed += p.events_per_second * dt;
        // Saturating: "skip to end" plays at an infinite rate.
        let due = p.owed.floor().min(1e9) as usize;
        p.owed = p.owed.fract();
        let from = self.shown();
        let to = from.saturating_add(due).min(self.events.len());
        for e in &self.events[from..to] {
            self.replay.apply(e);
        }
        if to >= self.events.len() {
            self.scrub = None;
            self.playback = None;
        } else {
            self.scrub = Some(to);
        }
    }

    pub fn open_trace(&mut self, path: &Path) {
        if self.is_running() {
            self.error = Some("stop the running search before opening a trace".into());
            return;
        }
        match read_trace(path) {
            Ok(events) => {
                self.reset_view();
                self.playback = None;
                self.events = events;
                self.vanilla_text.clear();
                self.outcome = None;
                self.error = None;
                if let Some(Event::Started {
                    prompt, setting, ..
                }) = self.events.first()
                {
                    self.prompt = prompt.clone();
                    if let Ok(setting) = setting.parse() {
                        self.config.setting = setting;
                    }
                }
                self.set_scrub(None);
                self.last_trace = Some(path.to_path_buf());
            }
            Err(e) => self.error = Some(format!("{e:#}")),
        }
    }
}

impl Lab for RainPanel {
    fn id(&self) -> &'static str {
        "rain"
    }
    fn name(&self) -> &'static str {
        "RAIN"
    }
    fn title(&self) -> &'static str {
        "RAIN: rewindable auto-regressive inference"
    }
    fn description(&self) -> &'static str {
        "The model searches over its own partial answers, judges them and rewinds (Li et al.). \
         Watch the tree grow, step it one simulation at a time, inspect any node, replay a trace."
    }
    fn poll(&mut self, _ctx: &mut LabCtx) {
        self.take_results();
    }
    fn ui(&mut self, ui: &mut egui::Ui, ctx: &mut LabCtx) {
        view::ui(ui, self, ctx);
    }
    fn save(&self) -> Option<serde_json::Value> {
        serde_json::to_value(Saved {
            prompt: self.prompt.clone(),
            config: self.config.clone(),
        })
        .ok()
    }
    fn restore(&mut self, saved: serde_json::Value) {
        if let Ok(s) = serde_json::from_value::<Saved>(saved) {
            self.prompt = s.prompt;
            self.judge_input = s
                .config
                .judge
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            self.config = s.config;
        }
    }
}

impl RainPanel {
    /// Who judges the search shown: "self" or the judge model's name (from its trace).
    pub fn judge_name(&self) -> Option<&str> {
        match self.events.first() {
            Some(Event::Started { judge, .. }) if !judge.is_empty() => Some(judge),
            _ => None,
        }
    }
}
