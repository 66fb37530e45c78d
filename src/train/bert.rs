//! A trainable BERT sequence classifier with the Hugging Face
//! `BertForSequenceClassification` names (`bert.encoder.layer.0.attention.self.query.weight`,
//! `bert.pooler.dense.weight`, `classifier.weight`): the encoder is candle-transformers'
//! `BertModel` under `bert.`, the head is pooler (tanh on the first token) then a linear layer.

use candle_core::{Device, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};
use tokenizers::{Encoding, Tokenizer};

use super::nn::{attention, merge_heads, split_heads};
use super::site::Site;
use super::vit::{classification_loss, Dense, FeedForward, Norm};

/// The part of a BERT config.json the classifier needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
        self.pooled_tapped(ids, mask, &mut |_, _| Ok(()))
    }

    /// [`Self::forward`], showing `tap` every intermediate activation (`[batch, tokens,
    /// neurons]`; the pooler's `[batch, neurons]`): the fusion lab's activation costs. With
    /// post-LN placement the stream sites are the normalised streams the next layer reads.
    pub fn forward_tapped(
        &self,
        ids: &Tensor,
        mask: &Tensor,
        tap: &mut dyn FnMut(Site, &Tensor) -> Result<()>,
    ) -> Result<Tensor> {
        self.head(&self.pooled_tapped(ids, mask, tap)?)
    }

    fn pooled_tapped(
        &self,
        ids: &Tensor,
        mask: &Tensor,
        tap: &mut dyn FnMut(Site, &Tensor) -> Result<()>,
    ) -> Result<Tensor> {
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
        tap(Site::Embeddings, &x)?;
        // 0 where attended, a large negative number on padding (as transformers does).
        let bias = ((mask - 1.0)? * 1e9)?.reshape((b, 1, 1, t))?;
        let heads = self.shape.num_attention_heads;
        for (i, l) in self.layers.iter().enumerate() {
            let (q, k, v) = (l.q.forward(&x)?, l.k.forward(&x)?, l.v.forward(&x)?);
            tap(Site::Query(i), &q)?;
            tap(Site::Key(i), &k)?;
            tap(Site::Value(i), &v)?;
            let (q, k, v) = (
                split_heads(&q, heads)?,
                split_heads(&k, heads)?,
                split_heads(&v, heads)?,
            );
            let a =
                l.o.forward(&merge_heads(&attention(&q, &k, &v, Some(&bias))?)?)?;
            tap(Site::AttentionOut(i), &a)?;
            x = l.attn_norm.forward(&(a + &x)?)?;
            tap(Site::AfterAttention(i), &x)?;
            let up = l.ffn.up.forward(&x)?;
            tap(Site::Intermediate(i), &up)?;
            let f = l.ffn.down.forward(&up.gelu_erf()?)?;
            tap(Site::FeedForwardOut(i), &f)?;
            x = l.out_norm.forward(&(f + &x)?)?;
            tap(Site::AfterFeedForward(i), &x)?;
        }
        let first = x.narrow(1, 0, 1)?.squeeze(1)?;
        let pooled = self.pooler.forward(&first)?;
        tap(Site::Pooler, &pooled)?;
        pooled.tanh()
    }
}

/// Mean cross-entropy of `model` on labelled texts, padded into one batch.
pub fn batch_loss(
    model: &TrainBertClassifier,
    tokenizer: &Tokenizer,
    rows: &[&(String, usize)],
) -> Result<Tensor> {
    let texts: Vec<&str> = rows.iter().map(|(t, _)| t.as_str()).collect();
    let enc = tokenizer
        .encode_batch(texts, true)
        .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    let (ids, mask) = id_mask(&enc)?;
    let gold: Vec<u32> = rows.iter().map(|(_, l)| *l as u32).collect();
    let gold = Tensor::from_vec(gold, rows.len(), &Device::Cpu)?;
    let logits = model.forward(&ids, &mask.to_dtype(candle_core::DType::F32)?)?;
    classification_loss(&logits, &gold)
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
