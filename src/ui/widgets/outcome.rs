//! The one-line result of an action (an export, a save): its message, or its error in red.

use egui::{Color32, Ui};

pub const BAD: Color32 = Color32::from_rgb(235, 110, 100);

/// Shows `status` if there is one; errors get `failure` in front ("export failed: …").
pub fn outcome_line(ui: &mut Ui, status: &Option<Result<String, String>>, failure: &str) {
    match status {
        Some(Ok(msg)) => {
            ui.label(msg);
        }
        Some(Err(e)) => {
            ui.colored_label(BAD, format!("{failure}: {e}"));
        }
        None => {}
    }
}
