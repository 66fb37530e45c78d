//! The lab's model recipes, one job: the training retriever (`retriever-a`), the held-out
//! judge (`retriever-b`, another seed) and the base captioner (`captioner-base`, on
//! `retriever-a`'s image embeddings). About 11 minutes on 2 cores in all (docs/caption.md).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::captioner::{self, CaptionerRecipe};
use super::retriever::{self, Retriever, RetrieverRecipe};
use crate::jobs::{JobBoard, JobCtx, JobHandle, JobSpec, Report};
use crate::train::StepReport;

crate::named_enum! {
    "model";
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum Part {
        /// The retriever whose log-probability is DiscriTune's reward.
        RetrieverA = "retriever-a",
        /// The held-out retriever (another seed), a judge the captioner never trained against.
        RetrieverB = "retriever-b",
        /// ClipCap-style captioner trained on the reference captions.
        Captioner = "captioner-base",
    }
}

impl Part {
    pub fn dir(self) -> PathBuf {
        super::models_dir().join(self.name())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildRequest {
    pub parts: Vec<Part>,
    pub retriever_a: RetrieverRecipe,
    pub retriever_b: RetrieverRecipe,
    pub captioner: CaptionerRecipe,
}

impl Default for BuildRequest {
    fn default() -> Self {
        Self {
            parts: Part::ALL.to_vec(),
            retriever_a: RetrieverRecipe::new(0),
            retriever_b: RetrieverRecipe::new(1),
            captioner: CaptionerRecipe::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct BuildStep {
    pub part: Part,
    pub step: usize,
    pub total: usize,
    pub loss: f32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Built {
    pub part: Part,
    pub first_loss: f32,
    pub last_loss: f32,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BuildOutcome {
    pub built: Vec<Built>,
}

impl Report for BuildOutcome {
    fn metrics(&self) -> serde_json::Value {
        json!(self.built)
    }
    fn outputs(&self) -> serde_json::Value {
        json!(self.built.iter().map(|b| b.part.dir()).collect::<Vec<_>>())
    }
}

pub fn build(
    request: &BuildRequest,
    on_step: &mut dyn FnMut(BuildStep) -> Result<()>,
) -> Result<BuildOutcome> {
    let mut built = Vec::new();
    for &part in &request.parts {
        let started = Instant::now();
        let mut report = |s: StepReport| {
            on_step(BuildStep {
                part,
                step: s.step,
                total: s.total,
                loss: s.loss,
            })
        };
        let losses = match part {
            Part::RetrieverA => retriever::train(&request.retriever_a, &part.dir(), &mut report)?,
            Part::RetrieverB => retriever::train(&request.retriever_b, &part.dir(), &mut report)?,
            Part::Captioner => {
                let reward = Retriever::load(&Part::RetrieverA.dir())?;
                captioner::train(&request.captioner, &reward, &part.dir(), &mut report)?
            }
        };
        built.push(Built {
            part,
            first_loss: losses.first().copied().unwrap_or(f32::NAN),
            last_loss: losses.last().copied().unwrap_or(f32::NAN),
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    Ok(BuildOutcome { built })
}

pub fn spawn_build(board: &JobBoard, request: BuildRequest) -> JobHandle<BuildStep, BuildOutcome> {
    let spec = JobSpec {
        kind: "caption-build".into(),
        title: "caption lab models".into(),
        inputs: serde_json::to_value(&request).unwrap_or_default(),
        seed: None,
    };
    board.spawn(spec, move |ctx: &JobCtx<BuildStep>| {
        build(&request, &mut |s| {
            ctx.check()?;
            ctx.progress(
                Some(s.step as f32 / s.total.max(1) as f32),
                format!(
                    "{} · step {}/{} · loss {:.3}",
                    s.part, s.step, s.total, s.loss
                ),
            );
            ctx.send(s);
            Ok(())
        })
    })
}
