//! The zoo's long operations as jobs, shared by the Zoo page and `alignscope zoo`: building
//! (training) models and re-scoring them against the manifest.

use serde::Serialize;
use serde_json::json;

use super::specs::{score_entry, spec, EvalContext};
use super::{BuildEvent, Manifest, ModelEntry};
use crate::jobs::{JobBoard, JobCtx, JobHandle, JobSpec, Report};

impl Report for Manifest {
    fn metrics(&self) -> serde_json::Value {
        self.models
            .iter()
            .map(|m| (m.name.clone(), json!(m.score)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}

/// Reports zoo models built on first use (see [`super::resolve`]) as a job's progress; the
/// job's cancellation stops the build.
pub fn build_progress<P>(ctx: &JobCtx<P>) -> impl FnMut(BuildEvent) -> anyhow::Result<()> + '_ {
    |event| {
        ctx.check()?;
        let (fraction, message) = event.progress();
        ctx.progress(fraction, message);
        Ok(())
    }
}

/// Trains `names` (all, bases first, when empty); the manifest is updated after each model.
/// Every build event arrives as a partial result.
pub fn spawn_build(board: &JobBoard, names: Vec<String>) -> JobHandle<BuildEvent, Manifest> {
    let spec = JobSpec {
        kind: "zoo-build".into(),
        title: if names.is_empty() {
            "zoo build (all)".into()
        } else {
            format!("zoo build {}", names.join(", "))
        },
        inputs: json!({ "models": names }),
        seed: None,
    };
    board.spawn(spec, move |ctx| {
        super::build(&names, &mut |event| {
            ctx.check()?;
            let (fraction, message) = event.progress();
            ctx.progress(fraction, message);
            ctx.send(event);
            Ok(())
        })
    })
}

/// A model re-scored as it lies on disk, beside what the manifest recorded.
#[derive(Debug, Clone, Serialize)]
pub struct Rescored {
    pub entry: ModelEntry,
    pub manifest_score: f64,
}

/// Models not built yet (named, so the caller can say how to build them) and the rest
/// re-scored.
pub struct Rescoring {
    pub rows: Vec<Rescored>,
    pub not_built: Vec<String>,
}

impl Report for Rescoring {
    fn metrics(&self) -> serde_json::Value {
        self.rows
            .iter()
            .map(|r| (r.entry.name.clone(), json!(r.entry.score)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}

/// Re-scores the manifest's models (only `only` when not empty); with `write`, the new scores
/// go into the manifest (training time and loss curve are kept). Each row arrives as a
/// partial result.
pub fn spawn_rescore(
    board: &JobBoard,
    only: Vec<String>,
    write: bool,
) -> JobHandle<Rescored, Rescoring> {
    let job = JobSpec {
        kind: "zoo-eval".into(),
        title: "zoo eval".into(),
        inputs: json!({ "models": only, "write": write }),
        seed: None,
    };
    board.spawn(job, move |ctx| {
        let path = super::manifest_path();
        let mut manifest = Manifest::load(&path)?;
        let order: Vec<&str> = super::specs().iter().map(|s| s.name).collect();
        let mut eval = EvalContext::new()?;
        let chosen: Vec<ModelEntry> = manifest
            .models
            .iter()
            .filter(|m| only.is_empty() || only.contains(&m.name))
            .cloned()
            .collect();
        let (mut rows, mut not_built) = (Vec::new(), Vec::new());
        for (i, recorded) in chosen.iter().enumerate() {
            ctx.check()?;
            ctx.progress(
                Some(i as f32 / chosen.len() as f32),
                format!("scoring {}", recorded.name),
            );
            let s = spec(&recorded.name)?;
            if !s.path().join("model.safetensors").exists() {
                not_built.push(s.name.to_string());
                continue;
            }
            let fresh = score_entry(
                &s,
                &mut eval,
                recorded.train_seconds,
                recorded.loss_curve.clone(),
            )?;
            let row = Rescored {
                entry: fresh,
                manifest_score: recorded.score,
            };
            ctx.send(row.clone());
            rows.push(row);
        }
        if write {
            for r in &rows {
                manifest.upsert(r.entry.clone(), &order);
            }
            manifest.save(&path)?;
        }
        Ok(Rescoring { rows, not_built })
    })
}
