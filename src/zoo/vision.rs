//! The vision family: ViT classifiers trained from scratch on the generated shape scenes.

use std::path::Path;

use anyhow::Result;
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use crate::data::shapes::{label_names, scene, Scene, Split};
use crate::eval::classifier::scene_tensor;
use crate::train::vit::{classification_loss, TrainVit, VitShape};
use crate::train::{train_loop, Pull, Schedule, StepReport};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VitRecipe {
    pub shape: VitShape,
    pub steps: usize,
    pub batch: usize,
    pub peak_lr: f64,
    pub weight_decay: f64,
    pub seed: u64,
}

pub fn shape(hidden: usize) -> VitShape {
    VitShape {
        image_size: crate::data::shapes::IMAGE_SIZE,
        patch_size: 8,
        channels: 3,
        hidden_size: hidden,
        num_layers: 4,
        num_heads: 4,
        intermediate_size: 2 * hidden,
        num_labels: label_names().len(),
    }
}

pub fn train(
    recipe: &VitRecipe,
    out: &Path,
    on_step: &mut dyn FnMut(StepReport) -> Result<()>,
) -> Result<Vec<f32>> {
    let varmap = VarMap::new();
    let model = TrainVit::new(
        recipe.shape,
        crate::train::seeded_builder(&varmap, recipe.seed),
    )?;
    let losses = train_steps(recipe, &varmap, &model, on_step)?;
    let config = recipe.shape.hf_config(&label_names());
    crate::train::model_folder::save_checkpoint(out, &varmap, &config, |_| Ok(()))?;
    Ok(losses)
}

/// Trains `model`, whose variables live in `varmap`, for the recipe's steps on its seed's
/// stream of scenes. Returns the losses.
pub fn train_steps(
    recipe: &VitRecipe,
    varmap: &VarMap,
    model: &TrainVit,
    on_step: &mut dyn FnMut(StepReport) -> Result<()>,
) -> Result<Vec<f32>> {
    let schedule = Schedule::new(recipe.steps, recipe.peak_lr, 0.05);
    // Each seed sees its own stream of scenes.
    let offset = recipe.seed * 10_000_000;
    train_loop(
        varmap,
        Pull::WeightDecay {
            lambda: recipe.weight_decay,
        },
        schedule,
        |step| {
            let scenes: Vec<Scene> = (0..recipe.batch)
                .map(|k| scene(Split::Train, offset + (step * recipe.batch + k) as u64))
                .collect();
            let refs: Vec<&Scene> = scenes.iter().collect();
            let labels: Vec<u32> = scenes.iter().map(|s| s.label() as u32).collect();
            let labels = Tensor::from_vec(labels, scenes.len(), &Device::Cpu)?;
            classification_loss(&model.forward(&scene_tensor(&refs)?)?, &labels)
        },
        on_step,
    )
}
