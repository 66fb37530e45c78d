//! What the search reports while it runs: streamed to the UI and written to a trace file
//! (JSON Lines, one event a line) that can be reopened and replayed.

use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::tree::{NodeId, Origin};

/// Statistics of one node after a backup or similarity update.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NodeStats {
    pub id: NodeId,
    pub n: f32,
    pub fn_: u32,
    pub q: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Started {
        prompt: String,
        setting: String,
        prompt_tokens: usize,
        /// "self", or the judge model's name (traces written before judges existed: empty).
        #[serde(default)]
        judge: String,
    },
    NodeAdded {
        sim: usize,
        id: NodeId,
        parent: NodeId,
        tokens: Vec<u32>,
        text: String,
        prior: f32,
        origin: Origin,
    },
    Selected {
        sim: usize,
        path: Vec<NodeId>,
    },
    Expanded {
        sim: usize,
        id: NodeId,
        children: Vec<NodeId>,
    },
    Evaluated {
        sim: usize,
        id: NodeId,
        rollout: String,
        binary: f32,
        soft: f32,
        value: f32,
    },
    BackedUp {
        sim: usize,
        value: f32,
        stats: Vec<NodeStats>,
    },
    SimilarityUpdated {
        sim: usize,
        stats: Vec<NodeStats>,
    },
    /// The simulation is over: generation goes back to the committed prefix.
    Rewound {
        sim: usize,
        rewinds: usize,
    },
    Committed {
        sim: usize,
        id: NodeId,
        text: String,
        answer: String,
        /// The new root's children's priors after mixing in the uniform share.
        priors: Vec<(NodeId, f32)>,
    },
    Finished {
        answer: String,
        simulations: usize,
        rewinds: usize,
        tokens_processed: usize,
        seconds: f64,
    },
}

/// Writes events as JSON Lines.
pub struct TraceWriter<W: Write> {
    out: W,
}

impl<W: Write> TraceWriter<W> {
    pub fn new(out: W) -> Self {
        Self { out }
    }

    pub fn write(&mut self, event: &Event) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.out, event)?;
        self.out.write_all(b"\n")
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Reads a trace file; the error names the file and the line.
pub fn read_trace(path: &Path) -> anyhow::Result<Vec<Event>> {
    let file = std::fs::File::open(path)
        .map_err(|e| anyhow::anyhow!("{}: cannot open: {e}", path.display()))?;
    let mut events = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| anyhow::anyhow!("{}: line {}: {e}", path.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let event = serde_json::from_str(&line).map_err(|e| {
            anyhow::anyhow!(
                "{}: line {} is not a RAIN trace event: {e}",
                path.display(),
                i + 1
            )
        })?;
        events.push(event);
    }
    if !matches!(events.first(), Some(Event::Started { .. })) {
        anyhow::bail!(
            "{}: not a RAIN trace (it does not start with a `started` event)",
            path.display()
        );
    }
    Ok(events)
}
