//! The GAN lab: one-shot generative domain adaptation — GenDA (Yang et al., ICCV 2023). A GAN
//! pretrained on procedural source faces is adapted to a target domain from one image by a
//! latent attribute adaptor and an attribute classifier on the frozen discriminator, against
//! full fine-tuning and FreezeD with the same budget; a feature network trained on all
//! domains measures FD and precision/recall.

pub mod adapt;
pub mod conv;
pub mod eval;
pub mod faces;
pub mod features;
pub mod grid;
pub mod image_file;
pub mod metrics;
pub mod model;
pub mod pretrain;

use std::path::PathBuf;

/// The lab's folder: shipped models (`models/`) and results (`results/`).
pub fn dir() -> PathBuf {
    crate::assets::dir().join("gan")
}

pub fn models_dir() -> PathBuf {
    dir().join("models")
}

pub fn results_dir() -> PathBuf {
    dir().join("results")
}

/// The pretrained source GAN.
pub fn source_dir() -> PathBuf {
    models_dir().join("gan-source")
}

/// The feature network FD and precision/recall are measured in.
pub fn features_dir() -> PathBuf {
    models_dir().join("feature-net")
}
