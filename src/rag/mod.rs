//! The RAG lab: retrieval over the knowledge base, a SmolLM2 reader, and DPA-RAG's dual
//! preference alignment (Dong et al., WWW 2025) — preference knowledge mined from what helps
//! this reader ([`mine`]), a reranker trained on it with three losses and MGDA-UB weights
//! ([`reranker`]), and a pre-aligned reader fine-tune ([`reader_train`]).

pub mod eval;
pub mod jobs;
pub mod mgda;
pub mod mine;
pub mod pipeline;
pub mod reader;
pub mod reader_train;
pub mod reranker;
pub mod retrieve;
pub mod score;

use std::path::PathBuf;

/// Where the lab's shipped and built files live: mined preferences, rerankers, readers,
/// results.
pub fn dir() -> PathBuf {
    crate::assets::dir().join("rag")
}
