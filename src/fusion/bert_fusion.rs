//! Layer-by-layer OT fusion of two BERT sequence classifiers (the paper's encoder setting),
//! on the walk the ViTs use: the layers are [`Walk::encoder_layer`] with post-LN placement.
//!
//! - **Embeddings**: word, position and token-type embeddings add into one sum before the
//!   embedding LayerNorm, so one map (the stream's first) carries all three; each matrix's
//!   columns are its neurons. The weights cost compares each neuron's three columns side by
//!   side; the activation cost, the normalised sum.
//! - **Post-LN**: each norm follows a residual join and takes the joined stream's map.
//! - **Pooler**: a linear layer on the first token with its own map; the classifier's inputs
//!   take it, its outputs (the labels) stay.

use anyhow::{ensure, Result};

use super::activations::Activations;
use super::encoder_block::{LayerNames, Norms};
use super::encoder_weights::EncoderWeights;
use super::options::{CostKind, FuseOptions, QkPolicy, ResidualPolicy};
use super::transport::{Mat, TransportMap};
use super::walk::{Fusion, Walk};
use crate::train::site::Site;

pub const BERT_LAYERS: LayerNames = LayerNames {
    prefix: "bert.encoder.layer",
    self_attention: "attention.self",
    norms: Norms::Post {
        attention: "attention.output.LayerNorm",
        output: "output.LayerNorm",
    },
};

/// The embedding matrices (`[rows, hidden]`) that add into the stream.
pub const EMBEDDING_TABLES: [&str; 3] = [
    "bert.embeddings.word_embeddings.weight",
    "bert.embeddings.position_embeddings.weight",
    "bert.embeddings.token_type_embeddings.weight",
];
pub const EMBEDDING_NORM: &str = "bert.embeddings.LayerNorm";

/// How many maps an encoder fusion of `layers` layers makes (for progress).
pub fn map_count(opts: &FuseOptions, layers: usize) -> usize {
    let attention = match opts.qk {
        QkPolicy::Separate => 3,
        QkPolicy::Joint => 2,
    };
    // The embeddings' map, five more per layer besides attention, the pooler's.
    2 + layers * (attention + 5)
}

/// Fuses `a` into the anchor `b`. Activations are those of
/// [`super::activations::record_encoder`] on the same sentences for both models. `on_map`
/// sees each map as it is made and may cancel.
pub fn fuse(
    a: &EncoderWeights,
    b: &EncoderWeights,
    acts: (&Activations, &Activations),
    opts: FuseOptions,
    on_map: &mut dyn FnMut(&TransportMap, usize, usize) -> Result<()>,
) -> Result<Fusion<EncoderWeights>> {
    let (sa, sb) = (&a.shape, &b.shape);
    ensure!(
        sa.num_hidden_layers == sb.num_hidden_layers
            && sa.num_attention_heads == sb.num_attention_heads
            && sa.vocab_size == sb.vocab_size
            && sa.max_position_embeddings == sb.max_position_embeddings
            && sa.type_vocab_size == sb.type_vocab_size,
        "encoder fusion needs the same depth, heads, vocabulary and positions: \
         {sa:?} against {sb:?}"
    );
    ensure!(a.labels == b.labels, "the two models have different labels");
    let layers = sb.num_hidden_layers;
    let total = map_count(&opts, layers);
    let mut walk = Walk::new(&a.params, &b.params, acts, opts, total, on_map);
    let mut stream = embeddings(&mut walk, layers)?;
    for l in 0..layers {
        stream = walk.encoder_layer(&BERT_LAYERS, l, stream)?;
    }
    let pooler = walk.linear("pooler".into(), "bert.pooler.dense", Site::Pooler, &stream)?;
    let (w, bias) = walk.inputs("classifier", Some(&pooler))?;
    walk.mix("classifier.weight", w.data)?;
    if let Some(bias) = bias {
        walk.mix("classifier.bias", bias)?;
    }
    Ok(walk.finish(b))
}

/// The stream's first map, carried by all three embedding tables and the embedding norm.
fn embeddings(walk: &mut Walk, layers: usize) -> Result<TransportMap> {
    // Each neuron's column of every table, side by side: `[hidden, Σ rows]`.
    let columns = |w: &super::params::Params| -> Result<Mat> {
        let mut tables = EMBEDDING_TABLES.iter().map(|t| Walk::matrix(w, t));
        let first = tables.next().expect("three tables")?.transpose();
        tables.try_fold(first, |acc, t| Ok(acc.beside(&t?.transpose())))
    };
    let features = match walk.opts.cost {
        CostKind::Acts if walk.opts.residual == ResidualPolicy::Shared => {
            walk.stream_features(layers)?
        }
        CostKind::Acts => walk.site_features(Site::Embeddings)?,
        CostKind::Weights => (columns(walk.a)?.unit_rows(), columns(walk.b)?.unit_rows()),
    };
    let map = walk.solve("embeddings".into(), features)?;
    let c = map.outputs();
    for table in EMBEDDING_TABLES {
        let carried = Walk::matrix(walk.a, table)?.matmul(&c);
        walk.mix(table, carried.data)?;
    }
    walk.norm(EMBEDDING_NORM, &map)?;
    Ok(map)
}
