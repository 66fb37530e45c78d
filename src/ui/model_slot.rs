//! The loaded language model, shared by the labs, and its loading job.

use std::path::PathBuf;
use std::sync::Arc;

use crate::jobs::{JobBoard, JobHandle};
use crate::lm::tasks::{spawn_load, Loaded};
use crate::lm::LanguageModel;

#[derive(Default)]
pub struct ModelSlot {
    pub model: Option<Arc<LanguageModel>>,
    loading: Option<(PathBuf, JobHandle<(), Loaded>)>,
    /// Why the last load failed (shown next to the model picker).
    pub error: Option<String>,
}

impl ModelSlot {
    pub fn load(&mut self, board: &JobBoard, path: PathBuf) {
        if let Some((_, old)) = self.loading.take() {
            old.cancel();
        }
        self.error = None;
        self.loading = Some((path.clone(), spawn_load(board, path)));
    }

    pub fn loading_path(&self) -> Option<&PathBuf> {
        self.loading.as_ref().map(|(p, _)| p)
    }

    /// Takes a finished load; returns the path when a model was loaded (for recent files).
    pub fn poll(&mut self) -> Option<PathBuf> {
        let result = self.loading.as_ref()?.1.take_result()?;
        let (path, _) = self.loading.take()?;
        match result {
            Ok(Loaded(model)) => {
                self.model = Some(model);
                Some(path)
            }
            Err(e) => {
                self.error = Some(e);
                None
            }
        }
    }
}
