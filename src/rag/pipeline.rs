//! The loaded pipeline: the knowledge base, both retrievers and the reader, and the steps a
//! question goes through — retrieve, rerank, read.

use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::mine::Alignment;
use super::reader::{read, Reading};
use super::reranker::Reranker;
use super::retrieve::{top_k, Bm25, DenseIndex, Hit, RetrieverKind};
use super::score::hit;
use crate::knowledge::KnowledgeBase;
use crate::lm::LanguageModel;

pub struct Pipeline {
    pub kb: KnowledgeBase,
    pub dense: DenseIndex,
    pub bm25: Bm25,
}

impl Pipeline {
    /// Loads the shipped knowledge base and builds (or reads the cached) dense index.
    pub fn load(on_progress: &mut dyn FnMut(f32) -> Result<()>) -> Result<Self> {
        let kb = KnowledgeBase::shipped()?;
        let texts: Vec<&str> = kb.passages.iter().map(|p| p.text.as_str()).collect();
        let dense = DenseIndex::build(
            &crate::assets::embedding_model(),
            &texts,
            &crate::knowledge::dir().join("cache"),
            on_progress,
        )?;
        let bm25 = Bm25::new(&kb.passages);
        Ok(Self { kb, dense, bm25 })
    }

    pub fn retrieve(&self, kind: RetrieverKind, query: &str, k: usize) -> Result<Vec<Hit>> {
        let scores = match kind {
            RetrieverKind::Dense => self.dense.scores(query)?,
            RetrieverKind::Bm25 => self.bm25.scores(query),
        };
        Ok(top_k(&scores, k))
    }

    pub fn text(&self, passage: usize) -> &str {
        &self.kb.passages[passage].text
    }

    /// `hits` reordered by the reranker's scores (the scores replace the retriever's).
    pub fn rerank(&self, reranker: &Reranker, query: &str, hits: &[Hit]) -> Result<Vec<Hit>> {
        let texts: Vec<&str> = hits.iter().map(|h| self.text(h.passage)).collect();
        let scores = reranker.scores(query, &texts)?;
        let rescored: Vec<Hit> = hits
            .iter()
            .zip(scores)
            .map(|(h, score)| Hit {
                passage: h.passage,
                score,
            })
            .collect();
        let mut ordered = rescored;
        ordered.sort_by(|a, b| b.score.total_cmp(&a.score));
        Ok(ordered)
    }
}

/// A passage shown for an asked question.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AskedPassage {
    pub passage: usize,
    pub title: String,
    pub text: String,
    pub retriever_score: f32,
    pub reranker_score: Option<f32>,
    /// The reader's reply with this passage alone.
    pub reply: String,
    /// Against the gold answer, when the question has one.
    pub label: Option<Alignment>,
}

/// What the page shows for one question.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Asked {
    pub question: String,
    pub gold: Option<Vec<String>>,
    pub reply_without: String,
    /// Retrieved passages in the retriever's order.
    pub passages: Vec<AskedPassage>,
    /// Indices into `passages` in the reranker's order (empty without a reranker).
    pub reranked: Vec<usize>,
    /// The answer with the retriever's top k.
    pub answer_standard: String,
    /// The answer with the reranker's top k.
    pub answer_reranked: Option<String>,
    /// The pre-aligned reader's answer with the reranker's top k (full DPA-RAG), if given.
    pub answer_aligned: Option<String>,
}

/// Asks `question`: retrieves `depth` passages, reranks them, reads each alone (to colour it)
/// and answers with the top `k` before and after reranking.
#[allow(clippy::too_many_arguments)]
pub fn ask(
    pipeline: &Pipeline,
    reader: &Arc<LanguageModel>,
    aligned_reader: Option<&Arc<LanguageModel>>,
    reranker: Option<&Reranker>,
    question: &str,
    gold: Option<&[String]>,
    k: usize,
    depth: usize,
) -> Result<Asked> {
    let hits = pipeline.retrieve(RetrieverKind::Dense, question, depth)?;
    let texts: Vec<&str> = hits.iter().map(|h| pipeline.text(h.passage)).collect();
    let replies = read(reader, &super::mine::readings(question, &texts))?;
    let reranked_hits = match reranker {
        Some(r) => pipeline.rerank(r, question, &hits)?,
        None => Vec::new(),
    };
    let right_without = gold.map(|g| hit(&replies[0], g));
    let passages: Vec<AskedPassage> = hits
        .iter()
        .zip(&replies[1..])
        .map(|(h, reply)| AskedPassage {
            passage: h.passage,
            title: pipeline.kb.passages[h.passage].title.clone(),
            text: pipeline.text(h.passage).to_string(),
            retriever_score: h.score,
            reranker_score: reranked_hits
                .iter()
                .find(|r| r.passage == h.passage)
                .map(|r| r.score),
            reply: reply.clone(),
            label: gold
                .zip(right_without)
                .map(|(g, w)| Alignment::of(w, hit(reply, g))),
        })
        .collect();
    let reranked: Vec<usize> = reranked_hits
        .iter()
        .filter_map(|r| hits.iter().position(|h| h.passage == r.passage))
        .collect();
    let top = |order: &[usize]| -> Vec<&str> { order.iter().take(k).map(|&i| texts[i]).collect() };
    let standard: Vec<usize> = (0..hits.len()).collect();
    let answer_standard = read(
        reader,
        &[Reading {
            question,
            passages: top(&standard),
        }],
    )?
    .remove(0);
    let read_reranked = |model: &Arc<LanguageModel>| -> Result<String> {
        Ok(read(
            model,
            &[Reading {
                question,
                passages: top(&reranked),
            }],
        )?
        .remove(0))
    };
    let answer_reranked = reranker.map(|_| read_reranked(reader)).transpose()?;
    let answer_aligned = match (reranker, aligned_reader) {
        (Some(_), Some(model)) => Some(read_reranked(model)?),
        _ => None,
    };
    Ok(Asked {
        question: question.into(),
        gold: gold.map(<[String]>::to_vec),
        reply_without: replies[0].clone(),
        passages,
        reranked,
        answer_standard,
        answer_reranked,
        answer_aligned,
    })
}

/// Loads a reader model (GGUF or Hugging Face folder).
pub fn load_reader(path: &Path) -> Result<Arc<LanguageModel>> {
    Ok(Arc::new(LanguageModel::load(path)?))
}
