//! Where a tapped forward pass (`TrainVit::forward_tapped`, `TrainLlama::forward_sites`,
//! `TrainBertClassifier::forward_tapped`) shows
//! an activation: the fusion lab's activation costs come from these.

/// A site in a transformer; layer indices from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Site {
    /// The residual stream's start: CLS and patch embeddings plus position embeddings (ViT),
    /// token embeddings (decoders).
    Embeddings,
    Query(usize),
    Key(usize),
    Value(usize),
    /// The attention output projection, before it joins the residual stream.
    AttentionOut(usize),
    /// The residual stream after the attention block.
    AfterAttention(usize),
    /// The feed-forward's first projection before its activation (`intermediate.dense`, a
    /// gated MLP's `up_proj`).
    Intermediate(usize),
    /// A gated MLP's `gate_proj`, before the SiLU.
    Gate(usize),
    /// `output.dense`, before it joins the residual stream.
    FeedForwardOut(usize),
    /// The residual stream after the feed-forward block.
    AfterFeedForward(usize),
    /// A BERT pooler's dense layer on the first token, before its tanh.
    Pooler,
}
