//! What the app remembers between starts (eframe persistence).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::lm::GenerationConfig;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub dark: bool,
    /// The page shown ([`crate::ui::Lab::id`]); an unknown id shows the first page. (Named
    /// `lab`, not `page`: settings saved when `page` was an enum still load.)
    pub lab: String,
    /// Most recent first.
    pub recent_models: Vec<PathBuf>,
    /// The model opened at start (the shipped one if unset or missing).
    pub model: Option<PathBuf>,
    pub generation: GenerationConfig,
    /// Feed the message as is, without the chat template.
    pub raw_prompt: bool,
    /// A soft prompt (`soft_prompt.safetensors`) the Generate lab puts before every prompt.
    pub soft_prompt: Option<PathBuf>,
    /// What each page keeps between starts, by page id.
    pub labs: BTreeMap<String, serde_json::Value>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            dark: true,
            lab: String::new(),
            recent_models: Vec::new(),
            model: None,
            generation: GenerationConfig::default(),
            raw_prompt: false,
            soft_prompt: None,
            labs: BTreeMap::new(),
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
