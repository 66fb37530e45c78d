//! Layer-by-layer OT fusion of two ViT classifiers (Imfeld et al., ICLR 2024). Model B is the
//! anchor: model A's neurons are transported onto B's, layer by layer, and the two are then
//! averaged, so the fused model has B's widths (narrower or wider than A's).
//!
//! For each linear layer with weights W (out × in) and bias b:
//! 1. inputs: `Ŵ_A = W_A·R`, R the row-normalised map of the layer feeding it;
//! 2. a cost between A's and B's output neurons (activations or weights), normalised by its max;
//! 3. a plan T with uniform marginals, exact or Sinkhorn;
//! 4. outputs: `W̃_A = Cᵀ·Ŵ_A`, `b̃_A = Cᵀ·b_A`, C the column-normalised T;
//! 5. average: `W = ½·W̃_A + ½·W_B`.
//!
//! The layers themselves are walked by [`Walk::encoder_layer`] (pre-LN). The residual
//! stream's map combines the skip's and the branch's maps by a policy; LayerNorms take the
//! stream's map.

use anyhow::{ensure, Context, Result};

use super::activations::Activations;
use super::encoder_block::{LayerNames, Norms};
use super::options::{CostKind, FuseOptions, QkPolicy, ResidualPolicy};
use super::params::{param, Params};
use super::transport::{Mat, TransportMap};
use super::vit_weights::{VitWeights, EMBEDDINGS};
use super::walk::{carry, column, Fusion, Walk};
use crate::train::site::Site;

pub const VIT_LAYERS: LayerNames = LayerNames {
    prefix: "vit.encoder.layer",
    self_attention: "attention.attention",
    norms: Norms::Pre {
        before: "layernorm_before",
        after: "layernorm_after",
    },
};

/// How many maps a ViT fusion of `layers` layers makes (for progress).
pub fn map_count(opts: &FuseOptions, layers: usize) -> usize {
    let attention = match opts.qk {
        QkPolicy::Separate => 3,
        QkPolicy::Joint => 2,
    };
    1 + layers * (attention + 5)
}

/// Fuses `a` into the anchor `b`. Activations are those of [`super::activations::record`] on
/// the same scenes for both models. `on_map` sees each map as it is made and may cancel.
pub fn fuse(
    a: &VitWeights,
    b: &VitWeights,
    acts: (&Activations, &Activations),
    opts: FuseOptions,
    on_map: &mut dyn FnMut(&TransportMap, usize, usize) -> Result<()>,
) -> Result<Fusion<VitWeights>> {
    let (sa, sb) = (a.shape, b.shape);
    ensure!(
        sa.num_layers == sb.num_layers
            && sa.num_heads == sb.num_heads
            && sa.patch_size == sb.patch_size
            && sa.image_size == sb.image_size
            && sa.channels == sb.channels,
        "fusion needs the same depth, heads and patching: {sa:?} against {sb:?}"
    );
    ensure!(a.labels == b.labels, "the two models have different labels");
    let total = map_count(&opts, sb.num_layers);
    let mut walk = Walk::new(&a.params, &b.params, acts, opts, total, on_map);
    let mut stream = embeddings(&mut walk, sb.num_layers)?;
    for l in 0..sb.num_layers {
        stream = walk.encoder_layer(&VIT_LAYERS, l, stream)?;
    }
    walk.norm("vit.layernorm", &stream)?;
    let (w, bias) = walk.inputs("classifier", Some(&stream))?;
    walk.mix("classifier.weight", w.data)?;
    if let Some(bias) = bias {
        walk.mix("classifier.bias", bias)?;
    }
    Ok(walk.finish(b))
}

/// The stream's first map, from the embedding sum (CLS or patch, plus position). CLS,
/// position and patch embeddings are all carried by it, because they add into one stream.
fn embeddings(walk: &mut Walk, layers: usize) -> Result<TransportMap> {
    let patch = format!("{EMBEDDINGS}.patch_embeddings.projection");
    let (cls_name, pos_name) = (
        format!("{EMBEDDINGS}.cls_token"),
        format!("{EMBEDDINGS}.position_embeddings"),
    );
    // `[1, positions, h]`: neurons are columns.
    let positions = |w: &Params| -> Result<Mat> {
        let p = param(w, &pos_name)?;
        let h = p.shape.last().copied().unwrap_or(1);
        Ok(Mat::new(p.data.len() / h, h, p.data.clone()))
    };
    let cls = |w: &Params| -> Result<Vec<f32>> { Ok(param(w, &cls_name)?.data.clone()) };
    let aligned = walk.inputs(&patch, None)?;
    let features = match walk.opts.cost {
        CostKind::Acts if walk.opts.residual == ResidualPolicy::Shared => {
            walk.stream_features(layers)?
        }
        CostKind::Acts => walk.site_features(Site::Embeddings)?,
        CostKind::Weights => {
            let per_neuron = |w: Mat, bias: Vec<f32>, cls: Vec<f32>, pos: Mat| {
                w.beside(&column(bias))
                    .beside(&column(cls))
                    .beside(&pos.transpose())
                    .unit_rows()
            };
            let b_patch = Walk::matrix(walk.b, &format!("{patch}.weight"))?;
            let b_bias = param(walk.b, &format!("{patch}.bias"))?.data.clone();
            (
                per_neuron(
                    aligned.0.clone(),
                    aligned
                        .1
                        .clone()
                        .context("the patch projection has no bias")?,
                    cls(walk.a)?,
                    positions(walk.a)?,
                ),
                per_neuron(b_patch, b_bias, cls(walk.b)?, positions(walk.b)?),
            )
        }
    };
    let map = walk.solve("embeddings".into(), features)?;
    let c = map.outputs();
    let cls_a = carry(&c.transpose(), &cls(walk.a)?);
    walk.mix(&cls_name, cls_a)?;
    let pos_a = positions(walk.a)?.matmul(&c);
    walk.mix(&pos_name, pos_a.data)?;
    walk.outputs(&patch, &map, aligned)?;
    Ok(map)
}
