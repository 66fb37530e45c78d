//! A checkpoint as plain f32 arrays by name: what fusion reads, averages and writes, for every
//! model family.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;

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

pub type Params = BTreeMap<String, Param>;

pub fn param<'a>(params: &'a Params, name: &str) -> Result<&'a Param> {
    params
        .get(name)
        .with_context(|| format!("no tensor {name}"))
}

pub fn set_param(params: &mut Params, name: &str, data: Vec<f32>) -> Result<()> {
    let p = params
        .get_mut(name)
        .with_context(|| format!("no tensor {name}"))?;
    anyhow::ensure!(
        p.data.len() == data.len(),
        "{name}: {} values for {} slots",
        data.len(),
        p.data.len()
    );
    p.data = data;
    Ok(())
}

/// Every tensor of a safetensors file, as f32.
pub fn load_safetensors(file: &Path) -> Result<Params> {
    let tensors = candle_core::safetensors::load(file, &Device::Cpu)
        .with_context(|| format!("{}: not a readable safetensors file", file.display()))?;
    let mut params = Params::new();
    for (name, t) in tensors {
        let data = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        params.insert(name, Param::new(t.dims().to_vec(), data));
    }
    Ok(params)
}

/// What every fusable checkpoint offers over its named parameters.
pub trait NamedParams: Clone {
    fn params(&self) -> &Params;
    fn params_mut(&mut self) -> &mut Params;

    fn get(&self, name: &str) -> Result<&Param> {
        param(self.params(), name)
    }

    fn set(&mut self, name: &str, data: Vec<f32>) -> Result<()> {
        set_param(self.params_mut(), name, data)
    }

    fn tensors(&self) -> Result<BTreeMap<String, Tensor>> {
        self.params()
            .iter()
            .map(|(k, p)| {
                Ok((
                    k.clone(),
                    Tensor::from_slice(&p.data, p.shape.as_slice(), &Device::Cpu)?,
                ))
            })
            .collect()
    }

    /// A VarMap over a copy of these weights (for a model to train or run).
    fn varmap(&self) -> Result<VarMap> {
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
        Ok(varmap)
    }

    /// These weights with the values `varmap` holds now (after training).
    fn with_values(&self, varmap: &VarMap) -> Result<Self> {
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

    /// `model.safetensors` in `dir`.
    fn save_safetensors(&self, dir: &Path) -> Result<()> {
        let tensors: std::collections::HashMap<_, _> = self.tensors()?.into_iter().collect();
        candle_core::safetensors::save(&tensors, dir.join("model.safetensors"))?;
        Ok(())
    }

    /// A model folder in `out`, atomically: `model.safetensors`, `config.json`, and whatever
    /// `extra` adds (tokenizer files).
    fn save_folder(
        &self,
        out: &Path,
        config: &serde_json::Value,
        extra: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<()> {
        crate::fs::write_folder(out, |dir| {
            self.save_safetensors(dir)?;
            std::fs::write(
                dir.join("config.json"),
                serde_json::to_string_pretty(config)?,
            )?;
            extra(dir)
        })
    }

    /// Fails unless the model built over `varmap` declares every stored tensor. A builder
    /// creates what a checkpoint lacks, so counting is what catches a config that describes
    /// fewer or other tensors. (`position_ids`, which transformers stores, is not a weight.)
    fn ensure_complete(&self, varmap: &VarMap) -> Result<()> {
        let vars = varmap.all_vars().len();
        let stored = self
            .params()
            .keys()
            .filter(|k| !k.ends_with("position_ids"))
            .count();
        anyhow::ensure!(
            vars == stored,
            "config.json describes {vars} tensors, the checkpoint holds {stored}"
        );
        Ok(())
    }

    /// Element-wise mean with a model of the same tensor shapes: the vanilla-averaging
    /// baseline.
    fn average(&self, other: &Self) -> Result<Self> {
        let mut out = self.clone();
        for (name, p) in out.params_mut().iter_mut() {
            let q = other.get(name)?;
            anyhow::ensure!(
                q.shape == p.shape,
                "vanilla averaging needs equal shapes: {name} is {:?} against {:?}",
                p.shape,
                q.shape
            );
            for (a, b) in p.data.iter_mut().zip(&q.data) {
                *a = 0.5 * (*a + b);
            }
        }
        Ok(out)
    }
}
