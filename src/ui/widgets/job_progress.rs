//! The line a page shows while its job runs: Cancel, the job's progress bar and message.

use egui::Ui;

use crate::jobs::{JobBoard, JobId};

/// Draws Cancel, then job `id`'s progress and message; true when Cancel was clicked.
pub fn job_progress(ui: &mut Ui, board: &JobBoard, id: Option<JobId>) -> bool {
    let cancel = ui.button("Cancel").clicked();
    if let Some(status) = id.and_then(|id| board.status(id)) {
        if let Some(p) = status.progress {
            ui.add(egui::ProgressBar::new(p).desired_width(160.0));
        }
        ui.label(status.message);
    }
    cancel
}
