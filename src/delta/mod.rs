//! The Delta lab's engine: what fine-tuning changed (δ = θ_ft − θ_base), pruned with DARE,
//! DAREx-q, magnitude or activation-aware importance, and merged across fine-tunes with
//! mergekit's methods, streamed between safetensors checkpoints. See docs/delta.md.

pub mod darex;
#[cfg(test)]
mod gpu_parity;
pub mod kernels;
pub mod lab;
pub mod merge;
pub mod mergekit;
pub mod pairing;
pub mod prune;
pub mod tasks;

pub use merge::{merge_checkpoints, MergeInput, MergeMethod, MergeSpec};
pub use mergekit::MergeConfig;
pub use prune::{prune_checkpoint, Engine, Method, Output, PruneSpec, RunSummary, TensorFilter};
