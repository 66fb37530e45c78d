//! The fusion experiment the CLI and the Fusion page run: both parents, the vanilla average,
//! OT fusion with each chosen solver and, optionally, a short fine-tune of the fused models
//! next to the same fine-tune of the anchor (so extra training alone is not mistaken for a
//! fusion gain).

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::activations::{activation_scenes, record, DEFAULT_SAMPLES};
use super::transport::{Solver, TransportMap};
use super::vit_fusion::{fuse, BranchMap, CostKind, FuseOptions, QkPolicy, ResidualPolicy};
use super::vit_weights::VitWeights;
use crate::eval::classifier::{eval_scenes, score_scenes};
use crate::train::StepReport;
use crate::zoo::vision::{train_steps, VitRecipe};

/// Held-out scenes every row is scored on (the zoo's own evaluation size).
pub const EVAL_SCENES: usize = 600;
/// Fine-tuning after fusion: batch 64, a tenth of the zoo's peak learning rate, cosine decay,
/// on a scene stream no parent was trained on.
const FINETUNE_BATCH: usize = 64;
const FINETUNE_LR: f64 = 2e-4;
/// Fine-tune seeds pick scene streams at seed · 10⁷; the zoo's ViTs used seeds 9–11.
pub const DEFAULT_FINETUNE_SEED: u64 = 20;
/// Enough for the fused models to recover (see docs/fusion.md), short enough to watch.
pub const DEFAULT_FINETUNE_STEPS: usize = 200;

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
    pub samples: usize,
    /// 0: no scores.
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
    pub width: usize,
    pub accuracy: f64,
    pub loss: f64,
}

/// One solver's fusion: its maps in order and the one-shot fused weights.
pub struct FusionRun {
    pub solver: Solver,
    pub maps: Vec<TransportMap>,
    pub weights: VitWeights,
    pub finetuned: Option<VitWeights>,
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

fn load(dir: &Path, which: &str) -> Result<VitWeights> {
    VitWeights::load(dir).with_context(|| format!("model {which} ({})", dir.display()))
}

/// Runs the whole experiment on two ViT folders.
pub fn run(a_dir: &Path, b_dir: &Path, opts: &LabOptions, on: &mut OnEvent) -> Result<LabReport> {
    let a = load(a_dir, "A")?;
    let b = load(b_dir, "B")?;
    let widths = (a.shape.hidden_size, b.shape.hidden_size);
    let anchor_is_a = match opts.target {
        Target::A => true,
        Target::B => false,
        Target::Narrower => widths.0 < widths.1,
    };
    let (other, anchor) = if anchor_is_a { (&b, &a) } else { (&a, &b) };
    let scenes = eval_scenes(opts.eval_scenes);
    let mut rows = Vec::new();
    let mut score = |label: String, w: &VitWeights, on: &mut OnEvent| -> Result<()> {
        if scenes.is_empty() {
            return Ok(());
        }
        let model = w.model()?;
        let s = score_scenes(&scenes, |x| model.forward(x))?;
        let row = ScoreRow {
            model: label,
            width: w.shape.hidden_size,
            accuracy: s.accuracy,
            loss: s.loss,
        };
        on(LabEvent::Row(&row))?;
        rows.push(row);
        Ok(())
    };
    on(LabEvent::Stage("scoring the parents".into()))?;
    score("parent A".into(), &a, on)?;
    score("parent B".into(), &b, on)?;
    let vanilla = (a.shape == b.shape).then(|| a.average(&b)).transpose()?;
    if let Some(v) = &vanilla {
        score("vanilla average".into(), v, on)?;
    }

    on(LabEvent::Stage(format!(
        "activations on {} scenes",
        opts.samples
    )))?;
    let sample = activation_scenes(opts.samples);
    let acts_other = record(other, &sample)?;
    let acts_anchor = record(anchor, &sample)?;
    let mut runs = Vec::new();
    for (i, &solver) in opts.solvers.iter().enumerate() {
        on(LabEvent::Stage(format!("fusing: {}", solver.label())))?;
        let fuse_opts = FuseOptions {
            cost: opts.cost,
            solver,
            qk: opts.qk,
            residual: opts.residual,
            branch_map: opts.branch_map,
        };
        let fusion = fuse(
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
        runs.push(FusionRun {
            solver,
            maps: fusion.maps,
            weights: fusion.weights,
            finetuned: None,
        });
    }

    let steps = opts.finetune_steps;
    if steps > 0 {
        let mut tune = |label: &str, w: &VitWeights, on: &mut OnEvent| -> Result<VitWeights> {
            on(LabEvent::Stage(format!("fine-tuning {label}")))?;
            let tuned = fine_tune(w, steps, opts.finetune_seed, &mut |s| on(LabEvent::Step(s)))?;
            score(format!("{label} + {steps} steps"), &tuned, on)?;
            Ok(tuned)
        };
        let anchor_label = if anchor_is_a { "parent A" } else { "parent B" };
        tune(anchor_label, anchor, on)?;
        if let Some(v) = &vanilla {
            tune("vanilla average", v, on)?;
        }
        for run in &mut runs {
            run.finetuned = Some(tune(&run.solver.label(), &run.weights, on)?);
        }
    }
    Ok(LabReport {
        rows,
        runs,
        widths,
        anchor_is_a,
    })
}

/// A short fine-tune on fresh training scenes.
pub fn fine_tune(
    w: &VitWeights,
    steps: usize,
    seed: u64,
    on_step: &mut dyn FnMut(StepReport) -> Result<()>,
) -> Result<VitWeights> {
    let (varmap, model) = w.trainable()?;
    let recipe = VitRecipe {
        shape: w.shape,
        steps,
        batch: FINETUNE_BATCH,
        peak_lr: FINETUNE_LR,
        weight_decay: 0.05,
        seed,
    };
    train_steps(&recipe, &varmap, &model, on_step)?;
    w.with_values(&varmap)
}
