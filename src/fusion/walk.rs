//! The layer-by-layer walk every fusion shares (Imfeld et al., ICLR 2024): align a linear
//! layer's inputs with the map of the layer feeding it, solve a map for its outputs, carry A's
//! weights through both and average with the anchor. The families (`vit_fusion`,
//! `decoder_fusion`) drive it through their own layers.

use anyhow::{ensure, Context, Result};

use super::activations::Activations;
use super::options::{BranchMap, CostKind, FuseOptions, ResidualPolicy};
use super::params::{param, set_param, NamedParams, Params};
use super::transport::{Mat, TransportMap};
use crate::train::site::Site;

/// The state of one fusion as it walks the layers: both parents, their activations, the fused
/// parameters so far (starting as the anchor's) and the maps made.
pub struct Walk<'a> {
    pub a: &'a Params,
    pub b: &'a Params,
    pub acts: (&'a Activations, &'a Activations),
    pub opts: FuseOptions,
    pub out: Params,
    pub maps: Vec<TransportMap>,
    /// How many maps the fusion will make (for progress).
    pub total: usize,
    pub on_map: &'a mut dyn FnMut(&TransportMap, usize, usize) -> Result<()>,
}

/// The fused weights and every map made on the way, in order.
pub struct Fusion<W> {
    pub weights: W,
    pub maps: Vec<TransportMap>,
}

/// A layer of model A with its inputs aligned: `(Ŵ_A, b_A)`; no bias where the anchor has none.
pub type Aligned = (Mat, Option<Vec<f32>>);

/// `Cᵀ·v` for a vector over the aligned model's neurons, given `Cᵀ`.
pub fn carry(ct: &Mat, v: &[f32]) -> Vec<f32> {
    ct.matmul(&column(v.to_vec())).data
}

pub fn column(v: Vec<f32>) -> Mat {
    Mat::new(v.len(), 1, v)
}

/// Weight rows with the bias appended, when there is one.
pub fn with_bias(w: &Mat, bias: &Option<Vec<f32>>) -> Mat {
    match bias {
        Some(b) => w.beside(&column(b.clone())),
        None => w.clone(),
    }
}

impl<'a> Walk<'a> {
    /// A walk that will make `total` maps, starting from the anchor's parameters.
    pub fn new(
        a: &'a Params,
        b: &'a Params,
        acts: (&'a Activations, &'a Activations),
        opts: FuseOptions,
        total: usize,
        on_map: &'a mut dyn FnMut(&TransportMap, usize, usize) -> Result<()>,
    ) -> Self {
        Self {
            a,
            b,
            acts,
            opts,
            out: b.clone(),
            maps: Vec::new(),
            total,
            on_map,
        }
    }

    /// The fused model: the anchor with the walked parameters.
    pub fn finish<W: NamedParams>(self, anchor: &W) -> Fusion<W> {
        let mut weights = anchor.clone();
        *weights.params_mut() = self.out;
        Fusion {
            weights,
            maps: self.maps,
        }
    }
    pub fn matrix(w: &Params, name: &str) -> Result<Mat> {
        let p = param(w, name)?;
        Ok(Mat::new(p.rows(), p.row_len(), p.data.clone()))
    }

    /// Model A's weight with its inputs aligned (`Ŵ = W·R`), and its bias.
    pub fn inputs(&self, module: &str, input: Option<&TransportMap>) -> Result<Aligned> {
        let w = Self::matrix(self.a, &format!("{module}.weight"))?;
        let w = match input {
            Some(map) => w.matmul(&map.inputs()),
            None => w,
        };
        Ok((w, self.a_bias(module)?))
    }

    /// A's bias of `module`, if the anchor's module has one.
    fn a_bias(&self, module: &str) -> Result<Option<Vec<f32>>> {
        let name = format!("{module}.bias");
        if !self.b.contains_key(&name) {
            return Ok(None);
        }
        Ok(Some(param(self.a, &name)?.data.clone()))
    }

    /// Model B's weight rows with the bias appended.
    fn anchor_rows(&self, module: &str) -> Result<Mat> {
        let w = Self::matrix(self.b, &format!("{module}.weight"))?;
        let bias = self
            .b
            .get(&format!("{module}.bias"))
            .map(|p| p.data.clone());
        Ok(with_bias(&w, &bias))
    }

    pub fn site_features(&self, site: Site) -> Result<(Mat, Mat)> {
        let get = |acts: &Activations| {
            acts.get(&site)
                .map(|n| n.values.clone())
                .with_context(|| format!("no activations at {site:?}"))
        };
        Ok((get(self.acts.0)?, get(self.acts.1)?))
    }

    /// Features of the output neurons of the given (module, site, aligned weights) triples,
    /// side by side when there are several (a joint Q-K map).
    pub fn features(&self, parts: &[(&str, Site, &Aligned)]) -> Result<(Mat, Mat)> {
        let mut fa: Option<Mat> = None;
        let mut fb: Option<Mat> = None;
        for (module, site, (w, bias)) in parts {
            let (pa, pb) = match self.opts.cost {
                CostKind::Acts => self.site_features(*site)?,
                CostKind::Weights => (
                    with_bias(w, bias).unit_rows(),
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

    /// The stream's activations at its start and after every branch, side by side: what a
    /// shared stream map is solved on.
    pub fn stream_features(&self, layers: usize) -> Result<(Mat, Mat)> {
        let sites = std::iter::once(Site::Embeddings)
            .chain((0..layers).flat_map(|l| [Site::AfterAttention(l), Site::AfterFeedForward(l)]));
        let mut parts = sites.map(|site| self.site_features(site));
        let first = parts.next().context("no stream sites")??;
        parts.try_fold(first, |(fa, fb), p| {
            p.map(|(pa, pb)| (fa.beside(&pa), fb.beside(&pb)))
        })
    }

    pub fn record(&mut self, map: TransportMap) -> Result<TransportMap> {
        self.maps.push(map.clone());
        (self.on_map)(&map, self.maps.len(), self.total)?;
        Ok(map)
    }

    pub fn solve(&mut self, name: String, features: (Mat, Mat)) -> Result<TransportMap> {
        let map = TransportMap::solved(name, &features.0, &features.1, self.opts.solver)?;
        self.record(map)
    }

    /// `out[name] = ½·aligned + ½·B[name]`.
    pub fn mix(&mut self, name: &str, aligned: Vec<f32>) -> Result<()> {
        let anchor = &param(self.b, name)?.data;
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
        set_param(&mut self.out, name, mixed)
    }

    /// Output alignment and averaging of one linear layer.
    pub fn outputs(&mut self, module: &str, map: &TransportMap, aligned: Aligned) -> Result<()> {
        let ct = map.outputs().transpose();
        self.mix(&format!("{module}.weight"), ct.matmul(&aligned.0).data)?;
        match &aligned.1 {
            Some(bias) => self.mix(&format!("{module}.bias"), carry(&ct, bias)),
            None => Ok(()),
        }
    }

    /// One linear layer: inputs through `input`, outputs by its own map.
    pub fn linear(
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
    pub fn branch(
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

    /// A norm's scale (and shift, where the anchor has one), carried by the stream's map.
    pub fn norm(&mut self, module: &str, stream: &TransportMap) -> Result<()> {
        let ct = stream.outputs().transpose();
        for part in ["weight", "bias"] {
            let name = format!("{module}.{part}");
            if part == "bias" && !self.b.contains_key(&name) {
                continue;
            }
            let v = carry(&ct, &param(self.a, &name)?.data);
            self.mix(&name, v)?;
        }
        Ok(())
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
}
