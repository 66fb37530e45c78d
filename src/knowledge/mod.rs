//! The knowledge base shared by the RAG and preference labs: a knowledge graph of GeoNames
//! facts ([`graph`]), a passage corpus written from it ([`corpus`]) and question sets with
//! gold answers split by entity ([`questions`]).

pub mod corpus;
pub mod graph;
pub mod questions;

use std::path::{Path, PathBuf};

use anyhow::Result;

pub use corpus::{Passage, PassageKind};
pub use graph::{Graph, Relation, Triple};
pub use questions::{Hops, Question, Split};

/// The folder of the knowledge base's shipped table.
pub fn dir() -> PathBuf {
    crate::assets::dir().join("knowledge")
}

/// The graph, its passages and its questions, built deterministically from the tables.
pub struct KnowledgeBase {
    pub graph: Graph,
    pub passages: Vec<Passage>,
    pub questions: Vec<Question>,
}

impl KnowledgeBase {
    /// Builds everything from `countries.tsv` in `knowledge_dir` and the zoo's `cities.tsv`.
    pub fn load(knowledge_dir: &Path, zoo_data: &Path) -> Result<Self> {
        let graph = Graph::load(knowledge_dir, zoo_data)?;
        let passages = corpus::passages(&graph);
        let questions = questions::questions(&graph);
        Ok(Self {
            graph,
            passages,
            questions,
        })
    }

    /// The knowledge base from the shipped tables.
    pub fn shipped() -> Result<Self> {
        Self::load(&dir(), &crate::assets::dir().join("zoo").join("data"))
    }

    /// Questions of one split and hop count.
    pub fn split(&self, split: Split, hops: Hops) -> Vec<&Question> {
        self.questions
            .iter()
            .filter(|q| q.split == split && q.hops == hops)
            .collect()
    }
}

/// A stable hash of `key` under `salt`: picks wordings and splits reproducibly.
fn stable_hash(salt: &str, key: &str) -> u32 {
    crate::counter_rng::MaskKey::new(0x6b62, &format!("{salt}/{key}")).bits(0)
}
