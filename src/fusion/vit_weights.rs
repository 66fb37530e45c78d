//! A ViT classifier folder as plain f32 arrays by name: what fusion reads, averages and writes.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};

use crate::eval::classifier::read_config;
use crate::train::vit::{TrainVit, VitShape};

/// One stored tensor, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Param {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        Self { shape, data }
    }

    /// Rows are the first axis; everything after it is one row (a conv kernel's `[out, c, p, p]`
    /// is `out` rows of `c·p·p`).
    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }

    pub fn row_len(&self) -> usize {
        self.data.len() / self.rows().max(1)
    }
}

#[derive(Debug, Clone)]
pub struct VitWeights {
    pub shape: VitShape,
    pub labels: Vec<String>,
    pub params: BTreeMap<String, Param>,
}

pub const EMBEDDINGS: &str = "vit.embeddings";

/// The name of a parameter of encoder layer `l`, e.g. `layer(2, "attention.attention.query")`.
pub fn layer(l: usize, module: &str) -> String {
    format!("vit.encoder.layer.{l}.{module}")
}

impl VitWeights {
    pub fn load(dir: &Path) -> Result<Self> {
        let (raw, _): (serde_json::Value, _) = read_config(dir)?;
        let config = dir.join("config.json");
        ensure!(
            raw["model_type"] == "vit",
            "{}: not a ViT (model_type {})",
            config.display(),
            raw["model_type"]
        );
        let (shape, labels) = VitShape::from_hf_config(&raw)
            .map_err(|e| anyhow::anyhow!("{}: {e}", config.display()))?;
        let file = dir.join("model.safetensors");
        let tensors = candle_core::safetensors::load(&file, &Device::Cpu)
            .with_context(|| format!("{}: not a readable safetensors file", file.display()))?;
        let mut params = BTreeMap::new();
        for (name, t) in tensors {
            let data = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            params.insert(name, Param::new(t.dims().to_vec(), data));
        }
        let weights = Self {
            shape,
            labels,
            params,
        };
        // Building the model checks every name and shape against the config.
        weights
            .model()
            .with_context(|| format!("{}: weights do not match config.json", file.display()))?;
        Ok(weights)
    }

    pub fn get(&self, name: &str) -> Result<&Param> {
        self.params
            .get(name)
            .with_context(|| format!("no tensor {name}"))
    }

    pub fn set(&mut self, name: &str, data: Vec<f32>) -> Result<()> {
        let p = self
            .params
            .get_mut(name)
            .with_context(|| format!("no tensor {name}"))?;
        ensure!(
            p.data.len() == data.len(),
            "{name}: {} values for {} slots",
            data.len(),
            p.data.len()
        );
        p.data = data;
        Ok(())
    }

    fn tensors(&self) -> Result<BTreeMap<String, Tensor>> {
        self.params
            .iter()
            .map(|(k, p)| {
                Ok((
                    k.clone(),
                    Tensor::from_slice(&p.data, p.shape.as_slice(), &Device::Cpu)?,
                ))
            })
            .collect()
    }

    /// A model over a copy of these weights.
    pub fn model(&self) -> Result<TrainVit> {
        Ok(self.trainable()?.1)
    }

    /// A trainable model over a copy of these weights, with the variables it trains.
    pub fn trainable(&self) -> Result<(VarMap, TrainVit)> {
        let varmap = VarMap::new();
        {
            let mut vars = varmap
                .data()
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned VarMap"))?;
            for (name, t) in self.tensors()? {
                vars.insert(name, Var::from_tensor(&t)?);
            }
        }
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let model = TrainVit::new(self.shape, vb)?;
        Ok((varmap, model))
    }

    /// These weights with the values `varmap` holds now (after training).
    pub fn with_values(&self, varmap: &VarMap) -> Result<Self> {
        let mut out = self.clone();
        let vars = varmap
            .data()
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned VarMap"))?;
        for (name, var) in vars.iter() {
            out.set(name, var.as_tensor().flatten_all()?.to_vec1::<f32>()?)?;
        }
        Ok(out)
    }

    /// Writes `config.json` and `model.safetensors` into `out`, atomically.
    pub fn save(&self, out: &Path) -> Result<()> {
        let tensors: std::collections::HashMap<_, _> = self.tensors()?.into_iter().collect();
        let config = self.shape.hf_config(&self.labels);
        crate::fs::write_folder(out, |dir| {
            candle_core::safetensors::save(&tensors, dir.join("model.safetensors"))?;
            std::fs::write(
                dir.join("config.json"),
                serde_json::to_string_pretty(&config)?,
            )?;
            Ok(())
        })
    }

    /// Element-wise mean of two models of one shape: the vanilla-averaging baseline.
    pub fn average(&self, other: &Self) -> Result<Self> {
        if self.shape != other.shape {
            bail!(
                "vanilla averaging needs equal shapes: width {} against {}",
                self.shape.hidden_size,
                other.shape.hidden_size
            );
        }
        let mut out = self.clone();
        for (name, p) in out.params.iter_mut() {
            let q = other.get(name)?;
            for (a, b) in p.data.iter_mut().zip(&q.data) {
                *a = 0.5 * (*a + b);
            }
        }
        Ok(out)
    }
}
