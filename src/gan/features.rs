//! The feature network that stands in for Inception: the discriminator's architecture trained
//! on faces of all four domains to regress every drawn attribute (the domain's own —
//! sunglasses, baby proportions, sketch — as well as colours, shapes and places), so its
//! features weigh the variety within a domain on the same scale as the difference between
//! domains. (Trained to name the domain as well, its features were dominated by the domain:
//! a generator collapsed onto the one reference scored an FD of 4 against 66 for the
//! unadapted source.) FD and precision/recall are computed on its backbone features: "FD in
//! our feature space".

use std::path::Path;

use anyhow::Result;
use candle_core::Tensor;
use candle_nn::VarMap;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::faces::{Domain, Face};
use super::model::{to_tensor, Discriminator, GanConfig};
use crate::train::model_folder::{load_weights, read_config, save_model};
use crate::train::{seeded_builder, Schedule, StepReport};

pub const KIND: &str = "gan-features";

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FeatureRecipe {
    pub net: GanConfig,
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    pub seed: u64,
}

impl Default for FeatureRecipe {
    fn default() -> Self {
        Self {
            net: GanConfig {
                d_channels: [24, 48, 96],
                ..GanConfig::default()
            },
            steps: 1200,
            batch: 32,
            lr: 1e-3,
            seed: 7,
        }
    }
}

/// The attributes regressed, each scaled to about unit range.
fn attributes(f: &Face) -> Vec<f32> {
    let mut a = vec![
        f.babyness,
        f.sunglasses as u8 as f32,
        f.sketch as u8 as f32,
        f.fade,
        f.centre[0] * 4.0,
        f.centre[1] * 4.0,
        f.half_width * 4.0,
        f.half_height * 4.0,
        f.hairline * 2.0,
        f.long_hair as u8 as f32,
        f.light * 3.0,
        f.eye_gap * 3.0,
        f.eye_size * 8.0,
        f.brow_tilt * 2.0,
        f.nose_length * 4.0,
        f.mouth_width * 3.0,
        f.smile,
    ];
    for colour in [f.skin, f.hair, f.background, f.iris, f.lips] {
        a.extend(colour);
    }
    a
}

const ATTRIBUTES: usize = 32;

pub struct FeatureNet {
    net: Discriminator,
}

impl FeatureNet {
    pub fn load(dir: &Path) -> Result<Self> {
        let recipe: FeatureRecipe = read_config(dir, KIND)?;
        let vars = VarMap::new();
        let net = Discriminator::new(&seeded_builder(&vars, 0), "f", &recipe.net, ATTRIBUTES)?;
        load_weights(&vars, dir)?;
        Ok(Self { net })
    }

    /// Backbone features of RGB images, `[n, features]` as rows, in chunks of 250.
    pub fn features(&self, images: &[Vec<u8>]) -> Result<Vec<Vec<f32>>> {
        let mut rows = Vec::with_capacity(images.len());
        for chunk in images.chunks(250) {
            let f = self.net.backbone(&to_tensor(chunk)?)?;
            rows.extend(f.to_vec2::<f32>()?);
        }
        Ok(rows)
    }

    /// The domain each image looks like, from its predicted attributes: a sketch, else
    /// sunglasses, else baby proportions, else a source face.
    pub fn classify(&self, images: &[Vec<u8>]) -> Result<Vec<Domain>> {
        let predicted = self.net.forward(&to_tensor(images)?)?.to_vec2::<f32>()?;
        Ok(predicted
            .iter()
            .map(|a| {
                if a[2] > 0.5 {
                    Domain::Sketch
                } else if a[1] > 0.5 {
                    Domain::Sunglasses
                } else if a[0] > 0.6 {
                    Domain::Baby
                } else {
                    Domain::Source
                }
            })
            .collect())
    }
}

/// Trains the feature network on faces of every domain and saves it to `out`.
pub fn train(
    recipe: &FeatureRecipe,
    out: &Path,
    on_step: &mut dyn FnMut(StepReport) -> Result<()>,
) -> Result<Vec<f32>> {
    let vars = VarMap::new();
    let net = Discriminator::new(
        &seeded_builder(&vars, recipe.seed),
        "f",
        &recipe.net,
        ATTRIBUTES,
    )?;
    let mut rng = StdRng::seed_from_u64(recipe.seed);
    // Faces from a seed of their own, so the evaluation sets (seed 0) are unseen.
    let face_seed = recipe.seed ^ 0xFEA7;
    let losses = crate::train::train_loop(
        &vars,
        crate::train::Pull::None,
        Schedule::new(recipe.steps, recipe.lr, 0.05),
        |_| {
            let picks: Vec<(usize, u64)> = (0..recipe.batch)
                .map(|_| {
                    (
                        rng.random_range(0..Domain::ALL.len()),
                        rng.random::<u32>() as u64,
                    )
                })
                .collect();
            let faces: Vec<Face> = picks
                .iter()
                .map(|&(d, i)| Face::sample(Domain::ALL[d], i, face_seed))
                .collect();
            let images: Vec<Vec<u8>> = faces.iter().map(Face::render).collect();
            let x = to_tensor(&images).map_err(candle_core::Error::wrap)?;
            let targets: Vec<f32> = faces.iter().flat_map(attributes).collect();
            let targets = Tensor::from_vec(targets, (recipe.batch, ATTRIBUTES), x.device())?;
            (net.forward(&x)? - targets)?.sqr()?.mean_all()
        },
        &mut |s| on_step(s),
    )?;
    save_model(out, &vars, KIND, recipe)?;
    Ok(losses)
}

pub fn spawn_train(
    board: &crate::jobs::JobBoard,
    recipe: FeatureRecipe,
    out: std::path::PathBuf,
) -> crate::jobs::JobHandle<StepReport, Trained> {
    let spec = crate::jobs::JobSpec {
        kind: "gan-features".into(),
        title: "feature network".into(),
        inputs: serde_json::json!({ "recipe": recipe, "out": out }),
        seed: Some(recipe.seed),
    };
    board.spawn(spec, move |ctx: &crate::jobs::JobCtx<StepReport>| {
        let losses = train(&recipe, &out, &mut |s| {
            ctx.check()?;
            ctx.progress(
                Some(s.step as f32 / s.total.max(1) as f32),
                format!("step {}/{} · loss {:.3}", s.step, s.total, s.loss),
            );
            ctx.send(s);
            Ok(())
        })?;
        Ok(Trained {
            first_loss: losses.first().copied().unwrap_or(f32::NAN),
            last_loss: losses.last().copied().unwrap_or(f32::NAN),
        })
    })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Trained {
    pub first_loss: f32,
    pub last_loss: f32,
}

impl crate::jobs::Report for Trained {
    fn metrics(&self) -> serde_json::Value {
        serde_json::json!(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_face_has_all_attributes() {
        for &d in Domain::ALL {
            assert_eq!(attributes(&Face::sample(d, 1, 0)).len(), ATTRIBUTES);
        }
    }
}
