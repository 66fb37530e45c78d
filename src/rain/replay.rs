//! Rebuilding the search tree from a trace, event by event (for scrubbing a saved search).

use std::collections::HashMap;

use super::events::{Event, NodeStats};
use super::tree::{NewChild, NodeId, Origin, Tree};

/// The latest self-evaluation of a node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeEvaluation {
    pub sim: usize,
    pub binary: f32,
    pub soft: f32,
    pub value: f32,
    pub rollout: String,
}

/// The state after applying a prefix of a trace.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    pub tree: Tree,
    pub answer: String,
    pub simulations: usize,
    pub rewinds: usize,
    pub commits: usize,
    /// The current simulation's selected path.
    pub path: Vec<NodeId>,
    pub evaluations: HashMap<NodeId, NodeEvaluation>,
    /// (simulation, value backed up), one per simulation.
    pub values: Vec<(usize, f32)>,
    /// Committed nodes in order, and the simulation after which each was committed.
    pub committed: Vec<(NodeId, usize)>,
    pub prompt: String,
    pub finished: bool,
}

impl Replay {
    /// Applies `events` in order.
    pub fn from_events(events: &[Event]) -> Self {
        let mut r = Self::default();
        for e in events {
            r.apply(e);
        }
        r
    }

    fn set(&mut self, s: &NodeStats) {
        if let Some(n) = self.tree.nodes.get_mut(s.id) {
            n.n = s.n;
            n.fn_ = s.fn_;
            n.q = s.q;
        }
    }

    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::Started { prompt, .. } => {
                *self = Self::default();
                self.prompt = prompt.clone();
            }
            Event::NodeAdded {
                sim,
                id,
                parent,
                tokens,
                text,
                prior,
                origin,
            } => {
                let child = NewChild {
                    tokens: tokens.clone(),
                    text: text.clone(),
                    prior: *prior,
                    // Not in traces: only the live search adds nodes.
                    raw_prior: *prior,
                    origin: *origin,
                    sim: *sim,
                    terminal: false,
                };
                let got = self.tree.add_child(*parent, child);
                debug_assert_eq!(got, *id, "trace node ids are arena indices");
            }
            Event::Selected { sim, path } => {
                self.simulations = *sim;
                self.path = path.clone();
            }
            Event::BackedUp { sim, value, stats } => {
                self.values.push((*sim, *value));
                stats.iter().for_each(|s| self.set(s));
                self.tree.min_q = self.tree.min_q.min(*value);
                self.tree.max_q = self.tree.max_q.max(*value);
            }
            Event::SimilarityUpdated { stats, .. } => stats.iter().for_each(|s| self.set(s)),
            Event::Rewound { rewinds, .. } => self.rewinds = *rewinds,
            Event::Committed {
                sim,
                id,
                answer,
                priors,
                ..
            } => {
                self.commits += 1;
                self.committed.push((*id, *sim));
                for &(c, p) in priors {
                    if let Some(n) = self.tree.nodes.get_mut(c) {
                        n.prior = p;
                    }
                }
                self.tree.root = *id;
                self.answer = answer.clone();
            }
            Event::Evaluated {
                sim,
                id,
                rollout,
                binary,
                soft,
                value,
            } => {
                let e = NodeEvaluation {
                    sim: *sim,
                    binary: *binary,
                    soft: *soft,
                    value: *value,
                    rollout: rollout.clone(),
                };
                self.evaluations.insert(*id, e);
            }
            Event::Finished { .. } => self.finished = true,
            Event::Expanded { .. } => {}
        }
    }

    /// How a node came to be, for the inspector.
    pub fn origin(&self, id: NodeId) -> Option<Origin> {
        self.tree.nodes.get(id).map(|n| n.origin)
    }

    /// The answer text up to and including node `id` (from the first root, across commits).
    pub fn text_to(&self, id: NodeId) -> String {
        let mut parts = Vec::new();
        let mut node = self.tree.nodes.get(id);
        while let Some(n) = node {
            parts.push(n.text.as_str());
            node = n.parent.and_then(|p| self.tree.nodes.get(p));
        }
        parts.reverse();
        parts.concat()
    }
}
