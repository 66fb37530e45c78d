//! Two retrievers over the passage corpus: dense (the shipped MiniLM sentence encoder, cosine
//! similarity by an exact scan) and BM25 over words. An exact scan of 3 k × 384 floats takes
//! well under a millisecond; an approximate index (HNSW) would pay off from about a million
//! passages, where a scan reaches tens of milliseconds.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::embed::SentenceEmbedder;
use crate::knowledge::Passage;

crate::named_enum! {
    "retriever";
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum RetrieverKind {
        /// all-MiniLM-L6-v2 embeddings, cosine similarity.
        Dense = "dense",
        /// BM25 (k1 = 1.2, b = 0.75) over lower-cased words.
        Bm25 = "bm25",
    }
}

/// A retrieved passage and the retriever's score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    pub passage: usize,
    pub score: f32,
}

/// The `k` best of `scores`, best first (ties by index).
pub fn top_k(scores: &[f32], k: usize) -> Vec<Hit> {
    let mut hits: Vec<Hit> = scores
        .iter()
        .enumerate()
        .map(|(passage, &score)| Hit { passage, score })
        .collect();
    hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.passage.cmp(&b.passage)));
    hits.truncate(k);
    hits
}

/// Unit-length passage embeddings, one row per passage.
pub struct DenseIndex {
    embedder: SentenceEmbedder,
    rows: Vec<f32>,
}

/// Passages embedded per encoder call.
const EMBED_BATCH: usize = 64;

impl DenseIndex {
    /// Embeds the texts (passages, triples), or reads the embeddings cached in `cache_dir` for
    /// exactly these texts and this encoder. `on_progress` gets the share done.
    pub fn build(
        encoder_dir: &Path,
        passages: &[&str],
        cache_dir: &Path,
        on_progress: &mut dyn FnMut(f32) -> Result<()>,
    ) -> Result<Self> {
        let embedder = SentenceEmbedder::load(encoder_dir)?;
        let cache = cache_path(cache_dir, encoder_dir, passages);
        let dim = embedder.embed(&["dimension probe"])?[0].len();
        if let Ok(bytes) = std::fs::read(&cache) {
            if bytes.len() == passages.len() * dim * 4 {
                let rows = bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                return Ok(Self { embedder, rows });
            }
        }
        let mut rows = Vec::with_capacity(passages.len() * dim);
        for (i, chunk) in passages.chunks(EMBED_BATCH).enumerate() {
            for e in embedder.embed(chunk)? {
                rows.extend(e);
            }
            on_progress(
                ((i + 1) * EMBED_BATCH).min(passages.len()) as f32 / passages.len() as f32,
            )?;
        }
        let bytes: Vec<u8> = rows.iter().flat_map(|x| x.to_le_bytes()).collect();
        std::fs::create_dir_all(cache_dir)
            .with_context(|| format!("{}: cannot create", cache_dir.display()))?;
        crate::fs::write_atomic(&cache, &bytes)?;
        Ok(Self { embedder, rows })
    }

    pub fn embedder(&self) -> &SentenceEmbedder {
        &self.embedder
    }

    /// Cosine similarity of the query to every passage.
    pub fn scores(&self, query: &str) -> Result<Vec<f32>> {
        Ok(scan(&self.rows, &self.embed_query(query)?))
    }

    /// The query's unit-length embedding.
    pub fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
        self.embedder
            .embed(&[query])?
            .pop()
            .context("the encoder returned no embedding")
    }

    /// The passage embeddings, one row per passage.
    pub fn rows(&self) -> &[f32] {
        &self.rows
    }
}

/// Dot products of `query` with every row of `rows` (rows of the query's length): the exact
/// scan.
pub fn scan(rows: &[f32], query: &[f32]) -> Vec<f32> {
    rows.chunks_exact(query.len())
        .map(|row| row.iter().zip(query).map(|(a, b)| a * b).sum())
        .collect()
}

/// The cache file for these passages under this encoder: named by a hash of both.
fn cache_path(cache_dir: &Path, encoder_dir: &Path, passages: &[&str]) -> PathBuf {
    let mut h: u64 = 0xcbf29ce484222325;
    let encoder = encoder_dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string());
    for text in encoder
        .iter()
        .map(String::as_str)
        .chain(passages.iter().copied())
    {
        for b in text.bytes().chain([0]) {
            h = (h ^ b as u64).wrapping_mul(0x100000001b3);
        }
    }
    cache_dir.join(format!("dense-{h:016x}.f32"))
}

/// Lower-cased alphanumeric words.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// Okapi BM25 with the usual k1 = 1.2, b = 0.75.
pub struct Bm25 {
    /// Per passage: term → count.
    docs: Vec<HashMap<String, u32>>,
    lengths: Vec<f32>,
    mean_length: f32,
    df: HashMap<String, u32>,
}

impl Bm25 {
    const K1: f32 = 1.2;
    const B: f32 = 0.75;

    pub fn new(passages: &[Passage]) -> Self {
        let mut docs = Vec::with_capacity(passages.len());
        let mut df: HashMap<String, u32> = HashMap::new();
        let mut lengths = Vec::with_capacity(passages.len());
        for p in passages {
            let mut tf: HashMap<String, u32> = HashMap::new();
            let mut n = 0;
            for w in words(&p.text) {
                *tf.entry(w).or_default() += 1;
                n += 1;
            }
            for w in tf.keys() {
                *df.entry(w.clone()).or_default() += 1;
            }
            lengths.push(n as f32);
            docs.push(tf);
        }
        let mean_length = lengths.iter().sum::<f32>() / lengths.len().max(1) as f32;
        Self {
            docs,
            lengths,
            mean_length,
            df,
        }
    }

    pub fn scores(&self, query: &str) -> Vec<f32> {
        let n = self.docs.len() as f32;
        let terms: Vec<(String, f32)> = words(query)
            .filter_map(|w| {
                let df = *self.df.get(&w)? as f32;
                Some((w, ((n - df + 0.5) / (df + 0.5) + 1.0).ln()))
            })
            .collect();
        self.docs
            .iter()
            .zip(&self.lengths)
            .map(|(tf, &len)| {
                terms
                    .iter()
                    .map(|(w, idf)| {
                        let f = *tf.get(w).unwrap_or(&0) as f32;
                        idf * f * (Self::K1 + 1.0)
                            / (f + Self::K1 * (1.0 - Self::B + Self::B * len / self.mean_length))
                    })
                    .sum()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::knowledge::PassageKind;

    fn passage(id: usize, text: &str) -> Passage {
        Passage {
            id,
            title: String::new(),
            text: text.into(),
            kind: PassageKind::Fact,
        }
    }

    #[test]
    fn bm25_prefers_the_rare_matching_word() {
        let ps = [
            passage(0, "The capital of Peru is Lima."),
            passage(1, "The capital of Chile is Santiago."),
            passage(2, "Peru uses the Sol."),
        ];
        let bm = Bm25::new(&ps);
        let hits = top_k(&bm.scores("What is the capital of Peru?"), 3);
        assert_eq!(hits[0].passage, 0, "{hits:?}");
        let peru = bm.scores("Peru");
        assert!(
            peru[0] > 0.0 && peru[2] > peru[0],
            "the shorter passage wins: {peru:?}"
        );
        assert_eq!(peru[1], 0.0);
        assert_eq!(bm.scores("unknown words only"), vec![0.0; 3]);
    }
}
