//! DPA-RAG's reranker (external alignment): a cross-encoder — the shipped all-MiniLM-L6-v2
//! reading `[CLS] query [SEP] passage [SEP]`, a score from its pooled first token — trained on
//! mined preference knowledge with three losses: point-wise cross-entropy (aligned vs not),
//! pair-wise ranking `−log σ(sᵢ − sⱼ)` within a query's ranked list, and supervised contrastive
//! loss (τ = 0.07) on the normalised pooled features. The losses' weights come, step by step,
//! from the min-norm solver on their gradients at the pooled features (MGDA-UB).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use tokenizers::{Tokenizer, TruncationParams};

use super::mgda::min_norm_weights;
use super::mine::{Alignment, MinedQuery};
use crate::train::bert::{id_mask, BertShape, TrainBertClassifier};
use crate::train::optim::{lr_at, Adam, AdamConfig};

crate::named_enum! {
    "reranker loss";
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum Loss {
        /// Point-wise binary cross-entropy: aligned (1) vs unaligned (0).
        Pointwise = "pointwise",
        /// Pair-wise ranking over each query's list: −log σ(s_better − s_worse).
        Pairwise = "pairwise",
        /// Supervised contrastive loss on normalised features, τ = 0.07.
        Contrastive = "contrastive",
    }
}

/// Tokens per query–passage pair (longer pairs are cut).
const MAX_PAIR_TOKENS: usize = 160;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RerankerRequest {
    /// The encoder to start from (a BERT folder).
    pub encoder: PathBuf,
    pub losses: Vec<Loss>,
    /// Weights from MGDA-UB (else equal weights).
    pub mgda: bool,
    /// Scale each loss's gradient to unit length before the min-norm solve (the "l2"
    /// normalisation of Sener & Koltun's code); without it the solver puts nearly all the
    /// weight on the loss with the smallest gradient.
    pub normalise_gradients: bool,
    /// Also use passages that leave a wrong answer wrong as negatives (not in the paper, which
    /// drops them).
    pub both_wrong_negatives: bool,
    pub steps: usize,
    /// Queries per step (each with its labelled passages, at most four).
    pub queries: usize,
    pub lr: f64,
    pub temperature: f64,
    pub seed: u64,
}

impl RerankerRequest {
    pub fn new(encoder: PathBuf) -> Self {
        Self {
            encoder,
            losses: Loss::ALL.to_vec(),
            mgda: true,
            normalise_gradients: true,
            both_wrong_negatives: false,
            steps: 200,
            queries: 4,
            lr: 1e-4,
            temperature: 0.07,
            seed: 0,
        }
    }
}

/// A passage of a query's list: its grade in the list's ranking (1 when the reader is right
/// with it alone, 0 when wrong) and, for aligned and unaligned passages, the class the
/// point-wise and contrastive losses learn (1 aligned, 0 unaligned).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ListDoc {
    pub passage: usize,
    pub grade: f32,
    pub label: Option<f32>,
}

/// One query's mined passages, best first: its ranked list.
#[derive(Debug, Clone)]
pub struct RankedList {
    pub query: String,
    pub docs: Vec<ListDoc>,
}

/// The training lists. A query's passages are either aligned or both-wrong (when the reader
/// fails without help) or both-right or unaligned (when it knows the answer), so a list never
/// holds both classes: the pair-wise loss ranks passages the reader is right with above those
/// it is wrong with, and the class losses see the aligned and unaligned ones (optionally
/// both-wrong ones as negatives too). Lists with nothing to learn are dropped.
pub fn ranked_lists(mined: &[MinedQuery], both_wrong_negatives: bool) -> Vec<RankedList> {
    mined
        .iter()
        .filter_map(|q| {
            let mut docs: Vec<ListDoc> = q
                .passages
                .iter()
                .map(|p| ListDoc {
                    passage: p.passage,
                    grade: matches!(p.label, Alignment::Aligned | Alignment::BothRight) as u8
                        as f32,
                    label: match p.label {
                        Alignment::Aligned => Some(1.0),
                        Alignment::Unaligned => Some(0.0),
                        Alignment::BothWrong if both_wrong_negatives => Some(0.0),
                        _ => None,
                    },
                })
                .collect();
            docs.sort_by(|a, b| b.grade.total_cmp(&a.grade));
            docs.truncate(4);
            let ranked = docs.iter().any(|d| d.grade != docs[0].grade);
            let labelled = docs.iter().any(|d| d.label.is_some());
            (ranked || labelled).then(|| RankedList {
                query: q.query.clone(),
                docs,
            })
        })
        .collect()
}

/// One training step's losses (NaN where a loss is off) and the weights it used.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct RerankerStep {
    pub step: usize,
    pub total: usize,
    pub loss: f32,
    pub parts: [f32; 3],
    pub weights: [f32; 3],
    pub seconds: f64,
}

/// `log(1 + eˣ)`, stable for large |x|.
fn softplus(x: &Tensor) -> candle_core::Result<Tensor> {
    x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?
}

/// The three losses on scores `[n]` and pooled features `[n, h]` of a batch of lists: the
/// class losses over the labelled passages, the pair-wise one within each list by grade.
fn losses(
    scores: &Tensor,
    features: &Tensor,
    docs: &[ListDoc],
    lists: &[std::ops::Range<usize>],
    temperature: f64,
) -> candle_core::Result<[Tensor; 3]> {
    let dev = Device::Cpu;
    let zero = (scores.sum_all()? * 0.0)?;
    let labelled: Vec<u32> = (0..docs.len() as u32)
        .filter(|&i| docs[i as usize].label.is_some())
        .collect();
    let labels: Vec<f32> = docs.iter().filter_map(|d| d.label).collect();
    let n = labels.len();
    let (pointwise, contrastive) = if n == 0 {
        (zero.clone(), zero.clone())
    } else {
        let idx = Tensor::new(labelled.as_slice(), &dev)?;
        let s = scores.index_select(&idx, 0)?;
        let y = Tensor::from_slice(&labels, n, &dev)?;
        let pointwise =
            ((softplus(&s.neg()?)? * &y)? + (softplus(&s)? * (1.0 - &y)?)?)?.mean_all()?;
        (
            pointwise,
            contrastive_loss(&features.index_select(&idx, 0)?, &labels, temperature)?,
        )
    };
    let (mut better, mut worse) = (Vec::new(), Vec::new());
    for r in lists {
        for i in r.clone() {
            for j in r.clone() {
                if docs[i].grade > docs[j].grade {
                    better.push(i as u32);
                    worse.push(j as u32);
                }
            }
        }
    }
    let pairwise = if better.is_empty() {
        zero
    } else {
        let b = scores.index_select(&Tensor::new(better.as_slice(), &dev)?, 0)?;
        let w = scores.index_select(&Tensor::new(worse.as_slice(), &dev)?, 0)?;
        softplus(&(w - b)?)?.mean_all()?
    };
    Ok([pointwise, pairwise, contrastive])
}

/// Supervised contrastive loss (Khosla et al., 2020) over anchors with at least one positive;
/// zero when there is none.
fn contrastive_loss(
    features: &Tensor,
    labels: &[f32],
    temperature: f64,
) -> candle_core::Result<Tensor> {
    let dev = Device::Cpu;
    let n = labels.len();
    let norm = features
        .sqr()?
        .sum_keepdim(1)?
        .sqrt()?
        .clamp(1e-6, f64::MAX)?;
    let u = features.broadcast_div(&norm)?;
    let sim = (u.matmul(&u.t()?)? / temperature)?;
    let mut self_mask = vec![0f32; n * n];
    let mut pos = vec![0f32; n * n];
    let mut anchors = 0usize;
    for i in 0..n {
        self_mask[i * n + i] = -1e9;
        let mut any = false;
        for j in 0..n {
            if i != j && labels[i] == labels[j] {
                pos[i * n + j] = 1.0;
                any = true;
            }
        }
        anchors += any as usize;
    }
    if anchors == 0 {
        return features.sum_all()? * 0.0;
    }
    let masked = (sim + Tensor::from_vec(self_mask, (n, n), &dev)?)?;
    let log_prob = masked.broadcast_sub(&masked.exp()?.sum_keepdim(1)?.log()?)?;
    let pos = Tensor::from_vec(pos, (n, n), &dev)?;
    let per_anchor = (log_prob * &pos)?
        .sum(1)?
        .broadcast_div(&pos.sum(1)?.clamp(1.0, f64::MAX)?)?;
    per_anchor.sum_all()?.neg()? / anchors as f64
}

/// The cross-encoder: a BERT with a one-score head.
pub struct Reranker {
    model: TrainBertClassifier,
    tokenizer: Tokenizer,
}

fn pair_tokenizer(dir: &Path) -> Result<Tokenizer> {
    let path = dir.join("tokenizer.json");
    let mut tok = Tokenizer::from_file(&path)
        .map_err(|e| anyhow::anyhow!("{}: cannot read tokenizer: {e}", path.display()))?;
    tok.with_padding(Some(tokenizers::PaddingParams::default()));
    tok.with_truncation(Some(TruncationParams {
        max_length: MAX_PAIR_TOKENS,
        ..Default::default()
    }))
    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(tok)
}

impl Reranker {
    /// A BERT folder (config.json, tokenizer.json, model.safetensors); a plain encoder gets a
    /// fresh head, seeded.
    fn open(dir: &Path, varmap: &VarMap, seed: u64) -> Result<(Self, serde_json::Value)> {
        let config_path = dir.join("config.json");
        let raw: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(&config_path)
                .with_context(|| format!("{}: cannot read", config_path.display()))?,
        )
        .with_context(|| format!("{}: invalid JSON", config_path.display()))?;
        let shape: BertShape = serde_json::from_value(raw.clone())
            .with_context(|| format!("{}: not a BERT config", config_path.display()))?;
        let model = TrainBertClassifier::new(shape, 1, crate::train::seeded_builder(varmap, seed))?;
        let missing = crate::train::load_into(varmap, &dir.join("model.safetensors"), "bert.")?;
        anyhow::ensure!(
            missing.iter().all(|m| m.starts_with("classifier.")),
            "{}: the encoder lacks {missing:?}",
            dir.display()
        );
        Ok((
            Self {
                model,
                tokenizer: pair_tokenizer(dir)?,
            },
            raw,
        ))
    }

    /// A trained reranker folder.
    pub fn load(dir: &Path) -> Result<Self> {
        Ok(Self::open(dir, &VarMap::new(), 0)?.0)
    }

    /// Scores and pooled features of (query, passage) pairs.
    fn forward(&self, pairs: Vec<(String, String)>) -> Result<(Tensor, Tensor)> {
        let enc = self
            .tokenizer
            .encode_batch(pairs, true)
            .map_err(|e| anyhow::anyhow!("tokenizer: {e}"))?;
        let (ids, mask) = id_mask(&enc)?;
        let features = self.model.pooled(&ids, &mask.to_dtype(DType::F32)?)?;
        let scores = self.model.head(&features)?.squeeze(1)?;
        Ok((scores, features))
    }

    /// The reranker's score of each passage for the query.
    pub fn scores(&self, query: &str, passages: &[&str]) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(passages.len());
        for chunk in passages.chunks(32) {
            let pairs = chunk
                .iter()
                .map(|p| (query.to_string(), p.to_string()))
                .collect();
            out.extend(self.forward(pairs)?.0.to_vec1::<f32>()?);
        }
        Ok(out)
    }
}

/// Trains a reranker on `lists` (passage texts from `passages`) and writes it to `out`.
pub fn train_reranker(
    request: &RerankerRequest,
    lists: &[RankedList],
    passages: &[&str],
    out: &Path,
    on_step: &mut dyn FnMut(RerankerStep) -> Result<()>,
) -> Result<Vec<RerankerStep>> {
    anyhow::ensure!(
        !lists.is_empty(),
        "no labelled passages to train the reranker on"
    );
    anyhow::ensure!(
        !request.losses.is_empty(),
        "the reranker needs at least one loss"
    );
    let varmap = VarMap::new();
    let (reranker, mut config) = Reranker::open(&request.encoder, &varmap, request.seed)?;
    let mut opt = Adam::new(varmap.all_vars(), AdamConfig::default())?;
    let mut rng = StdRng::seed_from_u64(request.seed);
    let mut order: Vec<usize> = (0..lists.len()).collect();
    let mut cursor = order.len();
    let start = std::time::Instant::now();
    let warmup = request.steps / 10;
    let mut history = Vec::with_capacity(request.steps);
    for step in 0..request.steps {
        let mut pairs = Vec::new();
        let mut docs: Vec<ListDoc> = Vec::new();
        let mut ranges = Vec::new();
        for _ in 0..request.queries.min(lists.len()) {
            if cursor == order.len() {
                order.shuffle(&mut rng);
                cursor = 0;
            }
            let list = &lists[order[cursor]];
            cursor += 1;
            let first = docs.len();
            for d in &list.docs {
                pairs.push((list.query.clone(), passages[d.passage].to_string()));
                docs.push(*d);
            }
            ranges.push(first..docs.len());
        }
        let (scores, features) = reranker.forward(pairs)?;
        let on = |l: Loss| request.losses.contains(&l);
        // MGDA-UB: gradients of each loss at the shared features, through the heads only.
        let weights: Vec<f64> = if request.mgda {
            let leaf = Var::from_tensor(&features.detach())?;
            let leaf_scores = reranker.model.head(leaf.as_tensor())?.squeeze(1)?;
            let parts = losses(
                &leaf_scores,
                leaf.as_tensor(),
                &docs,
                &ranges,
                request.temperature,
            )?;
            let grads = Loss::ALL
                .iter()
                .zip(&parts)
                .map(|(&l, part)| -> Result<Vec<f32>> {
                    if !on(l) {
                        return Ok(Vec::new());
                    }
                    let g = part.backward()?;
                    let mut g: Vec<f32> = match g.get(leaf.as_tensor()) {
                        Some(t) => t.flatten_all()?.to_vec1()?,
                        None => Vec::new(),
                    };
                    let norm = g.iter().map(|x| x * x).sum::<f32>().sqrt();
                    if request.normalise_gradients && norm > 0.0 {
                        g.iter_mut().for_each(|x| *x /= norm);
                    }
                    Ok(g)
                })
                .collect::<Result<Vec<_>>>()?;
            min_norm_weights(&grads)
        } else {
            let k = request.losses.len() as f64;
            Loss::ALL
                .iter()
                .map(|&l| if on(l) { 1.0 / k } else { 0.0 })
                .collect()
        };
        let parts = losses(&scores, &features, &docs, &ranges, request.temperature)?;
        let mut total = (scores.sum_all()? * 0.0)?;
        for (part, &w) in parts.iter().zip(&weights) {
            if w > 0.0 {
                total = (total + (part * w)?)?;
            }
        }
        let value = total.to_scalar::<f32>()?;
        anyhow::ensure!(
            value.is_finite(),
            "reranker training diverged at step {step}"
        );
        let lr = lr_at(step, request.steps, warmup, request.lr);
        opt.step(&total.backward()?, lr)?;
        let mut report = RerankerStep {
            step: step + 1,
            total: request.steps,
            loss: value,
            parts: [f32::NAN; 3],
            weights: [0.0; 3],
            seconds: start.elapsed().as_secs_f64(),
        };
        for (i, &l) in Loss::ALL.iter().enumerate() {
            if on(l) {
                report.parts[i] = parts[i].to_scalar::<f32>()?;
            }
            report.weights[i] = weights[i] as f32;
        }
        history.push(report);
        on_step(report)?;
    }
    config["architectures"] = serde_json::json!(["BertForSequenceClassification"]);
    config["num_labels"] = 1.into();
    config["torch_dtype"] = "float32".into();
    crate::train::model_folder::save_checkpoint(out, &varmap, &config, |dir| {
        crate::zoo::minilm::copy_tokenizer_files(&request.encoder, dir)
    })?;
    Ok(history)
}

#[cfg(test)]
fn scalar(t: &Tensor) -> f32 {
    t.to_scalar::<f32>().unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losses_reward_the_right_order_and_clusters() {
        let dev = Device::Cpu;
        let docs = [
            doc_at(0, 1.0, Some(1.0)),
            doc_at(0, 0.0, Some(0.0)),
            doc_at(0, 1.0, Some(1.0)),
            doc_at(0, 0.0, Some(0.0)),
        ];
        let lists = [0..2, 2..4];
        let good_scores = Tensor::new(&[3f32, -3.0, 3.0, -3.0], &dev).unwrap();
        let bad_scores = good_scores.neg().unwrap();
        let clustered =
            Tensor::new(&[[1f32, 0.0], [0.0, 1.0], [1.0, 0.1], [0.1, 1.0]], &dev).unwrap();
        let mixed = Tensor::new(&[[1f32, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]], &dev).unwrap();
        let good = losses(&good_scores, &clustered, &docs, &lists, 0.07).unwrap();
        let bad = losses(&bad_scores, &mixed, &docs, &lists, 0.07).unwrap();
        for i in 0..3 {
            assert!(scalar(&good[i]) < scalar(&bad[i]), "loss {i}");
        }
        assert!(scalar(&good[1]) < 0.01);
        // Equal grades: no pair; no labels: no class losses.
        let flat = [doc_at(0, 1.0, None); 4];
        let none = losses(&good_scores, &clustered, &flat, &lists, 0.07).unwrap();
        assert!(none.iter().all(|l| scalar(l) == 0.0));
    }

    #[test]
    fn lists_rank_by_the_reader_and_label_by_alignment() {
        use crate::rag::mine::MinedPassage;
        let passage = |passage, label| MinedPassage {
            passage,
            rank: 1,
            reply: String::new(),
            label,
        };
        let q = MinedQuery {
            question: "q".into(),
            query: "q".into(),
            answers: vec![],
            reply_without: String::new(),
            right_without: false,
            passages: vec![
                passage(5, Alignment::BothWrong),
                passage(6, Alignment::Aligned),
            ],
        };
        let lists = ranked_lists(std::slice::from_ref(&q), false);
        assert_eq!(
            lists[0].docs,
            [doc_at(6, 1.0, Some(1.0)), doc_at(5, 0.0, None)]
        );
        let lists = ranked_lists(&[q], true);
        assert_eq!(lists[0].docs[1].label, Some(0.0));
    }

    fn doc_at(passage: usize, grade: f32, label: Option<f32>) -> ListDoc {
        ListDoc {
            passage,
            grade,
            label,
        }
    }
}
