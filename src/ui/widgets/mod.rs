//! Reusable widgets.

pub mod token_view;
