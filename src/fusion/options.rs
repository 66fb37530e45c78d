//! How a fusion aligns: the cost, the solver and the policies for attention and the residual
//! stream (docs/fusion.md). The defaults are the paper's.

use serde::{Deserialize, Serialize};

use super::transport::Solver;

crate::named_enum! {
    "cost";
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum CostKind {
        /// Distances between per-neuron activation vectors over the sample scenes (paper default).
        Acts = "acts",
        /// Distances between unit-normalised weight rows (bias appended), inputs already aligned.
        Weights = "weights",
    }
}

crate::named_enum! {
    "Q-K policy";
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum QkPolicy {
        /// Q and K each get their own map (paper default). Decoders always align heads as
        /// units (docs/fusion.md), so this applies to ViTs and encoders.
        Separate = "separate",
        /// One map from Q's and K's features side by side, so q·k is kept for hard maps.
        Joint = "joint",
    }
}

crate::named_enum! {
    "residual policy";
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum ResidualPolicy {
        /// The mean of the skip's and the branch's maps (paper default).
        Mean = "mean",
        /// Weighted by the mean |activation| of the skip and of the branch.
        Weighted = "weighted",
        /// The skip's map only: the stream keeps the embedding's map throughout.
        Skip = "skip",
        /// The branch's map only.
        Branch = "branch",
        /// One map for the whole stream, solved on the stream's activations at every layer side
        /// by side (weights cost: on the embeddings), kept through every join.
        Shared = "shared",
    }
}

crate::named_enum! {
    "branch map";
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum BranchMap {
        /// A branch's last layer takes the map solved for its own outputs (the paper).
        Own = "own",
        /// It takes the stream's map after the join, so what it adds lands where the stream's
        /// later readers look.
        Stream = "stream",
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FuseOptions {
    pub cost: CostKind,
    pub solver: Solver,
    pub qk: QkPolicy,
    pub residual: ResidualPolicy,
    pub branch_map: BranchMap,
}

impl FuseOptions {
    /// The fusion code's regulariser for each cost kind.
    pub fn default_reg(cost: CostKind) -> f64 {
        match cost {
            CostKind::Acts => 0.08,
            CostKind::Weights => 0.06,
        }
    }
}
