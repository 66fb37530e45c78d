//! Rebuilding the search tree from a trace, event by event (for scrubbing a saved search).

use super::events::{Event, NodeStats};
use super::tree::{Origin, Tree};

/// The state after applying a prefix of a trace.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    pub tree: Tree,
    pub answer: String,
    pub simulations: usize,
    pub rewinds: usize,
    pub commits: usize,
    /// The current simulation's selected path.
    pub path: Vec<usize>,
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
            Event::Started { .. } => *self = Self::default(),
            Event::NodeAdded {
                sim,
                id,
                parent,
                tokens,
                text,
                prior,
                origin,
            } => {
                let got = self.tree.add_child(
                    *parent,
                    tokens.clone(),
                    text.clone(),
                    *prior,
                    *origin,
                    *sim,
                    false,
                );
                debug_assert_eq!(got, *id, "trace node ids are arena indices");
            }
            Event::Selected { sim, path } => {
                self.simulations = *sim;
                self.path = path.clone();
            }
            Event::BackedUp { value, stats, .. } => {
                stats.iter().for_each(|s| self.set(s));
                self.tree.min_q = self.tree.min_q.min(*value);
                self.tree.max_q = self.tree.max_q.max(*value);
            }
            Event::SimilarityUpdated { stats, .. } => stats.iter().for_each(|s| self.set(s)),
            Event::Rewound { rewinds, .. } => self.rewinds = *rewinds,
            Event::Committed {
                id, answer, priors, ..
            } => {
                self.commits += 1;
                for &(c, p) in priors {
                    if let Some(n) = self.tree.nodes.get_mut(c) {
                        n.prior = p;
                    }
                }
                self.tree.root = *id;
                self.answer = answer.clone();
            }
            Event::Evaluated { .. } | Event::Expanded { .. } | Event::Finished { .. } => {}
        }
    }

    /// How a node came to be, for the inspector.
    pub fn origin(&self, id: usize) -> Option<Origin> {
        self.tree.nodes.get(id).map(|n| n.origin)
    }
}
