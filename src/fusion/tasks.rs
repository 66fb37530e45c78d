//! The fusion experiment as a job, called by the Fusion page and `alignscope fuse` alike: maps
//! and score rows stream out as they are made; the defaults live in [`LabOptions`].

use std::path::PathBuf;

use serde::Serialize;
use serde_json::json;

use super::lab::{run, LabEvent, LabOptions, LabReport, ScoreRow};
use super::transport::TransportMap;
use crate::jobs::{JobBoard, JobHandle, JobSpec, Report};
use crate::zoo::tasks::build_progress;

/// Two parents (folders or zoo names; zoo models are built first if missing) and the options.
#[derive(Debug, Clone, Serialize)]
pub struct FuseRequest {
    pub model_a: String,
    pub model_b: String,
    /// Further parents (folders or zoo names) fused into the anchor with A.
    pub more: Vec<String>,
    pub options: LabOptions,
    /// Write the last solver's fused model here: all parents' fusion when there are more than
    /// two, else the pair's (its fine-tuned version when there is one).
    pub out: Option<PathBuf>,
}

impl FuseRequest {
    pub fn new(model_a: &str, model_b: &str) -> Self {
        Self {
            model_a: model_a.to_string(),
            model_b: model_b.to_string(),
            more: Vec::new(),
            options: LabOptions::default(),
            out: None,
        }
    }
}

/// What the job sends while it runs.
pub enum FusionUpdate {
    Row(ScoreRow),
    /// A map of the run with this index (the order of `options.solvers`).
    Map(usize, TransportMap),
}

pub struct FusionOutcome {
    pub model_a: PathBuf,
    pub model_b: PathBuf,
    pub report: LabReport,
    pub out: Option<PathBuf>,
}

impl FusionOutcome {
    /// The report `alignscope fuse --json` prints: rows, and each map's size and quality.
    pub fn to_json(&self, options: &LabOptions) -> serde_json::Value {
        let r = &self.report;
        let runs: Vec<_> = r
            .runs
            .iter()
            .map(|run| {
                json!({
                    "solver": run.solver,
                    "maps": run.maps.iter().map(|m| json!({
                        "name": m.name,
                        "rows": m.plan.rows,
                        "cols": m.plan.cols,
                        "sharpness": m.sharpness(),
                        "transport_cost": m.transport_and_mean_cost().map(|c| c.0),
                        "mean_cost": m.transport_and_mean_cost().map(|c| c.1),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "model_a": self.model_a, "model_b": self.model_b,
            "widths": [r.widths.0, r.widths.1],
            "anchor": if r.anchor_is_a { "A" } else { "B" },
            "options": options,
            "rows": r.rows,
            "runs": runs,
            "out": self.out,
        })
    }
}

impl Report for FusionOutcome {
    fn metrics(&self) -> serde_json::Value {
        serde_json::to_value(&self.report.rows).unwrap_or_default()
    }
    fn outputs(&self) -> serde_json::Value {
        json!({ "out": self.out })
    }
}

pub fn spawn_fuse(
    board: &JobBoard,
    request: FuseRequest,
) -> JobHandle<FusionUpdate, FusionOutcome> {
    let spec = JobSpec {
        kind: "fusion".into(),
        title: format!("fuse {} + {}", request.model_a, request.model_b),
        inputs: serde_json::to_value(&request).unwrap_or_default(),
        seed: Some(request.options.finetune_seed),
    };
    board.spawn(spec, move |ctx| {
        let mut on_build = build_progress(ctx);
        let a = crate::zoo::resolve(&request.model_a, &mut on_build)?;
        let b = crate::zoo::resolve(&request.model_b, &mut on_build)?;
        let mut parents = vec![a.clone(), b.clone()];
        for m in &request.more {
            parents.push(crate::zoo::resolve(m, &mut on_build)?);
        }
        let report = run(&parents, &request.options, &mut |event| {
            ctx.check()?;
            match event {
                LabEvent::Stage(s) => ctx.progress(None, s),
                LabEvent::Map {
                    run,
                    map,
                    done,
                    total,
                } => {
                    ctx.progress(
                        Some(done as f32 / total as f32),
                        format!("map {done}/{total}: {}", map.name),
                    );
                    ctx.send(FusionUpdate::Map(run, map.clone()));
                }
                LabEvent::Row(row) => {
                    ctx.log(format!("{}: {}", row.model, row.describe()));
                    ctx.send(FusionUpdate::Row(row.clone()));
                }
                LabEvent::Step(s) => ctx.progress(
                    Some(s.step as f32 / s.total as f32),
                    format!("fine-tune step {}/{} · loss {:.3}", s.step, s.total, s.loss),
                ),
            }
            Ok(())
        })?;
        if let (Some(out), Some(last)) = (&request.out, report.runs.last()) {
            let chosen = last.all.as_ref().or(last.finetuned.as_ref());
            chosen.unwrap_or(&last.weights).save(out)?;
        }
        Ok(FusionOutcome {
            model_a: a,
            model_b: b,
            report,
            out: request.out.clone(),
        })
    })
}
