//! Delta statistics, one type for every use: how far a fine-tune moved from its base (mean |δ|,
//! ‖δ‖/‖θ_base‖, per tensor, per layer, in all) and what pruning did to it (kept fraction, |δ|
//! before and after, log10|δ| histograms).

use std::path::Path;

use anyhow::Result;

use super::Checkpoint;

use serde::Serialize;

/// Counts over equal bins of [lo, hi]; values outside fall in the end bins.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Histogram {
    pub lo: f32,
    pub hi: f32,
    pub counts: Vec<u64>,
}

pub const HIST_BINS: usize = 80;
/// The histograms are over log10|δ| of non-zero entries in this range: rescaling by 1/(1−p)
/// shifts the kept mass right by log10(1/(1−p)), magnitude pruning cuts the left tail.
pub const LOG_ABS_RANGE: (f32, f32) = (-8.0, 2.0);

impl Histogram {
    pub fn new(lo: f32, hi: f32, bins: usize) -> Self {
        Self {
            lo,
            hi,
            counts: vec![0; bins],
        }
    }

    pub fn push(&mut self, v: f32) {
        let n = self.counts.len();
        let f = ((v - self.lo) / (self.hi - self.lo) * n as f32).floor();
        let i = if f.is_nan() {
            0
        } else {
            f.clamp(0.0, (n - 1) as f32) as usize
        };
        self.counts[i] += 1;
    }

    pub fn add(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    pub fn bin_center(&self, i: usize) -> f32 {
        self.lo + (i as f32 + 0.5) * self.bin_width()
    }

    pub fn bin_width(&self) -> f32 {
        (self.hi - self.lo) / self.counts.len() as f32
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TensorStats {
    pub name: String,
    pub numel: usize,
    /// Elements whose delta survived (δ̃ ≠ 0).
    pub kept: usize,
    pub abs_before: f64,
    pub sq_before: f64,
    pub abs_after: f64,
    pub sq_after: f64,
    /// Σ θ_base² (0 where not measured: the fused pruning kernel leaves it out).
    pub base_sq: f64,
    /// log10|δ| before and log10|δ̃| after (zeros left out), when asked for.
    #[serde(skip)]
    pub hist: Option<(Histogram, Histogram)>,
}

impl TensorStats {
    pub fn measure(
        name: &str,
        base: &[f32],
        finetuned: &[f32],
        out: &[f32],
        histograms: bool,
    ) -> Self {
        let mut s = Self {
            name: name.to_string(),
            numel: base.len(),
            ..Default::default()
        };
        let (lo, hi) = LOG_ABS_RANGE;
        let mut hist = histograms.then(|| {
            (
                Histogram::new(lo, hi, HIST_BINS),
                Histogram::new(lo, hi, HIST_BINS),
            )
        });
        for ((b, f), o) in base.iter().zip(finetuned).zip(out) {
            let (d, e) = (f - b, o - b);
            s.abs_before += d.abs() as f64;
            s.sq_before += (d as f64) * (d as f64);
            s.base_sq += (*b as f64) * (*b as f64);
            if e != 0.0 {
                s.kept += 1;
                s.abs_after += e.abs() as f64;
                s.sq_after += (e as f64) * (e as f64);
            }
            if let Some((hb, ha)) = hist.as_mut() {
                if d != 0.0 {
                    hb.push(d.abs().log10());
                }
                if e != 0.0 {
                    ha.push(e.abs().log10());
                }
            }
        }
        s.hist = hist;
        s
    }

    pub fn kept_fraction(&self) -> f64 {
        self.kept as f64 / self.numel.max(1) as f64
    }

    pub fn mean_abs_before(&self) -> f64 {
        self.abs_before / self.numel.max(1) as f64
    }

    /// ‖δ‖₂ / ‖θ_base‖₂ before pruning (`None` where θ_base was not measured).
    pub fn rel_norm_before(&self) -> Option<f64> {
        (self.base_sq > 0.0).then(|| (self.sq_before / self.base_sq).sqrt())
    }

    /// Standard deviation of δ before pruning.
    pub fn std_before(&self) -> f64 {
        let n = self.numel.max(1) as f64;
        let mean_sq = self.sq_before / n;
        let m = self.abs_before / n;
        (mean_sq - m * m).max(0.0).sqrt()
    }

    /// Sums of tensors (a layer, or everything).
    pub fn merged(name: &str, parts: &[&TensorStats]) -> Self {
        let mut s = Self {
            name: name.into(),
            ..Default::default()
        };
        for p in parts {
            s.numel += p.numel;
            s.kept += p.kept;
            s.abs_before += p.abs_before;
            s.sq_before += p.sq_before;
            s.abs_after += p.abs_after;
            s.sq_after += p.sq_after;
            s.base_sq += p.base_sq;
        }
        s
    }
}

/// Per-layer sums, in layer order.
pub fn per_layer(tensors: &[TensorStats]) -> Vec<TensorStats> {
    let mut layers: std::collections::BTreeMap<String, Vec<&TensorStats>> = Default::default();
    for t in tensors {
        layers.entry(layer_of(&t.name)).or_default().push(t);
    }
    layers
        .into_iter()
        .map(|(k, v)| TensorStats::merged(&k, &v))
        .collect()
}

/// Sums over every tensor.
pub fn total(tensors: &[TensorStats]) -> TensorStats {
    TensorStats::merged("all", &tensors.iter().collect::<Vec<_>>())
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

/// δ of every float tensor the two checkpoints share, in name order (the fine-tune's names
/// read with `prefix` stripped, e.g. `bert.` for a classifier over a bare encoder). Nothing
/// is pruned: the "after" sums equal the "before" ones.
pub fn tensor_deltas(base: &Path, finetuned: &Path, prefix: &str) -> Result<Vec<TensorStats>> {
    let (b, f) = (Checkpoint::open(base)?, Checkpoint::open(finetuned)?);
    let mut out = Vec::new();
    for ft in f.tensors() {
        let key = ft.name.strip_prefix(prefix).unwrap_or(&ft.name);
        let Some(bt) = b.get(key) else { continue };
        if bt.shape != ft.shape || !bt.is_float() || !ft.is_float() {
            continue;
        }
        let fv = f.read_f32(ft)?;
        out.push(TensorStats::measure(key, &b.read_f32(bt)?, &fv, &fv, false));
    }
    out.sort_by(|x, y| x.name.cmp(&y.name));
    Ok(out)
}
