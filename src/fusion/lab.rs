//! The fusion experiment the CLI and the Fusion page run, for every model family: both
//! parents, the vanilla average, OT fusion with each chosen solver and, optionally, a short
//! fine-tune of the fused models next to the same fine-tune of the anchor (so extra training
//! alone is not mistaken for a fusion gain).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::activations::DEFAULT_SAMPLES;
use super::decoder_weights::DecoderWeights;
use super::encoder_weights::EncoderWeights;
use super::family::Family;
use super::options::{BranchMap, CostKind, FuseOptions, QkPolicy, ResidualPolicy};
use super::transport::{Solver, TransportMap};
use super::vit_weights::VitWeights;
use crate::train::StepReport;

/// Held-out scenes every row is scored on (the zoo's own evaluation size).
pub const EVAL_SCENES: usize = 600;
/// Fine-tune seeds pick scene streams at seed · 10⁷; the zoo's ViTs used seeds 9–11.
pub const DEFAULT_FINETUNE_SEED: u64 = 20;
/// Enough for the fused models to recover (see docs/fusion.md), short enough to watch.
pub const DEFAULT_FINETUNE_STEPS: usize = 200;
/// A decoder fine-tune step costs about 20 ViT steps, and the fused decoders move fast at
/// first (docs/fusion.md): 30 steps keep the page's run to a few minutes.
pub const DECODER_FINETUNE_STEPS: usize = 30;

crate::named_enum! {
    "target";
    /// Which parent fixes the fused model's widths (the OT anchor).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum Target {
        A = "a",
        B = "b",
        /// The narrower parent (B when the widths agree).
        Narrower = "narrower",
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabOptions {
    pub cost: CostKind,
    pub qk: QkPolicy,
    pub residual: ResidualPolicy,
    pub branch_map: BranchMap,
    pub solvers: Vec<Solver>,
    pub target: Target,
    /// Inputs the activation cost is measured on: scenes (ViT), sentences (BERT) or text rows
    /// (decoders).
    pub samples: usize,
    /// Held-out items every row is scored on: scenes (ViT), sentences (BERT, at most 400) or
    /// text rows (decoders); 0: no scores.
    pub eval_scenes: usize,
    /// 0: no fine-tune rows.
    pub finetune_steps: usize,
    /// Which stream of training scenes the fine-tunes see.
    pub finetune_seed: u64,
}

impl LabOptions {
    /// Both solvers (Sinkhorn at the cost's default ε), the paper's policies, 200 fine-tune
    /// steps after fusion and the zoo's held-out scenes.
    pub fn new(cost: CostKind) -> Self {
        Self {
            cost,
            qk: QkPolicy::Separate,
            residual: ResidualPolicy::Mean,
            branch_map: BranchMap::Own,
            solvers: vec![
                Solver::Emd,
                Solver::Sinkhorn {
                    reg: FuseOptions::default_reg(cost),
                },
            ],
            target: Target::Narrower,
            samples: DEFAULT_SAMPLES,
            eval_scenes: EVAL_SCENES,
            finetune_steps: DEFAULT_FINETUNE_STEPS,
            finetune_seed: DEFAULT_FINETUNE_SEED,
        }
    }
}

impl Default for LabOptions {
    fn default() -> Self {
        Self::new(CostKind::Acts)
    }
}

/// One line of the results table.
#[derive(Debug, Clone, Serialize)]
pub struct ScoreRow {
    pub model: String,
    /// The residual stream's width (ViT, BERT) or the MLP's (decoders: their streams must
    /// agree).
    pub width: usize,
    /// The family's task metric: accuracy (ViT, BERT) or perplexity (decoders).
    pub metric: &'static str,
    /// What the score was measured on: "held-out scenes", "held-out sentences", "held-out text".
    pub data: &'static str,
    pub score: f64,
    pub higher_is_better: bool,
    pub loss: f64,
}

impl ScoreRow {
    /// "accuracy 0.675", "perplexity 1.586".
    pub fn describe(&self) -> String {
        format!("{} {:.3}", self.metric, self.score)
    }

    /// Whether `self` scores better than `other` on the metric.
    pub fn beats(&self, other: &ScoreRow) -> bool {
        if self.higher_is_better {
            self.score > other.score
        } else {
            self.score < other.score
        }
    }
}

/// A fused (or parent) model of any family.
#[derive(Debug, Clone)]
pub enum Model {
    Vit(VitWeights),
    Encoder(EncoderWeights),
    Decoder(DecoderWeights),
}

impl Model {
    /// Writes a folder the family's loaders read (config.json, model.safetensors, and a
    /// decoder's tokenizer), atomically.
    pub fn save(&self, out: &Path) -> Result<()> {
        match self {
            Model::Vit(w) => w.save(out),
            Model::Encoder(w) => w.save(out),
            Model::Decoder(w) => w.save(out),
        }
    }
}

impl From<VitWeights> for Model {
    fn from(w: VitWeights) -> Self {
        Model::Vit(w)
    }
}

impl From<EncoderWeights> for Model {
    fn from(w: EncoderWeights) -> Self {
        Model::Encoder(w)
    }
}

impl From<DecoderWeights> for Model {
    fn from(w: DecoderWeights) -> Self {
        Model::Decoder(w)
    }
}

/// One solver's fusion: its maps in order and the one-shot fused weights.
pub struct FusionRun {
    pub solver: Solver,
    pub maps: Vec<TransportMap>,
    pub weights: Model,
    pub finetuned: Option<Model>,
    /// Every parent fused into the anchor, when more than two were given.
    pub all: Option<Model>,
}

pub struct LabReport {
    pub rows: Vec<ScoreRow>,
    pub runs: Vec<FusionRun>,
    /// Width of A, width of B, and which is the anchor.
    pub widths: (usize, usize),
    pub anchor_is_a: bool,
}

/// What a running lab reports as it goes.
pub enum LabEvent<'a> {
    Stage(String),
    Map {
        run: usize,
        map: &'a TransportMap,
        done: usize,
        total: usize,
    },
    Row(&'a ScoreRow),
    Step(StepReport),
}

pub type OnEvent<'a> = dyn FnMut(LabEvent) -> Result<()> + 'a;

/// Runs the whole experiment on the folders of A, B and any further parents, all of one
/// family (ViT or BERT classifiers, or llama-family decoders, told apart by config.json). Further
/// parents need the anchor's shape: each is aligned onto the anchor and all are averaged
/// (rows "… · N models").
pub fn run(parents: &[PathBuf], opts: &LabOptions, on: &mut OnEvent) -> Result<LabReport> {
    anyhow::ensure!(parents.len() >= 2, "fusion needs two models");
    // The first parent names the family; the others' loaders refuse any other.
    let config = parents[0].join("config.json");
    let raw: serde_json::Value =
        crate::fs::read_json(&config, "a JSON config").with_context(|| "model A".to_string())?;
    match raw["model_type"].as_str() {
        Some("llama" | "mistral" | "qwen2") => run_family::<DecoderWeights>(parents, opts, on),
        Some("bert") => run_family::<EncoderWeights>(parents, opts, on),
        _ => run_family::<VitWeights>(parents, opts, on),
    }
}

/// Further parents are C, D, …
fn extra_name(i: usize) -> String {
    char::from(b'C' + (i % 24) as u8).to_string()
}

fn load<F: Family>(dir: &Path, which: &str) -> Result<F> {
    F::load(dir).with_context(|| format!("model {which} ({})", dir.display()))
}

fn run_family<F: Family + Into<Model>>(
    parents: &[PathBuf],
    opts: &LabOptions,
    on: &mut OnEvent,
) -> Result<LabReport> {
    let (a_dir, b_dir) = (&parents[0], &parents[1]);
    let a: F = load(a_dir, "A")?;
    let b: F = load(b_dir, "B")?;
    let extra: Vec<F> = parents[2..]
        .iter()
        .enumerate()
        .map(|(i, dir)| load(dir, &extra_name(i)))
        .collect::<Result<_>>()?;
    let widths = (a.width(), b.width());
    let anchor_is_a = match opts.target {
        Target::A => true,
        Target::B => false,
        Target::Narrower => widths.0 < widths.1,
    };
    let (other, anchor) = if anchor_is_a { (&b, &a) } else { (&a, &b) };
    on(LabEvent::Stage("reading the data".into()))?;
    let data = F::data(
        if anchor_is_a { a_dir } else { b_dir },
        opts.samples,
        opts.eval_scenes,
    )?;
    let mut rows = Vec::new();
    let mut score = |label: String, w: &F, on: &mut OnEvent| -> Result<()> {
        let Some(s) = w.score(&data)? else {
            return Ok(());
        };
        let row = ScoreRow {
            model: label,
            width: w.width(),
            metric: F::METRIC,
            data: F::HELD_OUT,
            score: s.score,
            higher_is_better: F::HIGHER_IS_BETTER,
            loss: s.loss,
        };
        on(LabEvent::Row(&row))?;
        rows.push(row);
        Ok(())
    };
    for (i, m) in extra.iter().enumerate() {
        anyhow::ensure!(
            m.same_shape(anchor),
            "model {} has other widths than the anchor: fusing more than two models needs equal \
             shapes",
            extra_name(i)
        );
    }
    let count = extra.len() + 2;
    on(LabEvent::Stage("scoring the parents".into()))?;
    score("parent A".into(), &a, on)?;
    score("parent B".into(), &b, on)?;
    for (i, m) in extra.iter().enumerate() {
        score(format!("parent {}", extra_name(i)), m, on)?;
    }
    let vanilla = a.same_shape(&b).then(|| a.average(&b)).transpose()?;
    if let Some(v) = &vanilla {
        score("vanilla average".into(), v, on)?;
    }
    if let (Some(v), false) = (&vanilla, extra.is_empty()) {
        // The plain mean of all parents: the pair's mean is the anchor "fused" with A.
        let pairs: Vec<F> = std::iter::once(Ok(v.clone()))
            .chain(extra.iter().map(|m| anchor.average(m)))
            .collect::<Result<_>>()?;
        let all = super::family::average_fusions(anchor, &pairs)?;
        score(format!("vanilla average · {count} models"), &all, on)?;
    }

    on(LabEvent::Stage(format!(
        "activations on {} samples",
        opts.samples
    )))?;
    let acts_other = other.activations(&data)?;
    let acts_anchor = anchor.activations(&data)?;
    let acts_extra: Vec<_> = extra
        .iter()
        .map(|m| m.activations(&data))
        .collect::<Result<_>>()?;
    let mut fused = Vec::new();
    for (i, &solver) in opts.solvers.iter().enumerate() {
        on(LabEvent::Stage(format!("fusing: {}", solver.label())))?;
        let fuse_opts = FuseOptions {
            cost: opts.cost,
            solver,
            qk: opts.qk,
            residual: opts.residual,
            branch_map: opts.branch_map,
        };
        let fusion = F::fuse(
            other,
            anchor,
            (&acts_other, &acts_anchor),
            fuse_opts,
            &mut |map, done, total| {
                on(LabEvent::Map {
                    run: i,
                    map,
                    done,
                    total,
                })
            },
        )?;
        score(solver.label(), &fusion.weights, on)?;
        let all = if extra.is_empty() {
            None
        } else {
            let mut pairs = vec![fusion.weights.clone()];
            for (m, acts) in extra.iter().zip(&acts_extra) {
                let pair = F::fuse(
                    m,
                    anchor,
                    (acts, &acts_anchor),
                    fuse_opts,
                    &mut |_, _, _| Ok(()),
                )?;
                pairs.push(pair.weights);
            }
            let all = super::family::average_fusions(anchor, &pairs)?;
            score(format!("{} · {count} models", solver.label()), &all, on)?;
            Some(all)
        };
        fused.push((solver, fusion.maps, fusion.weights, all));
    }

    let steps = opts.finetune_steps;
    let mut tuned: Vec<Option<F>> = fused.iter().map(|_| None).collect();
    if steps > 0 {
        let mut tune = |label: &str, w: &F, on: &mut OnEvent| -> Result<F> {
            on(LabEvent::Stage(format!("fine-tuning {label}")))?;
            let t = w.fine_tune(&data, steps, opts.finetune_seed, &mut |s| {
                on(LabEvent::Step(s))
            })?;
            score(format!("{label} + {steps} steps"), &t, on)?;
            Ok(t)
        };
        let anchor_label = if anchor_is_a { "parent A" } else { "parent B" };
        tune(anchor_label, anchor, on)?;
        if let Some(v) = &vanilla {
            tune("vanilla average", v, on)?;
        }
        for ((solver, _, weights, _), slot) in fused.iter().zip(&mut tuned) {
            *slot = Some(tune(&solver.label(), weights, on)?);
        }
    }
    let runs = fused
        .into_iter()
        .zip(tuned)
        .map(|((solver, maps, weights, all), finetuned)| FusionRun {
            solver,
            maps,
            weights: weights.into(),
            finetuned: finetuned.map(Into::into),
            all: all.map(Into::into),
        })
        .collect();
    Ok(LabReport {
        rows,
        runs,
        widths,
        anchor_is_a,
    })
}
