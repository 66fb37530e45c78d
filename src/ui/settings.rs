//! What the app remembers between starts (eframe persistence).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::lm::GenerationConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Page {
    #[default]
    Generate,
    Rain,
    Zoo,
    Delta,
    Fusion,
    Jobs,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub dark: bool,
    pub page: Page,
    pub nav_open: bool,
    /// Most recent first.
    pub recent_models: Vec<PathBuf>,
    /// The model opened at start (the shipped one if unset or missing).
    pub model: Option<PathBuf>,
    pub generation: GenerationConfig,
    /// Feed the message as is, without the chat template.
    pub raw_prompt: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            dark: true,
            page: Page::Generate,
            nav_open: true,
            recent_models: Vec::new(),
            model: None,
            generation: GenerationConfig::default(),
            raw_prompt: false,
        }
    }
}

impl Settings {
    pub fn remember_model(&mut self, path: PathBuf) {
        self.recent_models.retain(|p| p != &path);
        self.recent_models.insert(0, path.clone());
        self.recent_models.truncate(8);
        self.model = Some(path);
    }
}
