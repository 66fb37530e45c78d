//! The Delta lab on zoo models (what `prune --eval`, the sweeps and the panel share): prune a
//! zoo fine-tune into a scratch folder, score it on its held-out task, choose DAREx-q's q on
//! validation data or unlabelled inputs, and sweep metric against drop rate.

use crate::fs::ScratchDir;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use serde::Serialize;

use super::darex::{analytical_q_all, search_q, QSearch, ETA_GRID};
use super::prune::{prune_checkpoint, Engine, InputStats, Method, Output, PruneSpec, RunSummary};
use crate::checkpoint::Checkpoint;
use crate::data::classify::class_data;
use crate::data::{Example, TextTask};
use crate::eval::classifier::{bert_eval, BertClassifier};
use crate::eval::decoder::exact_match_eval;
use crate::lm::LanguageModel;
use crate::train::llama::TrainLlama;
use crate::zoo::specs::{EvalContext, Recipe, ZooSpec};

/// Zoo fine-tunes whose base is in the zoo too (decoders and MiniLM classifiers).
pub fn zoo_pairs() -> Vec<ZooSpec> {
    crate::zoo::specs()
        .into_iter()
        .filter(|s| s.base.is_some() && matches!(s.recipe, Recipe::Decoder(_) | Recipe::Minilm(_)))
        .collect()
}

/// How DAREx-q's q is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum QChoice {
    Fixed(f64),
    /// Global q maximising the task metric on a validation set (labelled).
    Validation,
    /// Global q minimising the output change against the fine-tune on unlabelled inputs.
    Unsupervised,
    /// Per-matrix q from the analytical bound, η chosen by the unsupervised objective.
    Analytical,
}

impl std::str::FromStr for QChoice {
    type Err = anyhow::Error;

    /// `0.3`, `auto` (validation), `unsupervised` or `analytical`.
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "auto" | "validation" => QChoice::Validation,
            "unsupervised" => QChoice::Unsupervised,
            "analytical" => QChoice::Analytical,
            _ => QChoice::Fixed(s.parse::<f64>().with_context(|| {
                format!("q {s:?}: a number in (0, 1], auto, unsupervised or analytical")
            })?),
        })
    }
}

enum Family {
    Decoder {
        validation: Vec<(TextTask, Vec<Example>)>,
        unlabelled: Vec<Vec<u32>>,
    },
    Encoder {
        validation: Vec<(String, usize)>,
        unlabelled: Vec<String>,
    },
}

const VALIDATION_ROWS: usize = 100;
const UNLABELLED_ROWS: usize = 32;
/// A seed no training or evaluation set uses.
const VALIDATION_SEED: u64 = 0x7A11_DA7E;

/// One zoo fine-tune and its base, ready to be pruned and scored many times.
pub struct ZooProbe {
    pub spec: ZooSpec,
    pub base: Checkpoint,
    pub finetuned: Checkpoint,
    ctx: EvalContext,
    family: Family,
    reference: Option<Vec<f32>>,
    scratch: ScratchDir,
}

/// One point of a metric-vs-drop-rate curve.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub method: Method,
    pub drop_rate: f64,
    pub q: Option<f64>,
    pub score: f64,
    pub kept_fraction: f64,
    pub seconds: f64,
}

impl ZooProbe {
    /// `name` is a zoo fine-tune; MiniLM fine-tunes are built first if missing (minutes).
    pub fn new(name: &str) -> Result<Self> {
        let spec = crate::zoo::specs::spec(name)?;
        let base_name = spec
            .base
            .with_context(|| format!("{name} has no base model in the zoo"))?;
        let ft_dir = crate::zoo::specs::ensure_built(name, &mut |_| Ok(()))?;
        let base_dir = crate::zoo::specs::spec(base_name)?.path();
        let mut ctx = EvalContext::new()?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(VALIDATION_SEED);
        let family = match &spec.recipe {
            Recipe::Decoder(r) => {
                let tasks = ctx.text_tasks();
                let validation = r
                    .tasks
                    .iter()
                    .map(|&t| {
                        (
                            t,
                            (0..VALIDATION_ROWS)
                                .map(|_| tasks.sample_train(t, &mut rng))
                                .collect(),
                        )
                    })
                    .collect();
                let unlabelled = (0..UNLABELLED_ROWS)
                    .map(|i| {
                        let ex = tasks.sample_train(r.tasks[i % r.tasks.len()], &mut rng);
                        let mut ids = vec![crate::zoo::byte_tokenizer::BOS];
                        ids.extend(crate::zoo::byte_tokenizer::encode(&format!(
                            "{}{}",
                            ex.prompt, ex.answer
                        )));
                        ids
                    })
                    .collect();
                Family::Decoder {
                    validation,
                    unlabelled,
                }
            }
            Recipe::Minilm(r) => {
                let data = class_data(r.task, &ctx.sources);
                // The encoder tasks have no validation split: DAREx's labelled search runs on
                // training rows here (the held-out rows stay for the reported score).
                let validation: Vec<(String, usize)> = data
                    .train
                    .iter()
                    .take(VALIDATION_ROWS * 2)
                    .cloned()
                    .collect();
                let unlabelled = data
                    .train
                    .iter()
                    .rev()
                    .take(UNLABELLED_ROWS)
                    .map(|(t, _)| t.clone())
                    .collect();
                Family::Encoder {
                    validation,
                    unlabelled,
                }
            }
            _ => bail!("{name}: the Delta lab works on decoder and MiniLM fine-tunes"),
        };
        Ok(Self {
            base: Checkpoint::open(&base_dir)?,
            finetuned: Checkpoint::open(&ft_dir)?,
            spec,
            ctx,
            family,
            reference: None,
            scratch: ScratchDir::new()?,
        })
    }

    pub fn is_decoder(&self) -> bool {
        matches!(self.family, Family::Decoder { .. })
    }

    /// Writes the pruned model to the probe's scratch folder.
    pub fn prune(&self, spec: &PruneSpec, engine: &Engine) -> Result<(PathBuf, RunSummary)> {
        let dir = self.scratch.path().join("model");
        let summary = prune_checkpoint(
            &self.base,
            &self.finetuned,
            spec,
            engine,
            &Output::new(&dir),
            &mut |_, _, _| Ok(()),
        )?;
        Ok((dir, summary))
    }

    /// The zoo metric on the held-out set (what the manifest reports).
    pub fn test_score(&mut self, dir: &Path) -> Result<f64> {
        Ok(crate::zoo::evaluate(&self.spec, dir, &mut self.ctx)?.score)
    }

    pub fn validation_score(&mut self, dir: &Path) -> Result<f64> {
        match &self.family {
            Family::Decoder { validation, .. } => {
                let model = Arc::new(LanguageModel::load(dir)?);
                let mut sum = 0.0;
                for (t, set) in validation {
                    sum += exact_match_eval(&model, set, t.max_answer_bytes() + 2)?.0;
                }
                Ok(sum / validation.len() as f64)
            }
            Family::Encoder { validation, .. } => Ok(bert_eval(dir, validation)?.accuracy),
        }
    }

    /// The model's outputs on the unlabelled inputs: decoder logits, encoder last hidden states.
    fn outputs(&self, dir: &Path) -> Result<Vec<f32>> {
        match &self.family {
            Family::Decoder { unlabelled, .. } => {
                let model = TrainLlama::load(dir)?;
                let mut out = Vec::new();
                for ids in unlabelled {
                    let t = Tensor::new(ids.as_slice(), &Device::Cpu)?.unsqueeze(0)?;
                    out.extend(model.forward(&t)?.flatten_all()?.to_vec1::<f32>()?);
                }
                Ok(out)
            }
            Family::Encoder { unlabelled, .. } => {
                let texts: Vec<&str> = unlabelled.iter().map(String::as_str).collect();
                BertClassifier::load(dir)?.last_hidden(&texts)
            }
        }
    }

    /// DAREx's unsupervised objective (lower is better): for decoders the MSE of the logits at
    /// the fine-tune's top-5 tokens of every position; for encoders the mean absolute change of
    /// the last hidden layer.
    pub fn output_change(&mut self, dir: &Path) -> Result<f64> {
        if self.reference.is_none() {
            self.reference = Some(self.outputs(&self.finetuned.dir.clone())?);
        }
        let got = self.outputs(dir)?;
        let want = self.reference.as_ref().expect("set above");
        Ok(match &self.family {
            Family::Decoder { .. } => {
                let vocab = crate::zoo::byte_tokenizer::VOCAB_SIZE;
                let (mut sum, mut n) = (0.0f64, 0usize);
                for (w, g) in want.chunks(vocab).zip(got.chunks(vocab)) {
                    let mut idx: Vec<usize> = (0..vocab).collect();
                    idx.select_nth_unstable_by(5, |&a, &b| w[b].total_cmp(&w[a]));
                    for &i in &idx[..5] {
                        sum += ((w[i] - g[i]) as f64).powi(2);
                        n += 1;
                    }
                }
                sum / n.max(1) as f64
            }
            Family::Encoder { .. } => {
                want.iter()
                    .zip(&got)
                    .map(|(a, b)| (a - b).abs() as f64)
                    .sum::<f64>()
                    / want.len().max(1) as f64
            }
        })
    }

    /// Per-matrix input statistics of the fine-tune on the unlabelled inputs (decoders only).
    pub fn input_stats(&self) -> Result<BTreeMap<String, InputStats>> {
        let Family::Decoder { unlabelled, .. } = &self.family else {
            bail!(
                "{}: calibration inputs are collected for decoders only",
                self.spec.name
            );
        };
        let model = TrainLlama::load(&self.finetuned.dir)?;
        let mut acc: BTreeMap<String, (Vec<f64>, Vec<f64>, usize)> = BTreeMap::new();
        for ids in unlabelled {
            let t = Tensor::new(ids.as_slice(), &Device::Cpu)?.unsqueeze(0)?;
            model.forward_tapped(&t, &mut |name, x| {
                let cols = x.dim(candle_core::D::Minus1)?;
                let rows = x.flatten_to(candle_core::D::Minus2)?.to_vec2::<f32>()?;
                let e = acc
                    .entry(name.to_string())
                    .or_insert_with(|| (vec![0.0; cols], vec![0.0; cols], 0));
                for r in &rows {
                    for (j, v) in r.iter().enumerate() {
                        e.0[j] += *v as f64;
                        e.1[j] += (*v as f64) * (*v as f64);
                    }
                }
                e.2 += rows.len();
                Ok(())
            })?;
        }
        Ok(acc
            .into_iter()
            .map(|(k, (s, sq, n))| {
                let n = n.max(1) as f64;
                (
                    k,
                    InputStats {
                        norm: sq.iter().map(|v| v.sqrt() as f32).collect(),
                        mean: s.iter().map(|v| (v / n) as f32).collect(),
                    },
                )
            })
            .collect())
    }

    /// Fills in DAREx-q's q by `how`; returns the search when one ran.
    pub fn choose_q(
        &mut self,
        spec: &mut PruneSpec,
        how: QChoice,
        engine: &Engine,
    ) -> Result<Option<QSearch>> {
        let mut trial = spec.clone();
        trial.method = Method::DarexQ;
        let search = match how {
            QChoice::Fixed(q) => {
                spec.q = q;
                return Ok(None);
            }
            QChoice::Validation => search_q(spec.drop_rate, &mut |q| {
                trial.q = q;
                let (dir, _) = self.prune(&trial, engine)?;
                self.validation_score(&dir)
            })?,
            QChoice::Unsupervised => search_q(spec.drop_rate, &mut |q| {
                trial.q = q;
                let (dir, _) = self.prune(&trial, engine)?;
                Ok(-self.output_change(&dir)?)
            })?,
            QChoice::Analytical => {
                let means: BTreeMap<String, Vec<f32>> = self
                    .input_stats()?
                    .into_iter()
                    .map(|(k, v)| (k, v.mean))
                    .collect();
                let deltas = self.matrix_deltas(&means)?;
                let mut tried = Vec::new();
                let mut best: Option<(f64, BTreeMap<String, f64>)> = None;
                for eta in ETA_GRID {
                    trial.tensor_q = analytical_q_all(spec.drop_rate, eta, &deltas, &means);
                    let (dir, _) = self.prune(&trial, engine)?;
                    let v = -self.output_change(&dir)?;
                    tried.push((eta, v));
                    if best.as_ref().is_none_or(|(b, _)| v > *b) {
                        best = Some((v, trial.tensor_q.clone()));
                    }
                }
                let (objective, tensor_q) = best.expect("η grid is not empty");
                let mean_q = tensor_q.values().sum::<f64>() / tensor_q.len().max(1) as f64;
                spec.tensor_q = tensor_q;
                spec.q = mean_q;
                return Ok(Some(QSearch {
                    q: mean_q,
                    objective,
                    tried,
                }));
            }
        };
        spec.q = search.q;
        Ok(Some(search))
    }

    fn matrix_deltas(
        &self,
        names: &BTreeMap<String, Vec<f32>>,
    ) -> Result<BTreeMap<String, (Vec<f32>, usize)>> {
        let mut out = BTreeMap::new();
        for name in names.keys() {
            let (Some(b), Some(f)) = (self.base.get(name), self.finetuned.get(name)) else {
                continue;
            };
            let bv = self.base.read_f32(b)?;
            let d: Vec<f32> = self
                .finetuned
                .read_f32(f)?
                .iter()
                .zip(&bv)
                .map(|(f, b)| f - b)
                .collect();
            out.insert(name.clone(), (d, *f.shape.last().unwrap_or(&1)));
        }
        Ok(out)
    }

    /// Prunes with `spec` (q chosen by `how` for DAREx-q; calibration inputs collected for
    /// activation-aware pruning) and scores the result on the held-out task.
    pub fn point(
        &mut self,
        spec: &PruneSpec,
        how: QChoice,
        engine: &Engine,
    ) -> Result<(Point, RunSummary)> {
        let started = Instant::now();
        let mut spec = spec.clone();
        if spec.method == Method::DarexQ {
            self.choose_q(&mut spec, how, engine)?;
        }
        let inputs;
        let calibrated;
        let engine = if spec.method == Method::ActivationAware && engine.inputs.is_none() {
            inputs = self.input_stats()?;
            calibrated = Engine {
                inputs: Some(&inputs),
                ..*engine
            };
            &calibrated
        } else {
            engine
        };
        let (dir, summary) = self.prune(&spec, engine)?;
        let score = self.test_score(&dir)?;
        Ok((
            Point {
                method: spec.method,
                drop_rate: spec.drop_rate,
                q: (spec.method == Method::DarexQ).then_some(spec.q),
                score,
                kept_fraction: summary.kept_fraction(),
                seconds: started.elapsed().as_secs_f64(),
            },
            summary,
        ))
    }
}

/// Metric against drop rate for each method, a point at a time (`on_point` may cancel).
pub fn sweep(
    probe: &mut ZooProbe,
    template: &PruneSpec,
    methods: &[Method],
    rates: &[f64],
    how: QChoice,
    engine: &Engine,
    on_point: &mut dyn FnMut(&Point) -> Result<()>,
) -> Result<Vec<Point>> {
    let mut points = Vec::new();
    for &rate in rates {
        for &method in methods {
            let spec = PruneSpec {
                method,
                drop_rate: rate,
                q: 1.0 - rate,
                ..template.clone()
            };
            let (point, _) = probe.point(&spec, how, engine)?;
            on_point(&point)?;
            points.push(point);
        }
    }
    Ok(points)
}

/// Exact match of a merged decoder on each of `tasks`.
pub fn decoder_task_scores(dir: &Path, tasks: &[TextTask]) -> Result<Vec<(TextTask, f64)>> {
    let mut ctx = EvalContext::new()?;
    let sets = ctx.text_tasks();
    let model = Arc::new(LanguageModel::load(dir)?);
    tasks
        .iter()
        .map(|&t| {
            Ok((
                t,
                exact_match_eval(&model, sets.eval_set(t), t.max_answer_bytes() + 2)?.0,
            ))
        })
        .collect()
}

/// A merge of zoo decoder fine-tunes of one base, as the merge view sets it up.
#[derive(Debug, Clone, PartialEq)]
pub struct ZooMerge {
    pub models: Vec<String>,
    pub spec: super::MergeSpec,
}

impl ZooMerge {
    pub fn config(&self) -> Result<super::MergeConfig> {
        let specs = self
            .models
            .iter()
            .map(|m| crate::zoo::specs::spec(m))
            .collect::<Result<Vec<_>>>()?;
        let base = specs
            .first()
            .and_then(|s| s.base)
            .context("a merge needs at least one zoo fine-tune")?;
        if let Some(other) = specs.iter().find(|s| s.base != Some(base)) {
            bail!("{} is not a fine-tune of {base}", other.name);
        }
        // Absolute paths: the YAML is read relative to its own folder.
        let absolute = |p: PathBuf| p.canonicalize().unwrap_or(p);
        Ok(super::MergeConfig {
            base_model: absolute(crate::zoo::specs::spec(base)?.path()),
            models: specs.iter().map(|s| absolute(s.path())).collect(),
            spec: self.spec.clone(),
            dtype: None,
            ignored: Vec::new(),
        })
    }
}
