//! The evaluation harness every lab shares: metrics, decoder evaluation (exact match,
//! perplexity) on the app's runtime, and classifier evaluation through candle-transformers.

pub mod classifier;
pub mod decoder;
pub mod metrics;
