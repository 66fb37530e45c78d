//! Integration tests, one binary (linking egui + candle once keeps the build short).

mod architecture;
mod bad_inputs;
mod caption;
mod cli;
mod common;
mod delta;
mod embed;
mod finetune;
mod fusion;
mod gan;
mod gguf_families;
mod graft;
mod gui;
mod hf_folder;
mod jobs;
mod kernels;
mod lm_runtime;
mod prefs;
mod promot;
mod rag;
mod rain;
mod zoo;
