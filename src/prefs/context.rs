//! The knowledge a question is asked with: its top-k triples from the graph, retrieved by
//! embedding similarity (MiniLM over the triples' text, as KnowPAT retrieves with BGE), and
//! the worse-ranked triples that build the knowledge set's misleading answer. Also the prompts
//! the chat model and the tiny zoo decoders read.

use anyhow::Result;

use crate::knowledge::{KnowledgeBase, Question, Triple};
use crate::rag::retrieve::{top_k, DenseIndex};

/// The knowledge base with a dense index over its triples.
pub struct TripleIndex {
    pub kb: KnowledgeBase,
    dense: DenseIndex,
}

impl TripleIndex {
    /// The shipped knowledge base; the triples' embeddings are cached beside the passages'.
    pub fn load(on_progress: &mut dyn FnMut(f32) -> Result<()>) -> Result<Self> {
        let kb = KnowledgeBase::shipped()?;
        let texts: Vec<String> = kb.graph.triples.iter().map(Triple::to_string).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let dense = DenseIndex::build(
            &crate::assets::embedding_model(),
            &refs,
            &crate::knowledge::dir().join("cache"),
            on_progress,
        )?;
        Ok(Self { kb, dense })
    }

    /// Triple indices ranked by similarity to `question`, best first, the first `depth`.
    fn ranked(&self, question: &str, depth: usize) -> Result<Vec<usize>> {
        Ok(top_k(&self.dense.scores(question)?, depth)
            .into_iter()
            .map(|h| h.passage)
            .collect())
    }

    /// The question's top `k` triples, and `k` misleading ones: worse-ranked (after the top
    /// `2k`) triples that do not state a gold answer, those of the question's relation (a wrong
    /// entity's fact) first. One embedding of the question serves both.
    pub fn knowledge(&self, q: &Question, k: usize) -> Result<(Vec<Triple>, Vec<Triple>)> {
        let ranked: Vec<&Triple> = self
            .ranked(q.text(), 200)?
            .into_iter()
            .map(|i| &self.kb.graph.triples[i])
            .collect();
        let top = ranked.iter().take(k).map(|t| (*t).clone()).collect();
        let gold = |t: &Triple| q.answers.contains(&t.object) || q.triples.contains(t);
        let candidates: Vec<&Triple> = ranked[(2 * k).min(ranked.len())..]
            .iter()
            .copied()
            .filter(|t| !gold(t))
            .collect();
        let same = candidates.iter().filter(|t| t.relation == q.relation);
        let other = candidates.iter().filter(|t| t.relation != q.relation);
        let misleading = same.chain(other).take(k).map(|t| (*t).clone()).collect();
        Ok((top, misleading))
    }
}

/// The user turn: the question with the given triples (none: the question alone).
pub fn user_turn(question: &str, triples: &[Triple]) -> String {
    if triples.is_empty() {
        return format!("Answer the question.\n\nQuestion: {question}");
    }
    let known: Vec<String> = triples.iter().map(Triple::to_string).collect();
    format!(
        "Answer the question using the knowledge triples.\n\nKnowledge:\n{}\n\nQuestion: {question}",
        known.join("\n")
    )
}

/// The prompt of the tiny zoo decoders, in their `kg-qa` training format: the facts, then the
/// subject and relation of the fact that answers. `fits` says whether a prompt fits the
/// model's context; facts are dropped from the front until it does.
pub fn tiny_prompt(q: &Question, triples: &[Triple], fits: &dyn Fn(&str) -> bool) -> String {
    let facts: Vec<String> = triples
        .iter()
        .map(|t| format!("{} {} {}", t.subject, t.relation.words(), t.object))
        .collect();
    let last = q.triples.last().expect("questions have triples");
    let prompt = |facts: &[String]| {
        format!(
            "facts: {}. question: {} {} ",
            facts.join("; "),
            last.subject,
            last.relation.words()
        )
    };
    (0..facts.len())
        .map(|skip| prompt(&facts[skip..]))
        .find(|p| fits(p))
        .unwrap_or_else(|| prompt(&[]))
}
