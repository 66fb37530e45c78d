//! A trainable BERT sequence classifier with the Hugging Face
//! `BertForSequenceClassification` names (`bert.encoder.layer.0.attention.self.query.weight`,
//! `bert.pooler.dense.weight`, `classifier.weight`): the encoder is candle-transformers'
//! `BertModel` under `bert.`, the head is pooler (tanh on the first token) then a linear layer.

use candle_core::{Device, Result, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;
use tokenizers::Encoding;

use super::nn::{attention, merge_heads, split_heads};
use super::vit::{Dense, FeedForward, Norm};

/// The part of a BERT config.json the classifier needs.
#[derive(Debug, Clone, Deserialize)]
pub struct BertShape {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
}

struct Layer {
    q: Dense,
    k: Dense,
    v: Dense,
    o: Dense,
    attn_norm: Norm,
    ffn: FeedForward,
    out_norm: Norm,
}

pub struct TrainBertClassifier {
    pub shape: BertShape,
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    emb_norm: Norm,
    layers: Vec<Layer>,
    pooler: Dense,
    classifier: Dense,
}

impl TrainBertClassifier {
    pub fn new(shape: BertShape, num_labels: usize, vb: VarBuilder) -> Result<Self> {
        let h = shape.hidden_size;
        let eps = shape.layer_norm_eps;
        let std = 0.02;
        let randn = candle_nn::Init::Randn {
            mean: 0.0,
            stdev: std,
        };
        let b = vb.pp("bert");
        let e = b.pp("embeddings");
        let mut layers = Vec::with_capacity(shape.num_hidden_layers);
        for l in 0..shape.num_hidden_layers {
            let lv = b.pp("encoder").pp("layer").pp(l);
            let a = lv.pp("attention");
            layers.push(Layer {
                q: Dense::new(&a.pp("self").pp("query"), h, h, std)?,
                k: Dense::new(&a.pp("self").pp("key"), h, h, std)?,
                v: Dense::new(&a.pp("self").pp("value"), h, h, std)?,
                o: Dense::new(&a.pp("output").pp("dense"), h, h, std)?,
                attn_norm: Norm::new(&a.pp("output").pp("LayerNorm"), h, eps)?,
                ffn: FeedForward::new(&lv, h, shape.intermediate_size, std)?,
                out_norm: Norm::new(&lv.pp("output").pp("LayerNorm"), h, eps)?,
            });
        }
        Ok(Self {
            word: e.get_with_hints((shape.vocab_size, h), "word_embeddings.weight", randn)?,
            position: e.get_with_hints(
                (shape.max_position_embeddings, h),
                "position_embeddings.weight",
                randn,
            )?,
            token_type: e.get_with_hints(
                (shape.type_vocab_size, h),
                "token_type_embeddings.weight",
                randn,
            )?,
            emb_norm: Norm::new(&e.pp("LayerNorm"), h, eps)?,
            layers,
            pooler: Dense::new(&b.pp("pooler").pp("dense"), h, h, std)?,
            classifier: Dense::new(&vb.pp("classifier"), num_labels, h, std)?,
            shape,
        })
    }

    /// `ids [batch, time]` (u32), `mask [batch, time]` (f32, 1 = token, 0 = padding) →
    /// logits `[batch, labels]`. No dropout: training here is deterministic.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        self.head(&self.pooled(ids, mask)?)
    }

    /// The classifier layer on pooled features `[batch, hidden]`.
    pub fn head(&self, pooled: &Tensor) -> Result<Tensor> {
        self.classifier.forward(pooled)
    }

    /// The pooler's output `[batch, hidden]`: tanh of a dense layer on the first token.
    pub fn pooled(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let h = self.shape.hidden_size;
        let words = self
            .word
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, t, h))?;
        let pos = self.position.narrow(0, 0, t)?.unsqueeze(0)?;
        let types = self.token_type.narrow(0, 0, 1)?.unsqueeze(0)?;
        let mut x = self
            .emb_norm
            .forward(&words.broadcast_add(&pos)?.broadcast_add(&types)?)?;
        // 0 where attended, a large negative number on padding (as transformers does).
        let bias = ((mask - 1.0)? * 1e9)?.reshape((b, 1, 1, t))?;
        let heads = self.shape.num_attention_heads;
        for l in &self.layers {
            let q = split_heads(&l.q.forward(&x)?, heads)?;
            let k = split_heads(&l.k.forward(&x)?, heads)?;
            let v = split_heads(&l.v.forward(&x)?, heads)?;
            let a =
                l.o.forward(&merge_heads(&attention(&q, &k, &v, Some(&bias))?)?)?;
            x = l.attn_norm.forward(&(a + &x)?)?;
            let f = l.ffn.forward(&x)?;
            x = l.out_norm.forward(&(f + &x)?)?;
        }
        let first = x.narrow(1, 0, 1)?.squeeze(1)?;
        self.pooler.forward(&first)?.tanh()
    }
}

/// Token ids and attention mask `[batch, time]` (u32) of padded encodings.
pub fn id_mask(enc: &[Encoding]) -> Result<(Tensor, Tensor)> {
    let t = enc.iter().map(|e| e.get_ids().len()).max().unwrap_or(1);
    let ids: Vec<u32> = enc
        .iter()
        .flat_map(|e| e.get_ids().iter().copied())
        .collect();
    let mask: Vec<u32> = enc
        .iter()
        .flat_map(|e| e.get_attention_mask().iter().copied())
        .collect();
    let dev = Device::Cpu;
    Ok((
        Tensor::from_vec(ids, (enc.len(), t), &dev)?,
        Tensor::from_vec(mask, (enc.len(), t), &dev)?,
    ))
}
