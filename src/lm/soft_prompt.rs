//! A soft prompt: learned input embeddings put before the tokens (prompt tuning), as
//! `train::finetune --method prompt` saves it (`soft_prompt.safetensors`, one `[n, hidden]`
//! tensor named `soft_prompt`). A [`super::Session`] made with one runs it at positions
//! `0..n`, as the training forward pass does.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};

use super::error::{LmError, Result};

/// The tensor name in the file.
pub const TENSOR: &str = "soft_prompt";
/// The file name beside an exported model.
pub const FILE: &str = "soft_prompt.safetensors";

#[derive(Debug, Clone, PartialEq)]
pub struct SoftPrompt {
    /// Where it was read from (shown in panels and run records).
    pub path: PathBuf,
    /// `[len, hidden]`, row-major.
    rows: Vec<f32>,
    hidden: usize,
}

impl SoftPrompt {
    /// Reads the `soft_prompt` tensor of a safetensors file (any float type, kept as f32).
    pub fn load(path: &Path) -> Result<Self> {
        let bad = |problem: String| LmError::file(path, problem);
        let tensors = candle_core::safetensors::load(path, &Device::Cpu)
            .map_err(|e| bad(format!("not a readable safetensors file ({e})")))?;
        let t = tensors.get(TENSOR).ok_or_else(|| {
            let mut names: Vec<_> = tensors.keys().cloned().collect();
            names.sort();
            bad(format!(
                "no `{TENSOR}` tensor (the file holds: {})",
                if names.is_empty() {
                    "nothing".into()
                } else {
                    names.join(", ")
                }
            ))
        })?;
        let (len, hidden) = t.dims2().map_err(|_| {
            bad(format!(
                "`{TENSOR}` has shape {:?}, not [length, hidden]",
                t.dims()
            ))
        })?;
        if len == 0 || !t.dtype().is_float() {
            return Err(bad(format!(
                "`{TENSOR}` must be a non-empty float matrix (it is {:?} {:?})",
                t.dtype(),
                t.dims()
            )));
        }
        let rows: Vec<f32> = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        if let Some(i) = rows.iter().position(|v| !v.is_finite()) {
            return Err(bad(format!(
                "`{TENSOR}` holds a non-finite value at row {}",
                i / hidden
            )));
        }
        Ok(Self {
            path: path.to_path_buf(),
            rows,
            hidden,
        })
    }

    /// A soft prompt from `rows` (`len × hidden` values, row-major).
    pub fn from_rows(rows: Vec<f32>, hidden: usize, path: PathBuf) -> Self {
        assert!(hidden > 0 && rows.len().is_multiple_of(hidden) && !rows.is_empty());
        Self { path, rows, hidden }
    }

    /// How many positions it takes.
    pub fn len(&self) -> usize {
        self.rows.len() / self.hidden
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn hidden(&self) -> usize {
        self.hidden
    }

    pub fn rows(&self) -> &[f32] {
        &self.rows
    }
}
