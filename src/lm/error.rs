//! Errors of the language-model runtime. Every message names the file and what is wrong with it.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LmError {
    #[error("{path}: {problem}")]
    File { path: PathBuf, problem: String },
    #[error("{path}: architecture `{arch}` is not supported (supported: {supported})")]
    UnsupportedArchitecture {
        path: PathBuf,
        arch: String,
        supported: &'static str,
    },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("chat template: {0}")]
    Template(String),
    #[error("the context is full: {len} tokens of {max}")]
    ContextFull { len: usize, max: usize },
    #[error("model computation: {0}")]
    Compute(#[from] candle_core::Error),
}

impl LmError {
    pub fn file(path: &Path, problem: impl std::fmt::Display) -> Self {
        Self::File {
            path: path.to_path_buf(),
            problem: problem.to_string(),
        }
    }
}

pub type Result<T> = std::result::Result<T, LmError>;
