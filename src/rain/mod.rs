//! RAIN (rewindable auto-regressive inference): the model searches over its own partial
//! answers, scores them with self-evaluation and rewinds until it finds a good continuation.

pub mod config;
pub mod eval;
pub mod events;
pub mod judge;
pub mod judges;
pub mod replay;
pub mod search;
pub mod task;
pub mod tree;

pub use config::{RainConfig, ScoreKind, Setting};
pub use events::{read_trace, Event, TraceWriter};
pub use judge::AnswerBy;
pub use search::{run_rain, RainOutcome};
