//! Reusable widgets.

pub mod grouped_bars;
pub mod heatmap;
pub mod job_progress;
pub mod model_picker;
pub mod named_combo;
pub mod outcome;
pub mod tab_bar;
pub mod token_view;
pub mod tree_view;
