//! The lab's evidence: for each target domain, the source generator and each method's
//! adapted generator against real target faces — FD, precision and recall in the feature
//! network's space, the share of samples the feature network calls the target domain, and
//! the adaptation time. Sample grids on the preview latents are written beside the table.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::adapt::{adapt, AdaptRequest, Adapted, Method, Target};
use super::faces::{render_many, Domain, SIZE};
use super::features::FeatureNet;
use super::metrics::{frechet_distance, precision_recall};
use super::pretrain::{latents, preview_latents, Gan};
use crate::jobs::{JobBoard, JobCtx, JobHandle, JobSpec, Report};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GanEvalRequest {
    pub source: PathBuf,
    pub features: PathBuf,
    pub targets: Vec<Domain>,
    pub methods: Vec<Method>,
    /// Real and generated images per row.
    pub samples: usize,
    /// Adaptation steps of every method.
    pub steps: usize,
    pub seed: u64,
    /// `eval.json` and the sample grids go here.
    pub out: PathBuf,
    /// GenDA's adapted generators are saved here, one folder per target (none: not saved).
    pub save_genda: Option<PathBuf>,
}

impl Default for GanEvalRequest {
    fn default() -> Self {
        Self {
            source: super::source_dir(),
            features: super::features_dir(),
            targets: Domain::TARGETS.to_vec(),
            methods: Method::ALL.to_vec(),
            samples: 1000,
            steps: AdaptRequest::new(Method::Genda, Target::domain(Domain::Sunglasses)).steps,
            seed: 0,
            out: super::results_dir(),
            save_genda: Some(super::models_dir()),
        }
    }
}

/// One generator against one target domain. `model` is `source` or a method's name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalRow {
    pub target: Domain,
    pub model: String,
    pub fd: f64,
    pub precision: f64,
    pub recall: f64,
    /// The share of samples the feature network classifies as the target domain.
    pub target_share: f64,
    /// Adaptation wall time (0 for the source).
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GanEvalOutcome {
    pub samples: usize,
    pub steps: usize,
    pub rows: Vec<EvalRow>,
    pub seconds: f64,
}

impl Report for GanEvalOutcome {
    fn metrics(&self) -> serde_json::Value {
        json!(self.rows)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalProgress {
    pub done: usize,
    pub total: usize,
    pub message: String,
    pub row: Option<EvalRow>,
}

/// Where the grid of `model` on `target` is written.
pub fn grid_path(dir: &Path, target: Domain, model: &str) -> PathBuf {
    dir.join(format!("{}-{model}.png", target.name()))
}

/// The folder GenDA's adapted generator for `target` is saved in.
pub fn genda_dir(models: &Path, target: Domain) -> PathBuf {
    models.join(format!("genda-{}", target.name()))
}

pub fn eval(
    request: &GanEvalRequest,
    on_progress: &mut dyn FnMut(EvalProgress) -> Result<()>,
) -> Result<GanEvalOutcome> {
    let started = Instant::now();
    let net = FeatureNet::load(&request.features)?;
    let source = Gan::load(&request.source, true)?;
    let latent = source.cfg.latent;
    let eval_z = latents(
        &mut StdRng::seed_from_u64(request.seed ^ 0xE7A1),
        request.samples,
        latent,
    )?;
    let preview_z = preview_latents(16, latent)?;
    let total = request.targets.len() * (1 + request.methods.len());
    let mut rows = Vec::new();
    let source_model = Adapted::source(source);
    for &target in &request.targets {
        // Index 0 is the reference; the real set starts after it.
        let real = net.features(&render_many(target, 1, request.samples, 0))?;
        let score = |model: &str, adapted: &Adapted, seconds: f64| -> Result<EvalRow> {
            let images = adapted.sample(&eval_z, 1.0)?;
            let fake = net.features(&images)?;
            let (precision, recall) = precision_recall(&real, &fake, 3);
            let named = net.classify(&images)?;
            let share = named.iter().filter(|&&d| d == target).count() as f64 / named.len() as f64;
            super::grid::write_png(
                &grid_path(&request.out, target, model),
                &adapted.sample(&preview_z, 1.0)?,
                SIZE,
                4,
                2,
            )?;
            Ok(EvalRow {
                target,
                model: model.to_string(),
                fd: frechet_distance(&real, &fake),
                precision,
                recall,
                target_share: share,
                seconds,
            })
        };
        let row = score("source", &source_model, 0.0)?;
        rows.push(row.clone());
        on_progress(EvalProgress {
            done: rows.len(),
            total,
            message: format!("{target}: source FD {:.2}", row.fd),
            row: Some(row),
        })?;
        for &method in &request.methods {
            let mut r = AdaptRequest::new(method, Target::domain(target));
            r.source = request.source.clone();
            r.steps = request.steps;
            r.seed = request.seed;
            r.preview_every = 0;
            if method == Method::Genda {
                r.out = request.save_genda.as_ref().map(|m| genda_dir(m, target));
            }
            let done = rows.len();
            let (adapted, outcome) = adapt(&r, &mut |s| {
                on_progress(EvalProgress {
                    done,
                    total,
                    message: format!("{target}: {method} step {}/{}", s.step, s.total),
                    row: None,
                })
            })?;
            let row = score(method.name(), &adapted, outcome.seconds)?;
            rows.push(row.clone());
            on_progress(EvalProgress {
                done: rows.len(),
                total,
                message: format!("{target}: {method} FD {:.2}", row.fd),
                row: Some(row),
            })?;
        }
    }
    let outcome = GanEvalOutcome {
        samples: request.samples,
        steps: request.steps,
        rows,
        seconds: started.elapsed().as_secs_f64(),
    };
    crate::fs::write_json(&request.out.join("eval.json"), &outcome)?;
    Ok(outcome)
}

/// The shipped (or last written) evaluation, if there is one.
pub fn load_results(dir: &Path) -> Result<GanEvalOutcome> {
    crate::fs::read_json(&dir.join("eval.json"), "a GAN evaluation")
}

pub fn spawn_eval(
    board: &JobBoard,
    request: GanEvalRequest,
) -> JobHandle<EvalProgress, GanEvalOutcome> {
    let spec = JobSpec {
        kind: "gan-eval".into(),
        title: "GAN lab evaluation".into(),
        inputs: serde_json::to_value(&request).unwrap_or_default(),
        seed: Some(request.seed),
    };
    board.spawn(spec, move |ctx: &JobCtx<EvalProgress>| {
        std::fs::create_dir_all(&request.out)?;
        eval(&request, &mut |p| {
            ctx.check()?;
            ctx.progress(
                Some(p.done as f32 / p.total.max(1) as f32),
                p.message.clone(),
            );
            ctx.send(p);
            Ok(())
        })
    })
}
