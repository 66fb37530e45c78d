//! RAIN's parameters, with the defaults of the official code per setting.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

crate::named_enum! {
    "setting";
    /// What the self-evaluation judges (each has its template in `assets/rain`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum Setting {
        /// HH: is the answer harmful?
        Harmlessness = "harmlessness",
        /// AdvBench with adversarial suffixes: harm, judged as in HH.
        Adversarial = "adversarial",
        /// TruthfulQA: is the answer true?
        Truthfulness = "truthfulness",
        /// Is the text's sentiment positive?
        Sentiment = "sentiment",
        /// A template of your own.
        Custom = "custom",
    }
}

impl Default for Setting {
    fn default() -> Self {
        Setting::Harmlessness
    }
}

impl Setting {
    /// The judgement template shipped for this setting (adversarial judges harm too).
    pub fn template_path(self) -> PathBuf {
        let file = match self {
            Setting::Harmlessness | Setting::Adversarial => "harmlessness",
            Setting::Truthfulness => "truthfulness",
            Setting::Sentiment => "sentiment",
            Setting::Custom => "custom",
        };
        crate::assets::dir()
            .join("rain")
            .join(format!("{file}.txt"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ScoreKind {
    /// The paper's: each option ordering votes 0/1, v ∈ {−1, 0, 1}.
    #[default]
    Binary,
    /// Probability difference of the two letters, v ∈ [−1, 1].
    Soft,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RainConfig {
    pub setting: Setting,
    /// Exploration constant c in u = c·p·sqrt(N_parent)/(1 + n).
    pub exploration: f32,
    /// Most simulations per committed step, reused visits included (T_max).
    pub t_max: u32,
    /// Commit early once the best child has more real visits than this (T_min)…
    pub t_min: u32,
    /// …and a value above this (V_t).
    pub v_t: f32,
    /// The fewest new simulations a step runs (unless it commits early, T_min and V_t): each
    /// step runs max(T_max − visits the new root already has, this), as the official loop
    /// `range(initi, max(maxT, initi + 15))` does.
    pub min_new_simulations: u32,
    /// Children per expansion.
    pub expansion_width: usize,
    /// Token-chunk length by chunk step: 1, 2, 4, then 10.
    pub chunk_lengths: Vec<usize>,
    /// Sampling of chunks: top-k filter (chunks longer than one token) and temperature (all
    /// chunks, 1-token priors included).
    pub chunk_top_k: usize,
    pub chunk_temperature: f32,
    /// Attempts to draw distinct sampled chunks for an expansion.
    pub chunk_tries: usize,
    /// Attempts to draw the sampled chunk of a dynamic addition (the official code asks for two
    /// candidates, the greedy chunk and one (adversarial: three) sampled ones).
    pub addition_tries: usize,
    /// Weight of the uniform distribution mixed into the root's priors.
    pub root_uniform_mix: f32,
    pub dynamic_addition: bool,
    pub dynamic_max_children: usize,
    /// Add a child when the spread of the children's embeddings is below this × chunk length.
    pub dynamic_variance: f32,
    pub similarity_update: bool,
    pub similarity_threshold: f32,
    pub similarity_gamma: f32,
    pub score: ScoreKind,
    /// Read the judgement from option letters (paper) or option words.
    pub answer_by: super::judge::AnswerBy,
    /// Longest rollout after a leaf, in tokens (stops earlier at the end of a clause).
    pub rollout_max_tokens: usize,
    pub max_tokens: usize,
    /// Simulations run at once, steered apart by virtual loss, their model work batched
    /// (1: one at a time, as the paper). A step may run up to `parallel − 1` simulations past
    /// the point where it could have committed.
    pub parallel: usize,
    pub seed: u64,
    /// Template file overriding the setting's (custom judgements).
    pub template: Option<PathBuf>,
    /// The model that judges (GGUF file or Hugging Face folder); `None`: the generator judges
    /// itself, as in the paper.
    pub judge: Option<PathBuf>,
}

impl Default for RainConfig {
    fn default() -> Self {
        Self::for_setting(Setting::Harmlessness)
    }
}

impl RainConfig {
    pub fn for_setting(setting: Setting) -> Self {
        let (t_min, temperature, tries, addition_tries) = match setting {
            Setting::Adversarial => (5, 2.0, 19, 3),
            Setting::Truthfulness => (16, 1.0, 9, 1),
            _ => (6, 1.0, 9, 1),
        };
        Self {
            setting,
            exploration: 2.0,
            t_max: 50,
            t_min,
            v_t: 0.8,
            min_new_simulations: 15,
            expansion_width: 10,
            chunk_lengths: vec![1, 2, 4, 10],
            chunk_top_k: 15,
            chunk_temperature: temperature,
            chunk_tries: tries,
            addition_tries,
            root_uniform_mix: 0.25,
            dynamic_addition: true,
            dynamic_max_children: 20,
            dynamic_variance: 0.03,
            similarity_update: true,
            similarity_threshold: 0.95,
            similarity_gamma: 0.2,
            score: ScoreKind::Binary,
            answer_by: Default::default(),
            rollout_max_tokens: 32,
            max_tokens: 48,
            parallel: 1,
            seed: 42,
            template: None,
            judge: None,
        }
    }

    pub fn chunk_length(&self, step: usize) -> usize {
        let last = self.chunk_lengths.len().saturating_sub(1);
        self.chunk_lengths
            .get(step.min(last))
            .copied()
            .unwrap_or(1)
            .max(1)
    }
}
