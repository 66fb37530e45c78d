//! The preference lab: KnowPAT (Zhang et al.) — align a domain QA model with a *style*
//! preference set (the gold answer over weaker models' answers) and a *knowledge* preference
//! set (gold over answers with the top-k triples, with none, with misleading ones), by SFT plus
//! a ranked alignment loss weighted by score margins; against SFT, DPO and two ablations.

pub mod context;
pub mod eval;
pub mod loss;
pub mod metrics;
pub mod sets;
pub mod style;
pub mod train;

use std::path::PathBuf;

/// The lab's folder: preference sets, results and training records (trained weights are
/// built here and not shipped).
pub fn dir() -> PathBuf {
    crate::assets::dir().join("prefs")
}
