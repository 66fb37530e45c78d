//! OT fusion of two llama-family decoders (rotary positions, grouped-query attention, gated
//! MLPs) on the shared walk. The ViT fusion's full-width Q/K maps would break RoPE: RoPE
//! rotates fixed pairs of dimensions inside each head, each pair at its own frequency, so q·k
//! survives a map only if the map moves whole heads and sends each dimension to a dimension of
//! the same frequency. Within a head every frequency has one pair, and swapping a pair's two
//! dimensions reflects its rotation, so the only such maps inside a head are the identity.
//! Hence, per layer:
//!
//! - **key-value heads** (GQA groups) get one map G, solved on each group's key activations
//!   (or key weights) as one feature vector, so heads move as units;
//! - **query heads** move with their group; within matched groups (ga, gb) a small map
//!   P_{ga,gb} pairs the group's query heads: H = Σ G[ga,gb]·P_{ga,gb};
//! - **queries and keys** take H ⊗ I and G ⊗ I: dimension d of a head goes to dimension d of
//!   the matched head, the same frequency;
//! - **values** have no rotation, so within matched heads a map D_{ga,gb} pairs value
//!   dimensions: V = Σ G[ga,gb]·D_{ga,gb}; the output projection reads query head h's value
//!   dimensions, so its input map is Σ H[ha,hb]·D_{g(ha),g(hb)};
//! - **gated MLP**: gate and up share one map, solved on their features side by side;
//! - the residual stream, RMSNorm scales, embeddings and the output head as for the ViT.

use anyhow::{ensure, Result};

use super::activations::Activations;
use super::decoder_weights::{layer, DecoderWeights};
use super::options::{CostKind, FuseOptions, ResidualPolicy};
use super::ot::Plan;
use super::params::param;
use super::transport::{Mat, TransportMap};
use super::walk::{with_bias, Aligned, Fusion, Walk};
use crate::train::llama::LlamaShape;
use crate::train::site::Site;

const EMBED: &str = "model.embed_tokens.weight";

/// How many maps a decoder fusion makes (for progress): the embeddings, then per layer the
/// key-value heads, the query heads (when groups hold several), values, attention output and
/// the stream after it, the MLP, its output and the stream after it.
pub fn map_count(shape: &LlamaShape) -> usize {
    let query_heads = usize::from(shape.num_heads > shape.num_kv_heads);
    1 + shape.num_layers * (7 + query_heads)
}

/// Fuses decoder `a` into the anchor `b`: same depth, heads, key-value heads, head width,
/// rotary base and vocabulary; the MLP widths may differ (the fused model takes B's).
/// Activations come from [`super::activations::record_tokens`] on the same tokens for both.
pub fn fuse(
    a: &DecoderWeights,
    b: &DecoderWeights,
    acts: (&Activations, &Activations),
    opts: FuseOptions,
    on_map: &mut dyn FnMut(&TransportMap, usize, usize) -> Result<()>,
) -> Result<Fusion<DecoderWeights>> {
    let (sa, sb) = (a.shape, b.shape);
    ensure!(
        sa.num_layers == sb.num_layers
            && sa.num_heads == sb.num_heads
            && sa.num_kv_heads == sb.num_kv_heads
            && sa.head_dim() == sb.head_dim()
            && sa.rope_theta == sb.rope_theta
            && sa.vocab_size == sb.vocab_size
            && sa.tie_embeddings == sb.tie_embeddings
            && sa.qkv_bias == sb.qkv_bias,
        "decoder fusion needs the same depth, heads, key-value heads, head width, rotary base \
         and vocabulary: {sa:?} against {sb:?}"
    );
    let total = map_count(&sb);
    let mut walk = Walk::new(&a.params, &b.params, acts, opts, total, on_map);
    let mut stream = walk.embeddings(sb.num_layers)?;
    for l in 0..sb.num_layers {
        stream = walk.attention(l, &sb, stream)?;
        stream = walk.mlp(l, stream)?;
    }
    walk.norm("model.norm", &stream)?;
    // A tied head is the embedding, which already took the stream's first map.
    if !sb.tie_embeddings {
        let (w, _) = walk.inputs("lm_head", Some(&stream))?;
        walk.mix("lm_head.weight", w.data)?;
    }
    Ok(walk.finish(b))
}

/// Rows `[from, from + n)` of a matrix.
fn rows(m: &Mat, from: usize, n: usize) -> Mat {
    Mat::new(
        n,
        m.cols,
        m.data[from * m.cols..(from + n) * m.cols].to_vec(),
    )
}

/// Consecutive blocks of `block` rows as one row each: a head's dimensions as one feature.
fn blocks(m: &Mat, block: usize) -> Mat {
    Mat::new(m.rows / block, block * m.cols, m.data.clone())
}

/// `Σ outer[i][j] · inner(i, j)`: the plan over (unit, element) pairs that first matches units
/// by `outer` and then elements within matched units by `inner` (each `n × n`).
fn compose(outer: &Plan, n: usize, inner: impl Fn(usize, usize) -> Plan) -> Plan {
    let (r, c) = (outer.rows * n, outer.cols * n);
    let mut t = vec![0.0; r * c];
    for i in 0..outer.rows {
        for j in 0..outer.cols {
            let w = outer.t[i * outer.cols + j];
            if w == 0.0 {
                continue;
            }
            let p = inner(i, j);
            for x in 0..n {
                for y in 0..n {
                    t[(i * n + x) * c + j * n + y] += w * p.t[x * n + y];
                }
            }
        }
    }
    Plan {
        rows: r,
        cols: c,
        t,
    }
}

/// The `n × n` identity plan with uniform marginals.
fn identity(n: usize) -> Plan {
    let mut t = vec![0.0; n * n];
    for i in 0..n {
        t[i * n + i] = 1.0 / n as f64;
    }
    Plan {
        rows: n,
        cols: n,
        t,
    }
}

fn derived(name: String, plan: Plan) -> TransportMap {
    TransportMap {
        name,
        plan,
        cost: Vec::new(),
    }
}

/// The decoder's own layers, on the shared walk.
trait DecoderLayers {
    fn embeddings(&mut self, layers: usize) -> Result<TransportMap>;
    fn attention(
        &mut self,
        l: usize,
        shape: &LlamaShape,
        stream: TransportMap,
    ) -> Result<TransportMap>;
    fn mlp(&mut self, l: usize, stream: TransportMap) -> Result<TransportMap>;
    fn unit_features(
        &self,
        site: Site,
        aligned: &Aligned,
        module: &str,
        block: usize,
    ) -> Result<(Mat, Mat)>;
    fn sub_plan(&self, features: (Mat, Mat)) -> Result<Plan>;
}

impl DecoderLayers for Walk<'_> {
    /// The stream's first map, from the token embeddings: each stream neuron is a column of
    /// the embedding matrix.
    fn embeddings(&mut self, layers: usize) -> Result<TransportMap> {
        let table = |w| -> Result<Mat> {
            let p = param(w, EMBED)?;
            Ok(Mat::new(p.rows(), p.row_len(), p.data.clone()))
        };
        let (ea, eb) = (table(self.a)?, table(self.b)?);
        let features = match self.opts.cost {
            CostKind::Acts if self.opts.residual == ResidualPolicy::Shared => {
                self.stream_features(layers)?
            }
            CostKind::Acts => self.site_features(Site::Embeddings)?,
            CostKind::Weights => (ea.transpose().unit_rows(), eb.transpose().unit_rows()),
        };
        let map = self.solve("embeddings".into(), features)?;
        self.mix(EMBED, ea.matmul(&map.outputs()).data)?;
        Ok(map)
    }

    fn attention(
        &mut self,
        l: usize,
        shape: &LlamaShape,
        stream: TransportMap,
    ) -> Result<TransportMap> {
        let m = |module: &str| layer(l, module);
        let (hd, kv) = (shape.head_dim(), shape.num_kv_heads);
        let group = shape.num_heads / kv;
        self.norm(&m("input_layernorm"), &stream)?;
        let (q, k, v) = (
            m("self_attn.q_proj"),
            m("self_attn.k_proj"),
            m("self_attn.v_proj"),
        );
        let aq = self.inputs(&q, Some(&stream))?;
        let ak = self.inputs(&k, Some(&stream))?;
        let av = self.inputs(&v, Some(&stream))?;

        let features = self.unit_features(Site::Key(l), &ak, &k, hd)?;
        let kv_map = self.solve(format!("layer {l} · key-value heads"), features)?;
        let g = kv_map.plan.clone();
        // Query heads: matched within each pair of groups the key-value map links.
        let heads =
            if group > 1 {
                let (fa, fb) = self.unit_features(Site::Query(l), &aq, &q, hd)?;
                let mut plans = Vec::with_capacity(kv * kv);
                for ga in 0..kv {
                    for gb in 0..kv {
                        plans.push(self.sub_plan((
                            rows(&fa, ga * group, group),
                            rows(&fb, gb * group, group),
                        ))?);
                    }
                }
                let h = compose(&g, group, |i, j| plans[i * kv + j].clone());
                self.record(derived(format!("layer {l} · query heads"), h))?
                    .plan
            } else {
                g.clone()
            };
        // Value dimensions: matched within each pair of heads.
        let (va, vb) = match self.opts.cost {
            CostKind::Acts => self.site_features(Site::Value(l))?,
            CostKind::Weights => (
                with_bias(&av.0, &av.1).unit_rows(),
                with_bias(
                    &Walk::matrix(self.b, &format!("{v}.weight"))?,
                    &self.b.get(&format!("{v}.bias")).map(|p| p.data.clone()),
                )
                .unit_rows(),
            ),
        };
        let mut dims = Vec::with_capacity(kv * kv);
        for ga in 0..kv {
            for gb in 0..kv {
                dims.push(if g.t[ga * kv + gb] > 0.0 {
                    self.sub_plan((rows(&va, ga * hd, hd), rows(&vb, gb * hd, hd)))?
                } else {
                    identity(hd)
                });
            }
        }
        let dim = |i: usize, j: usize| dims[i * kv + j].clone();
        let value_map =
            self.record(derived(format!("layer {l} · values"), compose(&g, hd, dim)))?;
        let query_map = derived(String::new(), compose(&heads, hd, |_, _| identity(hd)));
        let key_map = derived(String::new(), compose(&g, hd, |_, _| identity(hd)));
        let o_inputs = derived(
            String::new(),
            compose(&heads, hd, |i, j| dim(i / group, j / group)),
        );
        self.outputs(&q, &query_map, aq)?;
        self.outputs(&k, &key_map, ak)?;
        self.outputs(&v, &value_map, av)?;
        let before = match l {
            0 => Site::Embeddings,
            _ => Site::AfterFeedForward(l - 1),
        };
        self.branch(
            l,
            ("attention output", "stream after attention"),
            &m("self_attn.o_proj"),
            (before, Site::AttentionOut(l)),
            &o_inputs,
            &stream,
        )
    }

    fn mlp(&mut self, l: usize, stream: TransportMap) -> Result<TransportMap> {
        let m = |module: &str| layer(l, module);
        self.norm(&m("post_attention_layernorm"), &stream)?;
        let (gate, up) = (m("mlp.gate_proj"), m("mlp.up_proj"));
        let ag = self.inputs(&gate, Some(&stream))?;
        let au = self.inputs(&up, Some(&stream))?;
        let features = self.features(&[
            (&gate, Site::Gate(l), &ag),
            (&up, Site::Intermediate(l), &au),
        ])?;
        let map = self.solve(format!("layer {l} · MLP (gate and up)"), features)?;
        self.outputs(&gate, &map, ag)?;
        self.outputs(&up, &map, au)?;
        self.branch(
            l,
            ("MLP output", "stream after MLP"),
            &m("mlp.down_proj"),
            (Site::AfterAttention(l), Site::FeedForwardOut(l)),
            &map,
            &stream,
        )
    }

    /// Features of whole heads (`block` rows of a projection each) for A and B.
    fn unit_features(
        &self,
        site: Site,
        aligned: &Aligned,
        module: &str,
        block: usize,
    ) -> Result<(Mat, Mat)> {
        let (fa, fb) = self.features(&[(module, site, aligned)])?;
        let (fa, fb) = (blocks(&fa, block), blocks(&fb, block));
        Ok(match self.opts.cost {
            CostKind::Acts => (fa, fb),
            CostKind::Weights => (fa.unit_rows(), fb.unit_rows()),
        })
    }

    /// A plan between two small sets of units (heads in a group, dimensions in a head),
    /// solved like every map but not recorded.
    fn sub_plan(&self, features: (Mat, Mat)) -> Result<Plan> {
        Ok(TransportMap::solved(String::new(), &features.0, &features.1, self.opts.solver)?.plan)
    }
}
