//! What the page and `caption sample` show: test scenes with the base and the DiscriTuned
//! captions side by side, and the retrieval game — a caption over 16 candidate scenes, the
//! retriever's choice and the target.

use std::path::{Path, PathBuf};

use anyhow::Result;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::build::Part;
use super::captioner::{Captioner, Decoding};
use super::discritune::tuned_dir;
use super::eval::{batch_scores, captions};
use super::retriever::Retriever;
use super::scenes::{scene, Domain, Scene, Split};
use crate::jobs::{JobBoard, JobCtx, JobHandle, JobSpec, Report};

/// Candidates in a round of the retrieval game.
pub const CANDIDATES: usize = 16;

/// The captioners shown: the base one, and the DiscriTuned one where it has been trained.
pub fn captioners() -> Vec<(&'static str, PathBuf)> {
    let mut v = vec![("base", Part::Captioner.dir())];
    if tuned_dir().join("model.safetensors").is_file() {
        v.push(("discritune", tuned_dir()));
    }
    v
}

fn load_all(dirs: &[(&'static str, PathBuf)]) -> Result<Vec<(&'static str, Captioner)>> {
    dirs.iter()
        .map(|(name, dir)| Ok((*name, Captioner::load(dir)?)))
        .collect()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GalleryItem {
    pub index: u64,
    pub rgb: Vec<u8>,
    pub description: String,
    /// (captioner, caption) for each captioner shown.
    pub captions: Vec<(String, String)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Gallery {
    pub domain: Domain,
    pub decoding: Decoding,
    pub items: Vec<GalleryItem>,
}

impl Report for Gallery {
    fn metrics(&self) -> serde_json::Value {
        serde_json::json!({ "scenes": self.items.len() })
    }
}

/// Test scenes `first..first + n` of `domain` with every captioner's caption.
pub fn gallery(
    dirs: &[(&'static str, PathBuf)],
    domain: Domain,
    decoding: Decoding,
    first: u64,
    n: usize,
) -> Result<Gallery> {
    let encoder = Retriever::load(&Part::RetrieverA.dir())?;
    let scenes: Vec<Scene> = (first..first + n as u64)
        .map(|i| scene(domain, Split::Test, i))
        .collect();
    let mut per_model = Vec::new();
    for (name, c) in load_all(dirs)? {
        let mut rng = StdRng::seed_from_u64(first);
        per_model.push((name, captions(&c, &encoder, &scenes, decoding, &mut rng)?));
    }
    let items = scenes
        .iter()
        .enumerate()
        .map(|(k, s)| GalleryItem {
            index: first + k as u64,
            rgb: s.rgb8(),
            description: s.description(),
            captions: per_model
                .iter()
                .map(|(name, caps)| (name.to_string(), caps[k].clone()))
                .collect(),
        })
        .collect();
    Ok(Gallery {
        domain,
        decoding,
        items,
    })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Guess {
    pub captioner: String,
    pub caption: String,
    /// The retriever's score of the caption against each candidate.
    pub scores: Vec<f32>,
    /// The candidate the retriever picks.
    pub choice: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Round {
    pub domain: Domain,
    pub number: u64,
    /// Test scene indices.
    pub candidates: Vec<u64>,
    pub rgb: Vec<Vec<u8>>,
    /// The position of the captioned scene among the candidates.
    pub target: usize,
    pub guesses: Vec<Guess>,
}

impl Report for Round {
    fn metrics(&self) -> serde_json::Value {
        let hits: Vec<bool> = self
            .guesses
            .iter()
            .map(|g| g.choice == self.target)
            .collect();
        serde_json::json!({ "found": hits })
    }
}

/// Round `number` of the game on `domain`: 16 test scenes, one of them captioned by every
/// captioner, and the training retriever's pick for each caption.
pub fn round(
    dirs: &[(&'static str, PathBuf)],
    domain: Domain,
    number: u64,
    decoding: Decoding,
) -> Result<Round> {
    let retriever = Retriever::load(&Part::RetrieverA.dir())?;
    let mut rng = StdRng::seed_from_u64(number);
    let first = 10_000 + number * CANDIDATES as u64;
    let candidates: Vec<u64> = (first..first + CANDIDATES as u64).collect();
    let scenes: Vec<Scene> = candidates
        .iter()
        .map(|&i| scene(domain, Split::Test, i))
        .collect();
    let target = rng.random_range(0..CANDIDATES);
    let refs: Vec<&Scene> = scenes.iter().collect();
    let mut guesses = Vec::new();
    for (name, c) in load_all(dirs)? {
        let caption =
            captions(&c, &retriever, &scenes[target..=target], decoding, &mut rng)?.remove(0);
        let scores = batch_scores(&retriever, &refs, &[caption.as_str()])?.remove(0);
        let choice = (0..scores.len())
            .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
            .unwrap_or(0);
        guesses.push(Guess {
            captioner: name.to_string(),
            caption,
            scores,
            choice,
        });
    }
    Ok(Round {
        domain,
        number,
        rgb: scenes.iter().map(Scene::rgb8).collect(),
        candidates,
        target,
        guesses,
    })
}

pub fn spawn_gallery(
    board: &JobBoard,
    domain: Domain,
    decoding: Decoding,
    first: u64,
    n: usize,
) -> JobHandle<(), Gallery> {
    let spec = JobSpec {
        kind: "caption-gallery".into(),
        title: format!("captions ({domain}, {decoding})"),
        inputs: serde_json::json!({ "domain": domain, "decoding": decoding, "first": first, "n": n }),
        seed: None,
    };
    board.spawn(spec, move |_: &JobCtx<()>| {
        gallery(&captioners(), domain, decoding, first, n)
    })
}

pub fn spawn_round(
    board: &JobBoard,
    domain: Domain,
    number: u64,
    decoding: Decoding,
) -> JobHandle<(), Round> {
    let spec = JobSpec {
        kind: "caption-game".into(),
        title: format!("retrieval game round {number} ({domain})"),
        inputs: serde_json::json!({ "domain": domain, "number": number, "decoding": decoding }),
        seed: Some(number),
    };
    board.spawn(spec, move |_: &JobCtx<()>| {
        round(&captioners(), domain, number, decoding)
    })
}

/// A contact sheet of the gallery: each scene with its captions (base grey, tuned green).
pub fn write_sheet(path: &Path, gallery: &Gallery, columns: usize) -> Result<()> {
    let colours = [[90, 90, 90], [20, 130, 40], [30, 60, 200]];
    let cells: Vec<super::grid::Cell> = gallery
        .items
        .iter()
        .map(|item| super::grid::Cell {
            rgb: item.rgb.clone(),
            captions: item
                .captions
                .iter()
                .enumerate()
                .map(|(k, (name, c))| (format!("{name}: {c}"), colours[k % colours.len()]))
                .collect(),
        })
        .collect();
    super::grid::write_png(path, &cells, columns)
}
