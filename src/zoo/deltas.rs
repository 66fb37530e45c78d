//! How far a fine-tune moved from its base: per tensor and per layer, the mean |δ| and the
//! relative norm ‖δ‖/‖θ_base‖ (DARE works when deltas are small and fails when they are large).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use candle_core::{DType, Device};
use serde::Serialize;

/// Sums over one tensor (or, added up, over a layer or a model).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TensorDelta {
    pub name: String,
    pub numel: usize,
    pub abs_sum: f64,
    pub delta_sq: f64,
    pub base_sq: f64,
}

impl TensorDelta {
    pub fn mean_abs(&self) -> f64 {
        self.abs_sum / self.numel.max(1) as f64
    }

    /// ‖δ‖₂ / ‖θ_base‖₂.
    pub fn rel_norm(&self) -> f64 {
        (self.delta_sq / self.base_sq.max(1e-24)).sqrt()
    }

    fn add(&mut self, other: &TensorDelta) {
        self.numel += other.numel;
        self.abs_sum += other.abs_sum;
        self.delta_sq += other.delta_sq;
        self.base_sq += other.base_sq;
    }
}

/// Deltas of every tensor the two checkpoints share (names read with `prefix` stripped from
/// the fine-tune's, e.g. `bert.` for a classifier over a bare encoder).
pub fn tensor_deltas(base: &Path, finetuned: &Path, prefix: &str) -> Result<Vec<TensorDelta>> {
    let load = |dir: &Path| {
        let f = dir.join("model.safetensors");
        candle_core::safetensors::load(&f, &Device::Cpu)
            .with_context(|| format!("{}: cannot read", f.display()))
    };
    let (b, f) = (load(base)?, load(finetuned)?);
    let mut out = Vec::new();
    for (name, ft) in &f {
        let key = name.strip_prefix(prefix).unwrap_or(name);
        let Some(bt) = b.get(key) else { continue };
        if bt.dims() != ft.dims() {
            continue;
        }
        let bt = bt.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let ft = ft.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let mut t = TensorDelta {
            name: key.to_string(),
            numel: bt.len(),
            ..Default::default()
        };
        for (x, y) in bt.iter().zip(&ft) {
            let d = (*y - *x) as f64;
            t.abs_sum += d.abs();
            t.delta_sq += d * d;
            t.base_sq += (*x as f64) * (*x as f64);
        }
        out.push(t);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The layer a tensor belongs to: `layers.3` / `layer.3`, else `embeddings` / `head` / `other`.
pub fn layer_of(name: &str) -> String {
    let parts: Vec<&str> = name.split('.').collect();
    if let Some(i) = parts.iter().position(|p| *p == "layers" || *p == "layer") {
        if let Some(n) = parts.get(i + 1) {
            return format!("layer {n:>2}");
        }
    }
    if name.contains("embed") {
        "embeddings".into()
    } else if name.contains("lm_head") || name.contains("classifier") || name.contains("norm") {
        "head".into()
    } else {
        "other".into()
    }
}

/// Sums per layer, plus the whole model under "all".
pub fn per_layer(deltas: &[TensorDelta]) -> BTreeMap<String, TensorDelta> {
    let mut acc: BTreeMap<String, TensorDelta> = BTreeMap::new();
    for d in deltas {
        for key in [layer_of(&d.name), "all".to_string()] {
            acc.entry(key.clone())
                .or_insert_with(|| TensorDelta {
                    name: key,
                    ..Default::default()
                })
                .add(d);
        }
    }
    acc
}
