//! Scoring a captioner on a domain's test scenes: retrieval P@1 in batches of 100 by the
//! training retriever and by the held-out one, BLEU-4 and CIDEr-D against the five reference
//! captions, length and vocabulary, and speed. One result file per captioner and domain.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{ensure, Result};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::build::Part;
use super::captioner::{features, Captioner, Decoding};
use super::metrics::{bleu4, cider_d, length_and_vocabulary, precision_at_1};
use super::retriever::Retriever;
use super::scenes::{scene, Domain, Scene, Split};
use super::vocab;
use crate::jobs::{JobBoard, JobCtx, JobHandle, JobSpec, Report};

/// The paper's retrieval batch: the target among 99 other images.
pub const RETRIEVAL_BATCH: usize = 100;

/// The test scenes of a domain, `0..n`.
pub fn test_scenes(domain: Domain, n: usize) -> Vec<Scene> {
    (0..n as u64)
        .map(|i| scene(domain, Split::Test, i))
        .collect()
}

/// Captions of scenes (chunks of a retrieval batch at a time).
pub fn captions(
    captioner: &Captioner,
    encoder: &Retriever,
    scenes: &[Scene],
    decoding: Decoding,
    rng: &mut StdRng,
) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(scenes.len());
    for chunk in scenes.chunks(RETRIEVAL_BATCH) {
        let refs: Vec<&Scene> = chunk.iter().collect();
        let f = features(encoder, &refs)?;
        for ids in captioner.decode(&f, decoding, rng)? {
            out.push(vocab::decode(&ids));
        }
    }
    Ok(out)
}

/// Retriever scores `[caption, image]` of one batch.
pub fn batch_scores(
    retriever: &Retriever,
    scenes: &[&Scene],
    captions: &[&str],
) -> Result<Vec<Vec<f32>>> {
    let ids = captions
        .iter()
        .map(|c| vocab::encode(c))
        .collect::<Result<Vec<_>>>()?;
    let images = retriever.images(&super::retriever::pixels(scenes)?)?;
    let texts = retriever.encoded(&ids)?;
    Ok(retriever.scores(&texts, &images)?.to_vec2()?)
}

/// Mean P@1 (0–100) over consecutive batches of [`RETRIEVAL_BATCH`] scenes.
pub fn precision(retriever: &Retriever, scenes: &[Scene], captions: &[String]) -> Result<f64> {
    let mut sum = 0.0;
    let mut batches = 0;
    for (s, c) in scenes
        .chunks(RETRIEVAL_BATCH)
        .zip(captions.chunks(RETRIEVAL_BATCH))
    {
        let s: Vec<&Scene> = s.iter().collect();
        let c: Vec<&str> = c.iter().map(String::as_str).collect();
        sum += precision_at_1(&batch_scores(retriever, &s, &c)?);
        batches += 1;
    }
    Ok(sum / batches.max(1) as f64)
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaptionEvalRequest {
    pub captioner: PathBuf,
    /// The row's name in the results.
    pub label: String,
    pub domain: Domain,
    /// Test scenes captioned (a multiple of 100 keeps every retrieval batch whole).
    pub images: usize,
    pub decoding: Decoding,
    pub seed: u64,
    pub out: PathBuf,
}

impl CaptionEvalRequest {
    /// The base captioner on `domain`'s first 500 test scenes with beam search (the paper's
    /// test decoding).
    pub fn new(domain: Domain) -> Self {
        Self::of(Part::Captioner.dir(), "base", domain)
    }

    pub fn of(captioner: PathBuf, label: &str, domain: Domain) -> Self {
        Self {
            captioner,
            label: label.to_string(),
            domain,
            images: 500,
            decoding: Decoding::Beam,
            seed: 0,
            out: result_path(label, domain),
        }
    }
}

pub fn result_path(label: &str, domain: Domain) -> PathBuf {
    super::results_dir().join(format!("{label}-{domain}.json"))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
    pub index: u64,
    pub caption: String,
    pub references: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaptionScores {
    pub label: String,
    pub domain: Domain,
    pub decoding: Decoding,
    pub images: usize,
    /// P@1 in batches of 100 by the retriever DiscriTune rewards with.
    pub p_at_1: f64,
    /// P@1 by the held-out retriever.
    pub p_at_1_judge: f64,
    pub bleu4: f64,
    pub cider_d: f64,
    pub length: f64,
    pub vocabulary: usize,
    pub captions_per_second: f64,
    /// The first test scenes' captions.
    pub samples: Vec<Sample>,
}

impl Report for CaptionScores {
    fn metrics(&self) -> serde_json::Value {
        json!({ "p_at_1": self.p_at_1, "p_at_1_judge": self.p_at_1_judge, "bleu4": self.bleu4,
                "cider_d": self.cider_d, "length": self.length, "vocabulary": self.vocabulary,
                "captions_per_second": self.captions_per_second })
    }
}

/// Every caption of `scenes` scored; `a` is the reward's retriever.
pub fn score(
    a: &Retriever,
    label: &str,
    domain: Domain,
    decoding: Decoding,
    scenes: &[Scene],
    captions: &[String],
    seconds: f64,
) -> Result<CaptionScores> {
    let b = Retriever::load(&Part::RetrieverB.dir())?;
    let references: Vec<Vec<String>> = scenes
        .iter()
        .zip(0u64..)
        .map(|(s, i)| s.references(i))
        .collect();
    let (length, vocabulary) = length_and_vocabulary(captions);
    Ok(CaptionScores {
        label: label.to_string(),
        domain,
        decoding,
        images: scenes.len(),
        p_at_1: precision(a, scenes, captions)?,
        p_at_1_judge: precision(&b, scenes, captions)?,
        bleu4: bleu4(captions, &references),
        cider_d: cider_d(captions, &references),
        length,
        vocabulary,
        captions_per_second: scenes.len() as f64 / seconds.max(1e-9),
        samples: (0..scenes.len().min(24))
            .map(|i| Sample {
                index: i as u64,
                caption: captions[i].clone(),
                references: references[i].clone(),
            })
            .collect(),
    })
}

pub fn eval(request: &CaptionEvalRequest) -> Result<CaptionScores> {
    ensure!(request.images > 0, "no test scenes to caption");
    let captioner = Captioner::load(&request.captioner)?;
    let encoder = Retriever::load(&Part::RetrieverA.dir())?;
    let scenes = test_scenes(request.domain, request.images);
    let mut rng = StdRng::seed_from_u64(request.seed);
    let started = Instant::now();
    let caps = captions(&captioner, &encoder, &scenes, request.decoding, &mut rng)?;
    let seconds = started.elapsed().as_secs_f64();
    let scores = score(
        &encoder,
        &request.label,
        request.domain,
        request.decoding,
        &scenes,
        &caps,
        seconds,
    )?;
    if let Some(parent) = request.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    crate::fs::write_json(&request.out, &scores)?;
    Ok(scores)
}

/// Every result file in `dir` (unreadable ones as errors).
pub fn read_results(dir: &Path) -> (Vec<CaptionScores>, Vec<String>) {
    crate::fs::read_json_folder(dir, "a caption result")
}

pub fn spawn_eval(board: &JobBoard, request: CaptionEvalRequest) -> JobHandle<(), CaptionScores> {
    let spec = JobSpec {
        kind: "caption-eval".into(),
        title: format!("caption eval ({}, {})", request.label, request.domain),
        inputs: serde_json::to_value(&request).unwrap_or_default(),
        seed: Some(request.seed),
    };
    board.spawn(spec, move |ctx: &JobCtx<()>| {
        ctx.stage("captioning")?;
        eval(&request)
    })
}
