//! A zoo decoder fine-tune (byte-level llama) ready for grafting: the fine-tune in the
//! differentiable forward of `train::llama`, the task loss on the answer bytes, and exact match
//! measured as the zoo measures it (greedy answers from our runtime, written to a scratch
//! folder). Eligible tensors are the blocks (`model.layers.*`); embeddings, final norm and head
//! keep their fine-tuned values.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{ensure, Result};
use candle_core::Tensor;
use candle_nn::VarMap;

use super::model::{eligible_tensors, place_in, save_folder, Eligible, Graftable, SetScore};
use crate::data::{Example, TextTask};
use crate::eval::decoder::exact_match_eval;
use crate::fs::ScratchDir;
use crate::lm::LanguageModel;
use crate::train::llama::{LlamaShape, TrainLlama};
use crate::train::nn::masked_cross_entropy;
use crate::zoo::decoder::{batch_tensors, example_ids};

pub struct DecoderGraft {
    finetuned_dir: PathBuf,
    varmap: VarMap,
    model: TrainLlama,
    config: serde_json::Value,
    eligible: Vec<Eligible>,
    task: TextTask,
    scratch: ScratchDir,
}

/// `(layer, module)` of a llama block tensor: `layer 2`, and `q`, `k`, `v`, `o`, `mlp in`
/// (gate and up), `mlp out` or `norm`.
pub fn place(name: &str) -> (String, String) {
    place_in(
        name,
        "layers.",
        &[
            ("norm", "norm"),
            ("q_proj", "q"),
            ("k_proj", "k"),
            ("v_proj", "v"),
            ("o_proj", "o"),
            ("gate_proj", "mlp in"),
            ("up_proj", "mlp in"),
        ],
    )
}

impl DecoderGraft {
    pub fn load(base: &Path, finetuned: &Path, task: TextTask) -> Result<Self> {
        let (_, config): (serde_json::Value, _) = crate::eval::classifier::read_config(finetuned)?;
        let shape = LlamaShape::from_hf_config(&config)
            .map_err(|e| anyhow::anyhow!("{}: not a llama config: {e}", finetuned.display()))?;
        let varmap = VarMap::new();
        let model = TrainLlama::new(shape, crate::train::seeded_builder(&varmap, 0))?;
        let weights = finetuned.join(crate::checkpoint::SINGLE_FILE);
        let missing = crate::train::load_into(&varmap, &weights, "")?;
        ensure!(
            missing.is_empty(),
            "{}: not a llama model, it lacks {}",
            weights.display(),
            crate::text::elide(&missing.join(", "), 200)
        );
        let eligible = eligible_tensors(&varmap, base, finetuned, |n| n.contains("model.layers."))?;
        Ok(Self {
            finetuned_dir: finetuned.to_path_buf(),
            varmap,
            model,
            config,
            eligible,
            task,
            scratch: ScratchDir::new()?,
        })
    }

    /// The model as it is set, in our runtime (through a scratch folder).
    fn runtime(&self) -> Result<Arc<LanguageModel>> {
        let dir = self.scratch.path().join("model");
        self.save(&dir)?;
        Ok(Arc::new(LanguageModel::load(&dir)?))
    }
}

impl Graftable for DecoderGraft {
    type Row = Example;

    fn eligible(&self) -> &[Eligible] {
        &self.eligible
    }

    /// Cross-entropy on the answer bytes and the end token, as the zoo fine-tunes were trained.
    fn loss(&self, rows: &[Example]) -> Result<Tensor> {
        let ids: Vec<(Vec<u32>, usize)> = rows
            .iter()
            .map(|e| example_ids(&e.prompt, &e.answer))
            .collect();
        let (inputs, targets, weights) = batch_tensors(&ids)?;
        let logits = self.model.forward(&inputs)?.flatten_to(1)?;
        Ok(masked_cross_entropy(&logits, &targets, &weights)?)
    }

    fn accuracy(&self, rows: &[Example]) -> Result<f64> {
        Ok(exact_match_eval(&self.runtime()?, rows, self.task.max_answer_bytes() + 2)?.0)
    }

    /// Exact match and the answer loss; decoders have no calibration here.
    fn score(&self, rows: &[Example]) -> Result<SetScore> {
        let mut loss = 0.0;
        for chunk in rows.chunks(64) {
            loss += self.loss(chunk)?.to_scalar::<f32>()? as f64 * chunk.len() as f64;
        }
        Ok(SetScore {
            accuracy: self.accuracy(rows)?,
            ece: f64::NAN,
            loss: loss / rows.len().max(1) as f64,
            reliability: Vec::new(),
        })
    }

    fn save(&self, out: &Path) -> Result<()> {
        save_folder(&self.varmap, &self.config, &self.finetuned_dir, out)
    }

    fn place(&self, name: &str) -> (String, String) {
        place(name)
    }
}
