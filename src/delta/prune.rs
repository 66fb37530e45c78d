//! Delta pruning as published: DARE (random drop, rescale by 1/(1−p)), drop without rescale,
//! DAREx-q (random drop, rescale by 1/q), magnitude pruning and activation-aware importance
//! pruning of δ = θ_ft − θ_base, streamed tensor by tensor from checkpoint to checkpoint.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

use safetensors::Dtype;

use super::kernels;
use super::pairing::{Pairing, TensorPair};
use crate::checkpoint::stats::{layer_of, Histogram, TensorStats};
use crate::checkpoint::{decode_f32, encode, Checkpoint, CheckpointWriter, OutTensor, TensorInfo};
use crate::counter_rng::{drop_threshold, MaskKey};
use crate::gpu::DeltaGpu;

crate::named_enum! {
    "method";
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum Method {
        /// Random drop with rate p, survivors rescaled by 1/(1−p) (Yu et al.).
        Dare = "dare",
        /// Random drop, no rescale (the DARE ablation).
        DropOnly = "drop-only",
        /// Random drop, survivors rescaled by 1/q with q ≥ 1−p (Deng et al.).
        DarexQ = "darex-q",
        /// Keep the largest |δ| of each tensor.
        Magnitude = "magnitude",
        /// Keep the largest |δ_ij|·‖x_j‖ of each output row (Wanda-style; needs calibration inputs).
        ActivationAware = "activation-aware",
    }
}

impl Method {
    pub fn is_random(self) -> bool {
        matches!(self, Method::Dare | Method::DropOnly | Method::DarexQ)
    }
}

crate::named_enum! {
    "tensor filter";
    /// Which tensors are pruned; the others keep their fine-tuned values.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum TensorFilter {
        /// Every tensor the base has (MergeLM's encoder setting; heads absent from the base are kept).
        All = "all",
        /// Only the matrices of attention and MLP blocks (DAREx's decoder setting): embeddings,
        /// norms, biases and heads keep their fine-tuned values.
        AttentionMlp = "attention-mlp",
    }
}

impl TensorFilter {
    pub fn selects(self, name: &str, shape: &[usize]) -> bool {
        match self {
            TensorFilter::All => true,
            TensorFilter::AttentionMlp => shape.len() == 2 && layer_of(name).starts_with("layer"),
        }
    }
}

/// One pruning setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PruneSpec {
    pub method: Method,
    pub drop_rate: f64,
    /// DAREx-q's rescale denominator (survivors × 1/q); ignored by the other methods.
    pub q: f64,
    /// Per-matrix q (analytical DAREx-q), overriding `q` for the tensors it names.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tensor_q: BTreeMap<String, f64>,
    pub seed: u64,
    pub filter: TensorFilter,
}

impl PruneSpec {
    pub fn new(method: Method, drop_rate: f64) -> Self {
        Self {
            method,
            drop_rate,
            q: 1.0 - drop_rate,
            tensor_q: BTreeMap::new(),
            seed: 0,
            filter: TensorFilter::All,
        }
    }

    pub fn keep_rate(&self) -> f64 {
        1.0 - self.drop_rate
    }

    pub fn validate(&self) -> Result<()> {
        ensure!(
            (0.0..=1.0).contains(&self.drop_rate),
            "drop rate {} is outside [0, 1]",
            self.drop_rate
        );
        if self.method == Method::DarexQ {
            for q in std::iter::once(&self.q).chain(self.tensor_q.values()) {
                ensure!(*q > 0.0 && *q <= 1.0, "q = {q} is outside (0, 1]");
            }
        }
        Ok(())
    }

    /// The factor survivors of tensor `name` are multiplied by.
    pub fn scale_for(&self, name: &str) -> f32 {
        let p = self.drop_rate;
        match self.method {
            Method::Dare if p < 1.0 => (1.0 / (1.0 - p)) as f32,
            Method::DarexQ => (1.0 / self.tensor_q.get(name).copied().unwrap_or(self.q)) as f32,
            _ => 1.0,
        }
    }
}

/// Per-input-column statistics of the inputs a weight matrix saw on calibration data.
#[derive(Debug, Clone, Default)]
pub struct InputStats {
    /// ‖x_j‖₂ over all calibration tokens.
    pub norm: Vec<f32>,
    /// mean x_j over all calibration tokens.
    pub mean: Vec<f32>,
}

/// Where the arithmetic runs.
#[derive(Default, Clone, Copy)]
pub struct Engine<'a> {
    pub gpu: Option<&'a DeltaGpu>,
    /// Calibration statistics by weight name (activation-aware pruning).
    pub inputs: Option<&'a BTreeMap<String, InputStats>>,
    /// Whether to histogram |δ| before and after (for the panel).
    pub histograms: bool,
}

/// Prunes one tensor's delta; returns the new weights and what happened.
pub fn prune_tensor(
    spec: &PruneSpec,
    engine: &Engine,
    name: &str,
    shape: &[usize],
    base: &[f32],
    finetuned: &[f32],
) -> Result<(Vec<f32>, TensorStats)> {
    let mut out = vec![0f32; base.len()];
    match spec.method {
        m if m.is_random() => {
            let key = MaskKey::new(spec.seed, name);
            let t = drop_threshold(spec.drop_rate);
            let scale = spec.scale_for(name);
            match engine.gpu {
                Some(g) => g.drop_and_rescale(base, finetuned, key, 0, t, scale, &mut out)?,
                None => kernels::drop_and_rescale(base, finetuned, key, 0, t, scale, &mut out),
            }
        }
        Method::ActivationAware if engine.inputs.and_then(|s| s.get(name)).is_some() => {
            let stats = &engine
                .inputs
                .and_then(|s| s.get(name))
                .expect("checked")
                .norm;
            activation_aware(shape, base, finetuned, stats, spec.keep_rate(), &mut out)?;
        }
        // Magnitude, and activation-aware on tensors no calibration input reaches (embeddings,
        // norms, the head): the largest |δ| of the tensor.
        _ => {
            let min_abs = kth_largest_abs_delta(base, finetuned, spec.keep_rate());
            match engine.gpu {
                Some(g) => g.magnitude_threshold(base, finetuned, min_abs, &mut out)?,
                None => kernels::magnitude_threshold(base, finetuned, min_abs, &mut out),
            }
        }
    }
    let stats = TensorStats::measure(name, base, finetuned, &out, engine.histograms);
    Ok((out, stats))
}

/// The fused drop-and-rescale on a float tensor's words (None: the bytes are not aligned for
/// their word size, or the machine is big-endian; the caller takes the f32 path).
fn drop_and_rescale_raw(
    spec: &PruneSpec,
    name: &str,
    dtype: Dtype,
    base: &[u8],
    finetuned: &[u8],
) -> Option<(Produced<'static>, kernels::DeltaSums)> {
    fn run<C: kernels::Codec>(
        spec: &PruneSpec,
        name: &str,
        base: &[u8],
        finetuned: &[u8],
    ) -> Option<(Produced<'static>, kernels::DeltaSums)> {
        let b: &[C::Word] = bytemuck::try_cast_slice(base).ok()?;
        let f: &[C::Word] = bytemuck::try_cast_slice(finetuned).ok()?;
        let mut words = vec![0u32; finetuned.len().div_ceil(4)];
        let out: &mut [C::Word] = &mut bytemuck::cast_slice_mut(&mut words)[..f.len()];
        let key = MaskKey::new(spec.seed, name);
        let (t, scale) = (drop_threshold(spec.drop_rate), spec.scale_for(name));
        let sums = kernels::drop_and_rescale_words::<C>(b, f, key, t, scale, out);
        Some((Produced::Words(words, finetuned.len()), sums))
    }
    if cfg!(target_endian = "big") {
        return None;
    }
    match dtype {
        Dtype::F32 => run::<kernels::F32Bits>(spec, name, base, finetuned),
        Dtype::F16 => run::<kernels::F16Bits>(spec, name, base, finetuned),
        Dtype::BF16 => run::<kernels::Bf16Bits>(spec, name, base, finetuned),
        _ => None,
    }
}

/// The smallest |δ| among the `keep_rate` largest (∞ when nothing is kept).
fn kth_largest_abs_delta(base: &[f32], finetuned: &[f32], keep_rate: f64) -> f32 {
    let k = (keep_rate * base.len() as f64).round() as usize;
    if k == 0 {
        return f32::INFINITY;
    }
    let mut abs: Vec<f32> = base
        .iter()
        .zip(finetuned)
        .map(|(b, f)| (f - b).abs())
        .collect();
    let (_, kth, _) = abs.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    *kth
}

/// Wanda-style importance per output row: keep the top `keep_rate` of |δ_ij|·‖x_j‖ in each row.
fn activation_aware(
    shape: &[usize],
    base: &[f32],
    finetuned: &[f32],
    norms: &[f32],
    keep_rate: f64,
    out: &mut [f32],
) -> Result<()> {
    let [_, cols] = shape else {
        bail!("activation-aware pruning needs a matrix, got shape {shape:?}");
    };
    ensure!(
        norms.len() == *cols,
        "calibration inputs have {} columns, the matrix {cols}",
        norms.len()
    );
    let k = (keep_rate * *cols as f64).round() as usize;
    use rayon::prelude::*;
    out.par_chunks_mut(*cols)
        .zip(base.par_chunks(*cols).zip(finetuned.par_chunks(*cols)))
        .for_each(|(o, (b, f))| {
            let score: Vec<f32> = (0..*cols).map(|j| (f[j] - b[j]).abs() * norms[j]).collect();
            let mut order: Vec<usize> = (0..*cols).collect();
            if k < *cols {
                order.select_nth_unstable_by(k, |&x, &y| score[y].total_cmp(&score[x]));
            }
            o.copy_from_slice(b);
            for &j in &order[..k] {
                o[j] = b[j] + (f[j] - b[j]);
            }
        });
    Ok(())
}

/// What a pruning or merge run did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunSummary {
    pub tensors: Vec<TensorStats>,
    /// Tensors copied unchanged (not selected, not in the base, or not floats).
    pub carried: Vec<String>,
    pub bytes_written: u64,
    pub seconds: f64,
    pub device: String,
}

impl RunSummary {
    pub fn kept_fraction(&self) -> f64 {
        let (kept, n) = self.tensors.iter().fold((0u64, 0u64), |(k, n), t| {
            (k + t.kept as u64, n + t.numel as u64)
        });
        kept as f64 / n.max(1) as f64
    }

    pub fn histogram(&self) -> Option<(Histogram, Histogram)> {
        let mut it = self.tensors.iter().filter_map(|t| t.hist.clone());
        let (mut before, mut after) = it.next()?;
        for (b, a) in it {
            before.add(&b);
            after.add(&a);
        }
        Some((before, after))
    }
}

/// Progress callback: (bytes done, bytes total, tensor name). Returning an error cancels.
pub type Progress<'a> = dyn FnMut(u64, u64, &str) -> Result<()> + 'a;

/// Where and how a run writes its checkpoint.
pub struct Output<'a> {
    pub dir: &'a Path,
    /// Shards are cut before this size (one file below it).
    pub max_shard_bytes: u64,
    /// Float tensors are written in this dtype (default: the fine-tune's).
    pub dtype: Option<Dtype>,
}

impl<'a> Output<'a> {
    pub fn new(dir: &'a Path) -> Self {
        Self {
            dir,
            max_shard_bytes: DEFAULT_SHARD_BYTES,
            dtype: None,
        }
    }
}

/// mergekit's default shard size.
pub const DEFAULT_SHARD_BYTES: u64 = 5_000_000_000;

/// A finished output tensor.
pub enum Produced<'a> {
    /// New float values, to be written in the output dtype.
    Values(Vec<f32>),
    /// The input's bytes, kept as they were.
    Copied(&'a [u8]),
    /// Bytes computed in the tensor's own dtype, held in 4-byte words (the first `len` bytes).
    Words(Vec<u32>, usize),
}

/// What the writer thread receives.
enum Bytes<'a> {
    Borrowed(&'a [u8]),
    Owned(Vec<u8>),
    Words(Vec<u32>, usize),
}

impl Bytes<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Borrowed(b) => b,
            Bytes::Owned(v) => v,
            Bytes::Words(w, len) => &bytemuck::cast_slice(w)[..*len],
        }
    }
}

/// Prunes every selected delta of `finetuned` against `base` and writes the result
/// (config and tokenizer files of the fine-tune are carried over). The folder appears only
/// when everything is written.
pub fn prune_checkpoint(
    base: &Checkpoint,
    finetuned: &Checkpoint,
    spec: &PruneSpec,
    engine: &Engine,
    output: &Output,
    progress: &mut Progress,
) -> Result<RunSummary> {
    spec.validate()?;
    let pairing = Pairing::new(base, finetuned)?;
    // Random drops on the CPU without histograms go straight from bytes to bytes.
    let fused = spec.method.is_random()
        && engine.gpu.is_none()
        && !engine.histograms
        && output.dtype.is_none();
    let unfused = |b: &TensorInfo, ft: &TensorInfo, summary: &mut RunSummary| -> Result<Produced> {
        let (bv, fv) = (base.read_f32(b)?, finetuned.read_f32(ft)?);
        let (values, stats) = prune_tensor(spec, engine, &ft.name, &ft.shape, &bv, &fv)?;
        base.release(b);
        summary.tensors.push(stats);
        Ok(Produced::Values(values))
    };
    let compute = |pair: &TensorPair, summary: &mut RunSummary| -> Result<Produced<'_>> {
        let ft = pair.finetuned;
        match pair.base {
            Some(b) if fused && b.dtype == ft.dtype && spec.filter.selects(&ft.name, &ft.shape) => {
                if let Some((bytes, sums)) =
                    drop_and_rescale_raw(spec, &ft.name, ft.dtype, base.raw(b), finetuned.raw(ft))
                {
                    base.release(b);
                    summary.tensors.push(sums.into_stats(&ft.name, ft.numel()));
                    return Ok(bytes);
                }
                unfused(b, ft, summary)
            }
            Some(b) if ft.is_float() && spec.filter.selects(&ft.name, &ft.shape) => {
                unfused(b, ft, summary)
            }
            _ => {
                summary.carried.push(ft.name.clone());
                Ok(Produced::Copied(finetuned.raw(ft)))
            }
        }
    };
    let inputs = [base.dir.as_path(), finetuned.dir.as_path()];
    stream_out(
        finetuned, &pairing, &inputs, output, engine, progress, compute,
    )
}

/// Streams the fine-tune's tensor list through `compute` into a new checkpoint: a writer
/// thread takes finished tensors through a channel of two, so reading, arithmetic and writing
/// overlap while at most a few tensors are in memory.
pub(super) fn stream_out<'a>(
    template: &'a Checkpoint,
    pairing: &Pairing<'a>,
    inputs: &[&Path],
    output: &Output,
    engine: &Engine,
    progress: &mut Progress,
    mut compute: impl FnMut(&TensorPair<'a>, &mut RunSummary) -> Result<Produced<'a>>,
) -> Result<RunSummary> {
    refuse_overwriting_inputs(output.dir, inputs)?;
    let started = Instant::now();
    let dtype_of = |t: &TensorInfo| match output.dtype {
        Some(d) if t.is_float() => d,
        _ => t.dtype,
    };
    let plan: Vec<OutTensor> = pairing
        .pairs
        .iter()
        .map(|p| OutTensor {
            name: p.finetuned.name.clone(),
            dtype: dtype_of(p.finetuned),
            shape: p.finetuned.shape.clone(),
        })
        .collect();
    let total: u64 = plan.iter().map(|t| t.nbytes() as u64).sum();
    let mut summary = RunSummary {
        device: engine.gpu.map_or("cpu".into(), |g| g.describe()),
        ..Default::default()
    };
    crate::fs::write_folder(output.dir, |dir| {
        for f in template.side_files()? {
            let to = dir.join(f.file_name().expect("a file"));
            std::fs::copy(&f, &to).with_context(|| format!("{}: cannot copy", f.display()))?;
        }
        let mut writer = CheckpointWriter::new(dir, plan, output.max_shard_bytes)?;
        let (tx, rx) = mpsc::sync_channel::<(&TensorInfo, Bytes)>(2);
        summary.bytes_written = std::thread::scope(|s| -> Result<u64> {
            let handle = s.spawn(move || -> Result<u64> {
                for (t, bytes) in rx {
                    writer.write(&t.name, bytes.as_slice())?;
                    drop(bytes);
                    template.release(t); // its pages are written; let the kernel have them
                }
                writer.finish()
            });
            let produced = (|| -> Result<()> {
                let mut done = 0u64;
                for pair in &pairing.pairs {
                    let t = pair.finetuned;
                    progress(done, total, &t.name)?;
                    let bytes = match compute(pair, &mut summary)? {
                        Produced::Values(v) => Bytes::Owned(encode(&v, dtype_of(t))?),
                        Produced::Copied(b) if dtype_of(t) == t.dtype => Bytes::Borrowed(b),
                        Produced::Copied(b) => {
                            Bytes::Owned(encode(&decode_f32(b, t.dtype)?, dtype_of(t))?)
                        }
                        Produced::Words(w, len) => Bytes::Words(w, len),
                    };
                    done += bytes.as_slice().len() as u64;
                    if tx.send((t, bytes)).is_err() {
                        break; // the writer failed; its error is reported below
                    }
                }
                progress(done, total, "")
            })();
            drop(tx);
            let written = handle
                .join()
                .map_err(|_| anyhow::anyhow!("the checkpoint writer panicked"))?;
            produced?;
            written
        })?;
        Ok(())
    })?;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

fn refuse_overwriting_inputs(out: &Path, inputs: &[&Path]) -> Result<()> {
    let canon = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    for input in inputs {
        if canon(out) == canon(input) {
            bail!(
                "{}: the output folder is one of the inputs; choose another output folder",
                out.display()
            );
        }
    }
    Ok(())
}
