//! The Jobs page: running and finished jobs with progress, elapsed time and logs; run records
//! on disk, reopened on click.

use std::path::PathBuf;

use egui::{RichText, ScrollArea, Ui};

use super::{Lab, LabCtx};
use crate::jobs::{record, JobBoard, JobState, RunRecord};

#[derive(Default)]
pub struct JobsPanel {
    /// The run record being shown, or the error reading it.
    opened: Option<(PathBuf, Result<RunRecord, String>)>,
}

impl JobsPanel {
    pub fn open_record(&mut self, path: PathBuf) {
        let record = RunRecord::load(&path).map_err(|e| format!("{e:#}"));
        self.opened = Some((path, record));
    }
}

impl Lab for JobsPanel {
    fn id(&self) -> &'static str {
        "jobs"
    }
    fn name(&self) -> &'static str {
        "Jobs"
    }
    fn title(&self) -> &'static str {
        "Jobs and run records"
    }
    fn description(&self) -> &'static str {
        "Everything slow runs as a job: progress, cancel, logs. Each finished job leaves a run \
         record (inputs, seed, metrics, timings) on disk; click Record to reopen one."
    }
    fn is_lab(&self) -> bool {
        false
    }
    fn nav_label(&self, board: &JobBoard) -> String {
        match board.running() {
            0 => "Jobs".to_string(),
            n => format!("Jobs ({n} running)"),
        }
    }
    fn poll(&mut self, _ctx: &mut LabCtx) {}
    fn ui(&mut self, ui: &mut Ui, ctx: &mut LabCtx) {
        draw(ui, self, ctx.board);
    }
}

fn draw(ui: &mut Ui, panel: &mut JobsPanel, board: &JobBoard) {
    let jobs = board.snapshot();
    if jobs.is_empty() {
        ui.label("No jobs yet.");
    }
    if jobs.iter().any(|j| j.state.is_finished()) && ui.button("Clear finished").clicked() {
        board.clear_finished();
    }
    let mut open = None;
    ScrollArea::vertical()
        .id_salt("jobs")
        .max_height(ui.available_height() * 0.5)
        .show(ui, |ui| {
            for job in jobs.iter().rev() {
                ui.group(|ui| {
                    ui.horizontal(|ui| {
                        ui.label(RichText::new(&job.title).strong());
                        ui.label(format!("[{}] {}", job.kind, job.state.label()));
                        ui.label(format!("{:.1} s", job.elapsed().as_secs_f32()));
                        if !job.state.is_finished() && ui.button("Cancel").clicked() {
                            board.cancel(job.id);
                        }
                        if let Some(path) = &job.record {
                            if ui.button("Record").clicked() {
                                open = Some(path.clone());
                            }
                        }
                    });
                    match &job.state {
                        JobState::Running => {
                            let bar = match job.progress {
                                Some(p) => egui::ProgressBar::new(p).show_percentage(),
                                None => egui::ProgressBar::new(0.0).animate(true),
                            };
                            ui.add(bar.text(job.message.clone()));
                        }
                        JobState::Failed(msg) => {
                            ui.colored_label(ui.visuals().error_fg_color, format!("Failed: {msg}"));
                        }
                        JobState::Cancelled | JobState::Succeeded => {}
                    }
                    if !job.logs.is_empty() {
                        egui::CollapsingHeader::new(format!("Log ({} lines)", job.logs.len()))
                            .id_salt(("log", job.id))
                            .show(ui, |ui| {
                                for line in &job.logs {
                                    ui.monospace(line);
                                }
                            });
                    }
                });
            }
        });

    ui.separator();
    ui.heading("Run records");
    match board.runs_dir() {
        None => {
            ui.label("Run records are off.");
        }
        Some(dir) => {
            ui.weak(dir.display().to_string());
            ScrollArea::vertical()
                .id_salt("records")
                .max_height(160.0)
                .show(ui, |ui| {
                    for path in record::list(dir).into_iter().take(50) {
                        let name = path
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        if ui.selectable_label(false, name).clicked() {
                            open = Some(path);
                        }
                    }
                });
        }
    }
    if let Some(path) = open {
        panel.open_record(path);
    }
    if let Some((path, record)) = &panel.opened {
        ui.separator();
        ui.label(RichText::new(path.display().to_string()).strong());
        match record {
            Ok(r) => {
                ScrollArea::vertical().id_salt("record").show(ui, |ui| {
                    let text = serde_json::to_string_pretty(r).unwrap_or_default();
                    ui.monospace(text);
                });
            }
            Err(e) => {
                ui.colored_label(ui.visuals().error_fg_color, e);
            }
        }
    }
}
