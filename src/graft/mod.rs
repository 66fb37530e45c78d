//! Skill localization by grafting (Panigrahi et al., ICML 2023): a sparse binary mask γ over
//! the fine-tuning delta δ = θ_ft − θ_pre such that `θ_pre + γ ⊙ δ` keeps the fine-tune's
//! task skill. See docs/graft.md.

pub mod decoder;
pub mod encoder;
pub mod learn;
pub mod mask;
pub mod model;
pub mod select;
pub mod tasks;

pub use learn::{learn_mask, LearnOptions, LearnStep};
pub use mask::Mask;
pub use tasks::{spawn_graft, GraftMethod, GraftRequest, GraftUpdate};
