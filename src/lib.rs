//! alignscope: a desktop lab for aligned generation and model merges on real models.
//! Each method is a library module; the GUI (`ui`) and the CLI (`cli`) are thin front ends.

pub mod assets;
pub mod caption;
pub mod checkpoint;
pub mod cli;
pub mod counter_rng;
pub mod data;
pub mod delta;
pub mod embed;
pub mod eval;
pub mod fs;
pub mod fusion;
pub mod gan;
pub mod gpu;
pub mod graft;
pub mod jobs;
pub mod knowledge;
pub mod lm;
pub mod names;
pub mod prefs;
pub mod promot;
pub mod rag;
pub mod rain;
pub mod text;
pub mod train;
pub mod ui;
pub mod zoo;
