//! The RAIN search tree: nodes hold token chunks with visit counts, values and priors.
//! Nodes live in an arena (`Vec<Node>`) and refer to each other by index, so the UI and trace
//! files can name them by a stable id.

use serde::{Deserialize, Serialize};

pub type NodeId = usize;

/// Why a node exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Origin {
    Root,
    Expansion,
    DynamicAddition,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Node {
    pub id: NodeId,
    pub parent: Option<NodeId>,
    pub children: Vec<NodeId>,
    /// The token chunk this node adds after its parent.
    pub tokens: Vec<u32>,
    pub text: String,
    /// Visits, fractional after similarity updates.
    pub n: f32,
    /// Real visits (integer).
    pub fn_: u32,
    pub q: f32,
    pub prior: f32,
    /// The chunk's own probability before normalisation among its siblings (what a dynamic
    /// addition's prior is normalised against).
    #[serde(default)]
    pub raw_prior: f32,
    /// Tokens generated before this node's chunk, counted from the start of the answer: sets the
    /// chunk length of its children.
    pub depth_tokens: usize,
    /// Running mean of the embeddings of the texts that passed through this node.
    pub embedding: Option<Vec<f32>>,
    pub embedding_count: u32,
    pub origin: Origin,
    /// Simulation number during which the node was added.
    pub added_at: usize,
    /// Ends with end-of-turn.
    pub terminal: bool,
    /// Candidates not yet used, best first: (chunk, raw prior). Dynamic addition draws from here.
    pub spare: Vec<(Vec<u32>, f32)>,
    /// Simulations selected through this node and not yet backed up (virtual loss).
    #[serde(skip)]
    pub pending: f32,
}

/// What a new child is made of.
pub struct NewChild {
    pub tokens: Vec<u32>,
    pub text: String,
    pub prior: f32,
    pub raw_prior: f32,
    pub origin: Origin,
    /// The simulation adding it.
    pub sim: usize,
    pub terminal: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
    pub root: NodeId,
    pub min_q: f32,
    pub max_q: f32,
}

impl Tree {
    pub fn new() -> Self {
        Self {
            nodes: vec![Node {
                id: 0,
                parent: None,
                children: Vec::new(),
                tokens: Vec::new(),
                text: String::new(),
                n: 0.0,
                fn_: 0,
                q: 0.0,
                prior: 1.0,
                raw_prior: 1.0,
                depth_tokens: 0,
                embedding: None,
                embedding_count: 0,
                origin: Origin::Root,
                added_at: 0,
                terminal: false,
                spare: Vec::new(),
                pending: 0.0,
            }],
            root: 0,
            min_q: -1.0,
            max_q: 1.0,
        }
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id]
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes[id]
    }

    /// Adds a child and returns its id.
    pub fn add_child(&mut self, parent: NodeId, child: NewChild) -> NodeId {
        let id = self.nodes.len();
        let p = &self.nodes[parent];
        let depth_tokens = p.depth_tokens + p.tokens.len();
        self.nodes.push(Node {
            id,
            parent: Some(parent),
            children: Vec::new(),
            tokens: child.tokens,
            text: child.text,
            n: 0.0,
            fn_: 0,
            q: 0.0,
            prior: child.prior,
            raw_prior: child.raw_prior,
            depth_tokens,
            embedding: None,
            embedding_count: 0,
            origin: child.origin,
            added_at: child.sim,
            terminal: child.terminal,
            spare: Vec::new(),
            pending: 0.0,
        });
        self.nodes[parent].children.push(id);
        id
    }

    /// Ids from the root to `id`, both included.
    pub fn path_to(&self, id: NodeId) -> Vec<NodeId> {
        let mut path = vec![id];
        let mut cur = id;
        while cur != self.root {
            match self.nodes[cur].parent {
                Some(p) => {
                    path.push(p);
                    cur = p;
                }
                None => break,
            }
        }
        path.reverse();
        path
    }

    /// Tokens from the root (exclusive) to `id` (inclusive).
    pub fn tokens_to(&self, id: NodeId) -> Vec<u32> {
        self.path_to(id)
            .iter()
            .skip(1)
            .flat_map(|&n| self.nodes[n].tokens.iter().copied())
            .collect()
    }

    /// Visits as selection counts them: real and lent ones plus simulations in flight.
    pub fn visits(&self, id: NodeId) -> f32 {
        let n = &self.nodes[id];
        n.n + n.pending
    }

    /// Normalised value used in selection: (q − min) / (max − min + 1e-5), 0 for unvisited nodes.
    /// Each simulation in flight counts as a visit of the lowest value seen (virtual loss), so
    /// simulations selected together spread over the tree.
    pub fn normalised_q(&self, id: NodeId) -> f32 {
        let n = &self.nodes[id];
        let visits = n.n + n.pending;
        if visits <= 0.0 {
            0.0
        } else {
            let q = if n.pending > 0.0 {
                (n.q * n.n + self.min_q * n.pending) / visits
            } else {
                n.q
            };
            (q - self.min_q) / (self.max_q - self.min_q + 1e-5)
        }
    }

    /// Marks (`+1`) or unmarks (`−1`) a simulation in flight along `path`.
    pub fn add_pending(&mut self, path: &[NodeId], delta: f32) {
        for &id in path {
            self.nodes[id].pending += delta;
        }
    }

    /// Folds value `g` into the statistics of every node on `path` (root first).
    pub fn backup(&mut self, path: &[NodeId], g: f32) {
        for &id in path {
            let n = &mut self.nodes[id];
            n.n += 1.0;
            n.fn_ += 1;
            n.q += (g - n.q) / n.n;
        }
        self.min_q = self.min_q.min(g);
        self.max_q = self.max_q.max(g);
    }
}

impl Default for Tree {
    fn default() -> Self {
        Self::new()
    }
}
