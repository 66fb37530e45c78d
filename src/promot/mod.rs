//! ProMoT (Wang et al., "Two-stage LLM fine-tuning with less specialization and more
//! generalization"): fine-tuning on one task can wreck a model's few-shot ability on others by
//! *format specialisation*. ProMoT first tunes a soft prompt with the model frozen, then tunes
//! the model with that prompt prepended and frozen; the prompt is removed for other tasks, so
//! it, not the model, carries the task's format.
//!
//! - [`tasks`]: the fine-tuning tasks (rigid output formats) and their data.
//! - [`icl`]: the in-context suite and the specialisation rate.
//! - [`run`]: the three methods (fine-tune, prompt tuning, ProMoT) and the evaluation as jobs.

pub mod icl;
pub mod run;
pub mod tasks;
