//! Optimal-transport fusion of transformers (Imfeld et al.): the OT solvers first. See
//! docs/fusion.md.

pub mod emd;
pub mod ot;
