//! One encoder layer on the shared walk, for both placements of its LayerNorms: ViT's pre-LN
//! (a norm before each branch) and BERT's post-LN (a norm after each residual join). Either
//! way a norm sits on the residual stream and takes the stream's map; only where the walk
//! meets it differs.

use anyhow::Result;

use super::options::QkPolicy;
use super::transport::TransportMap;
use super::walk::Walk;
use crate::train::site::Site;

/// Where an encoder layer's two LayerNorms sit, by their module names within the layer.
pub enum Norms {
    /// Before the attention and before the feed-forward (ViT).
    Pre {
        before: &'static str,
        after: &'static str,
    },
    /// After the attention's residual join and after the feed-forward's (BERT).
    Post {
        attention: &'static str,
        output: &'static str,
    },
}

/// The Hugging Face names of one encoder family's layers.
pub struct LayerNames {
    /// `vit.encoder.layer`, `bert.encoder.layer`.
    pub prefix: &'static str,
    /// The module holding query, key and value: `attention.attention`, `attention.self`.
    pub self_attention: &'static str,
    pub norms: Norms,
}

impl LayerNames {
    /// The name of module `module` of layer `l`.
    pub fn module(&self, l: usize, module: &str) -> String {
        format!("{}.{l}.{module}", self.prefix)
    }
}

impl Walk<'_> {
    /// Fuses encoder layer `l`, whose input stream has map `stream`; returns the stream's map
    /// after the layer. Q, K and V are full-width layers (neurons may move between heads),
    /// with separate or joint Q-K maps; the attention output takes V's map as its input map.
    pub fn encoder_layer(
        &mut self,
        names: &LayerNames,
        l: usize,
        stream: TransportMap,
    ) -> Result<TransportMap> {
        let m = |module: &str| names.module(l, module);
        let before = if l == 0 {
            Site::Embeddings
        } else {
            Site::AfterFeedForward(l - 1)
        };
        if let Norms::Pre { before, .. } = names.norms {
            self.norm(&m(before), &stream)?;
        }
        let attn = |part: &str| m(&format!("{}.{part}", names.self_attention));
        let (q, k, v) = (attn("query"), attn("key"), attn("value"));
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
        match names.norms {
            Norms::Pre { after, .. } => self.norm(&m(after), &stream)?,
            Norms::Post { attention, .. } => self.norm(&m(attention), &stream)?,
        }
        let up = self.linear(
            format!("layer {l} · intermediate"),
            &m("intermediate.dense"),
            Site::Intermediate(l),
            &stream,
        )?;
        let stream = self.branch(
            l,
            ("output", "stream after feed-forward"),
            &m("output.dense"),
            (Site::AfterAttention(l), Site::FeedForwardOut(l)),
            &up,
            &stream,
        )?;
        if let Norms::Post { output, .. } = names.norms {
            self.norm(&m(output), &stream)?;
        }
        Ok(stream)
    }
}
