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
//! Q, K and V are full-width layers (neurons may move between heads), with separate or joint
//! Q-K maps; the attention output takes V's map as its input map. The residual stream's map
//! combines the skip's and the branch's maps by a policy; LayerNorms take the stream's map.

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};

use super::activations::Activations;
use super::transport::{Mat, Solver, TransportMap};
use super::vit_weights::{layer, VitWeights, EMBEDDINGS};
use crate::train::vit::Site;

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
        /// Q and K each get their own map (paper default).
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

    /// How many maps a fusion of `layers` layers makes (for progress).
    pub fn map_count(&self, layers: usize) -> usize {
        let attention = match self.qk {
            QkPolicy::Separate => 3,
            QkPolicy::Joint => 2,
        };
        1 + layers * (attention + 5)
    }
}

/// The fused weights and every map made on the way, in order.
pub struct Fusion {
    pub weights: VitWeights,
    pub maps: Vec<TransportMap>,
}

/// Fuses `a` into the anchor `b`. Activations are those of [`super::activations::record`] on
/// the same scenes for both models. `on_map` sees each map as it is made and may cancel.
pub fn fuse(
    a: &VitWeights,
    b: &VitWeights,
    acts: (&Activations, &Activations),
    opts: FuseOptions,
    on_map: &mut dyn FnMut(&TransportMap, usize, usize) -> Result<()>,
) -> Result<Fusion> {
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
    let mut walk = Walk {
        a,
        b,
        acts,
        opts,
        out: b.clone(),
        maps: Vec::new(),
        total: opts.map_count(sb.num_layers),
        on_map,
    };
    let mut stream = walk.embeddings()?;
    for l in 0..sb.num_layers {
        stream = walk.block(l, stream)?;
    }
    walk.norm("vit.layernorm", &stream)?;
    let (w, bias) = walk.inputs("classifier", Some(&stream))?;
    walk.mix("classifier.weight", w.data)?;
    walk.mix("classifier.bias", bias)?;
    Ok(Fusion {
        weights: walk.out,
        maps: walk.maps,
    })
}

struct Walk<'a> {
    a: &'a VitWeights,
    b: &'a VitWeights,
    acts: (&'a Activations, &'a Activations),
    opts: FuseOptions,
    out: VitWeights,
    maps: Vec<TransportMap>,
    total: usize,
    on_map: &'a mut dyn FnMut(&TransportMap, usize, usize) -> Result<()>,
}

/// A layer of model A with its inputs aligned: `(Ŵ_A, b_A)`.
type Aligned = (Mat, Vec<f32>);

/// `Cᵀ·v` for a vector over the aligned model's neurons, given `Cᵀ`.
fn carry(ct: &Mat, v: &[f32]) -> Vec<f32> {
    ct.matmul(&column(v.to_vec())).data
}

fn column(v: Vec<f32>) -> Mat {
    Mat::new(v.len(), 1, v)
}

impl Walk<'_> {
    fn matrix(w: &VitWeights, name: &str) -> Result<Mat> {
        let p = w.get(name)?;
        Ok(Mat::new(p.rows(), p.row_len(), p.data.clone()))
    }

    /// Model A's weight with its inputs aligned (`Ŵ = W·R`), and its bias.
    fn inputs(&self, module: &str, input: Option<&TransportMap>) -> Result<Aligned> {
        let w = Self::matrix(self.a, &format!("{module}.weight"))?;
        let w = match input {
            Some(map) => w.matmul(&map.inputs()),
            None => w,
        };
        Ok((w, self.a.get(&format!("{module}.bias"))?.data.clone()))
    }

    /// Model B's weight rows with the bias appended.
    fn anchor_rows(&self, module: &str) -> Result<Mat> {
        let w = Self::matrix(self.b, &format!("{module}.weight"))?;
        let bias = self.b.get(&format!("{module}.bias"))?.data.clone();
        Ok(w.beside(&column(bias)))
    }

    fn site_features(&self, site: Site) -> Result<(Mat, Mat)> {
        let get = |acts: &Activations| {
            acts.get(&site)
                .map(|n| n.values.clone())
                .with_context(|| format!("no activations at {site:?}"))
        };
        Ok((get(self.acts.0)?, get(self.acts.1)?))
    }

    /// Features of the output neurons of the given (module, site, aligned weights) triples,
    /// side by side when there are several (a joint Q-K map).
    fn features(&self, parts: &[(&str, Site, &Aligned)]) -> Result<(Mat, Mat)> {
        let mut fa: Option<Mat> = None;
        let mut fb: Option<Mat> = None;
        for (module, site, (w, bias)) in parts {
            let (pa, pb) = match self.opts.cost {
                CostKind::Acts => self.site_features(*site)?,
                CostKind::Weights => (
                    w.beside(&column(bias.clone())).unit_rows(),
                    self.anchor_rows(module)?.unit_rows(),
                ),
            };
            fa = Some(match fa {
                Some(f) => f.beside(&pa),
                None => pa,
            });
            fb = Some(match fb {
                Some(f) => f.beside(&pb),
                None => pb,
            });
        }
        Ok((fa.context("no features")?, fb.context("no features")?))
    }

    fn record(&mut self, map: TransportMap) -> Result<TransportMap> {
        self.maps.push(map.clone());
        (self.on_map)(&map, self.maps.len(), self.total)?;
        Ok(map)
    }

    fn solve(&mut self, name: String, features: (Mat, Mat)) -> Result<TransportMap> {
        let map = TransportMap::solved(name, &features.0, &features.1, self.opts.solver)?;
        self.record(map)
    }

    /// `out[name] = ½·aligned + ½·B[name]`.
    fn mix(&mut self, name: &str, aligned: Vec<f32>) -> Result<()> {
        let anchor = &self.b.get(name)?.data;
        ensure!(
            anchor.len() == aligned.len(),
            "{name}: aligned size {} against the anchor's {}",
            aligned.len(),
            anchor.len()
        );
        let mixed = aligned
            .iter()
            .zip(anchor)
            .map(|(x, y)| 0.5 * (x + y))
            .collect();
        self.out.set(name, mixed)
    }

    /// Output alignment and averaging of one linear layer.
    fn outputs(&mut self, module: &str, map: &TransportMap, aligned: Aligned) -> Result<()> {
        let ct = map.outputs().transpose();
        self.mix(&format!("{module}.weight"), ct.matmul(&aligned.0).data)?;
        self.mix(&format!("{module}.bias"), carry(&ct, &aligned.1))
    }

    /// One linear layer: inputs through `input`, outputs by its own map.
    fn linear(
        &mut self,
        label: String,
        module: &str,
        site: Site,
        input: &TransportMap,
    ) -> Result<TransportMap> {
        let aligned = self.inputs(module, Some(input))?;
        let features = self.features(&[(module, site, &aligned)])?;
        let map = self.solve(label, features)?;
        self.outputs(module, &map, aligned)?;
        Ok(map)
    }

    /// A branch's last layer (attention output or feed-forward output) and the stream's map
    /// once the branch has joined it. `sites` are the skip's and the branch's activations.
    fn branch(
        &mut self,
        l: usize,
        labels: (&str, &str),
        module: &str,
        sites: (Site, Site),
        input: &TransportMap,
        skip: &TransportMap,
    ) -> Result<TransportMap> {
        let aligned = self.inputs(module, Some(input))?;
        let features = self.features(&[(module, sites.1, &aligned)])?;
        let own = self.solve(format!("layer {l} · {}", labels.0), features)?;
        let stream = self.join(format!("layer {l} · {}", labels.1), skip, &own, sites)?;
        let out_map = match self.opts.branch_map {
            BranchMap::Own => &own,
            BranchMap::Stream => &stream,
        };
        self.outputs(module, out_map, aligned)?;
        Ok(stream)
    }

    fn norm(&mut self, module: &str, stream: &TransportMap) -> Result<()> {
        let ct = stream.outputs().transpose();
        for part in ["weight", "bias"] {
            let name = format!("{module}.{part}");
            let v = carry(&ct, &self.a.get(&name)?.data);
            self.mix(&name, v)?;
        }
        Ok(())
    }

    /// The stream's first map, from the embedding sum (CLS or patch, plus position). CLS,
    /// position and patch embeddings are all carried by it, because they add into one stream.
    fn embeddings(&mut self) -> Result<TransportMap> {
        let patch = format!("{EMBEDDINGS}.patch_embeddings.projection");
        let (cls_name, pos_name) = (
            format!("{EMBEDDINGS}.cls_token"),
            format!("{EMBEDDINGS}.position_embeddings"),
        );
        // `[1, positions, h]`: neurons are columns.
        let positions = |w: &VitWeights| -> Result<Mat> {
            let d = w.get(&pos_name)?.data.clone();
            let h = w.shape.hidden_size;
            Ok(Mat::new(d.len() / h, h, d))
        };
        let cls = |w: &VitWeights| -> Result<Vec<f32>> { Ok(w.get(&cls_name)?.data.clone()) };
        let aligned = self.inputs(&patch, None)?;
        let features = match self.opts.cost {
            CostKind::Acts if self.opts.residual == ResidualPolicy::Shared => {
                let layers = self.b.shape.num_layers;
                let sites = std::iter::once(Site::Embeddings).chain(
                    (0..layers).flat_map(|l| [Site::AfterAttention(l), Site::AfterFeedForward(l)]),
                );
                let mut parts = sites.map(|site| self.site_features(site));
                let first = parts.next().context("no stream sites")??;
                parts.try_fold(first, |(fa, fb), p| {
                    p.map(|(pa, pb)| (fa.beside(&pa), fb.beside(&pb)))
                })?
            }
            CostKind::Acts => self.site_features(Site::Embeddings)?,
            CostKind::Weights => {
                let per_neuron = |w: Mat, bias: Vec<f32>, cls: Vec<f32>, pos: Mat| {
                    w.beside(&column(bias))
                        .beside(&column(cls))
                        .beside(&pos.transpose())
                        .unit_rows()
                };
                let b_patch = Self::matrix(self.b, &format!("{patch}.weight"))?;
                let b_bias = self.b.get(&format!("{patch}.bias"))?.data.clone();
                (
                    per_neuron(
                        aligned.0.clone(),
                        aligned.1.clone(),
                        cls(self.a)?,
                        positions(self.a)?,
                    ),
                    per_neuron(b_patch, b_bias, cls(self.b)?, positions(self.b)?),
                )
            }
        };
        let map = self.solve("embeddings".into(), features)?;
        let c = map.outputs();
        let cls_a = carry(&c.transpose(), &cls(self.a)?);
        self.mix(&cls_name, cls_a)?;
        let pos_a = positions(self.a)?.matmul(&c);
        self.mix(&pos_name, pos_a.data)?;
        self.outputs(&patch, &map, aligned)?;
        Ok(map)
    }

    /// Mean |activation| of a site over both models.
    fn magnitude(&self, site: Site) -> f64 {
        let m = |acts: &Activations| acts.get(&site).map_or(0.0, |n| n.mean_abs);
        0.5 * (m(self.acts.0) + m(self.acts.1))
    }

    /// The stream's map after `branch` joins the skip, by the residual policy.
    fn join(
        &mut self,
        name: String,
        skip: &TransportMap,
        branch: &TransportMap,
        sites: (Site, Site),
    ) -> Result<TransportMap> {
        let w = match self.opts.residual {
            ResidualPolicy::Mean => 0.5,
            ResidualPolicy::Skip | ResidualPolicy::Shared => 0.0,
            ResidualPolicy::Branch => 1.0,
            ResidualPolicy::Weighted => {
                let (s, br) = (self.magnitude(sites.0), self.magnitude(sites.1));
                if s + br > 0.0 {
                    br / (s + br)
                } else {
                    0.5
                }
            }
        };
        let map = skip.blend(branch, w, name);
        self.record(map)
    }

    fn block(&mut self, l: usize, stream: TransportMap) -> Result<TransportMap> {
        let m = |module: &str| layer(l, module);
        let before = if l == 0 {
            Site::Embeddings
        } else {
            Site::AfterFeedForward(l - 1)
        };
        self.norm(&m("layernorm_before"), &stream)?;
        let (q, k, v) = (
            m("attention.attention.query"),
            m("attention.attention.key"),
            m("attention.attention.value"),
        );
        match self.opts.qk {
            QkPolicy::Separate => {
                self.linear(format!("layer {l} · query"), &q, Site::Query(l), &stream)?;
                self.linear(format!("layer {l} · key"), &k, Site::Key(l), &stream)?;
            }
            QkPolicy::Joint => {
                let aq = self.inputs(&q, Some(&stream))?;
                let ak = self.inputs(&k, Some(&stream))?;
                let features =
                    self.features(&[(&q, Site::Query(l), &aq), (&k, Site::Key(l), &ak)])?;
                let map = self.solve(format!("layer {l} · query+key"), features)?;
                self.outputs(&q, &map, aq)?;
                self.outputs(&k, &map, ak)?;
            }
        }
        let v_map = self.linear(format!("layer {l} · value"), &v, Site::Value(l), &stream)?;
        let stream = self.branch(
            l,
            ("attention output", "stream after attention"),
            &m("attention.output.dense"),
            (before, Site::AttentionOut(l)),
            &v_map,
            &stream,
        )?;
        self.norm(&m("layernorm_after"), &stream)?;
        let up = self.linear(
            format!("layer {l} · intermediate"),
            &m("intermediate.dense"),
            Site::Intermediate(l),
            &stream,
        )?;
        self.branch(
            l,
            ("output", "stream after feed-forward"),
            &m("output.dense"),
            (Site::AfterAttention(l), Site::FeedForwardOut(l)),
            &up,
            &stream,
        )
    }
}
