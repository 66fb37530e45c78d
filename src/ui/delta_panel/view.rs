//! Drawing of the Delta page.

use egui::{Color32, ComboBox, RichText, Slider, Ui};
use egui_plot::{Bar, BarChart, Legend, Line, Plot, PlotPoints, Points, VLine};

use super::DeltaPanel;
use crate::checkpoint::stats::per_layer;
use crate::delta::lab::zoo_pairs;
use crate::delta::tasks::{Subject, CURVE_METHODS};
use crate::delta::{MergeMethod, Method, TensorFilter};
use crate::jobs::JobBoard;
use crate::ui::file_picker::FilePicker;
use crate::ui::widgets::outcome::{outcome_line, BAD};

const PRESETS: [f64; 5] = [0.0, 0.5, 0.9, 0.99, 0.999];

fn method_color(m: Method) -> Color32 {
    match m {
        Method::Dare => Color32::from_rgb(235, 140, 60),
        Method::DarexQ => Color32::from_rgb(80, 170, 235),
        Method::Magnitude => Color32::from_rgb(120, 200, 120),
        Method::DropOnly => Color32::from_rgb(200, 120, 200),
        Method::ActivationAware => Color32::from_rgb(230, 200, 80),
    }
}

/// The drop-rate axis in "nines": 0.9 → 1, 0.99 → 2, 0.999 → 3, so rates near 1 get room.
fn nines(p: f64) -> f64 {
    -(1.0 - p).max(1e-4).log10()
}

fn from_nines(x: f64) -> f64 {
    1.0 - 10f64.powf(-x)
}

fn rate_label(p: f64) -> String {
    let s = format!("{p:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

pub fn ui(ui: &mut Ui, panel: &mut DeltaPanel, board: &JobBoard, picker: &mut dyn FilePicker) {
    let before = (panel.subject.clone(), panel.spec.clone(), panel.q_auto);
    subject_row(ui, panel, picker);
    setting_rows(ui, panel);
    if (panel.subject.clone(), panel.spec.clone(), panel.q_auto) != before
        || (panel.preview.is_none() && !panel.is_previewing() && panel.preview_error.is_none())
    {
        panel.request_preview(board);
    }
    panel.ensure_curves(board);
    status_row(ui, panel, board, picker);
    ui.separator();
    egui::ScrollArea::vertical()
        .id_salt("delta-scroll")
        .show(ui, |ui| {
            ui.columns(2, |cols| {
                curves_plot(&mut cols[0], panel);
                histogram_plot(&mut cols[1], panel);
            });
            layer_table(ui, panel);
            ui.separator();
            merge_view(ui, panel, board, picker);
        });
}

fn subject_row(ui: &mut Ui, panel: &mut DeltaPanel, picker: &mut dyn FilePicker) {
    ui.horizontal(|ui| {
        let label = ui.label("fine-tune");
        ComboBox::from_id_salt("delta-subject")
            .selected_text(panel.subject.label())
            .show_ui(ui, |ui| {
                for s in zoo_pairs() {
                    let label = format!("{} (base {})", s.name, s.base.unwrap_or("?"));
                    ui.selectable_value(
                        &mut panel.subject,
                        Subject::Zoo(s.name.to_string()),
                        label,
                    );
                }
            })
            .response
            .labelled_by(label.id);
        if ui
            .button("Open folders…")
            .on_hover_text(
                "Pick a base folder, then a fine-tuned folder (statistics only: no task to score)",
            )
            .clicked()
        {
            if let Some(base) = picker.pick_folder() {
                if let Some(finetuned) = picker.pick_folder() {
                    panel.subject = Subject::Folders { base, finetuned };
                }
            }
        }
    });
}

fn setting_rows(ui: &mut Ui, panel: &mut DeltaPanel) {
    let spec = &mut panel.spec;
    ui.horizontal(|ui| {
        let label = ui.label("method");
        ComboBox::from_id_salt("delta-method")
            .selected_text(spec.method.name())
            .show_ui(ui, |ui| {
                for &m in Method::ALL {
                    ui.selectable_value(&mut spec.method, m, m.name());
                }
            })
            .response
            .labelled_by(label.id);
        let label = ui.label("tensors");
        ComboBox::from_id_salt("delta-filter")
            .selected_text(match spec.filter {
                TensorFilter::All => "all",
                TensorFilter::AttentionMlp => "attention + MLP",
            })
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut spec.filter, TensorFilter::All, "all");
                ui.selectable_value(
                    &mut spec.filter,
                    TensorFilter::AttentionMlp,
                    "attention + MLP",
                );
            })
            .response
            .labelled_by(label.id);
        let label = ui.label("seed");
        ui.add(egui::DragValue::new(&mut spec.seed).range(0..=u32::MAX as u64))
            .labelled_by(label.id);
    });
    ui.horizontal(|ui| {
        let mut x = nines(spec.drop_rate);
        let slider = Slider::new(&mut x, 0.0..=3.0)
            .text("drop rate")
            .custom_formatter(|x, _| rate_label(from_nines(x)))
            .custom_parser(|s| s.parse::<f64>().ok().map(nines));
        if ui.add(slider).changed() {
            spec.drop_rate = (from_nines(x) * 10_000.0).round() / 10_000.0;
        }
        for p in PRESETS {
            if ui
                .selectable_label(spec.drop_rate == p, rate_label(p))
                .clicked()
            {
                spec.drop_rate = p;
            }
        }
        ui.label(RichText::new(format!("keep rate {}", rate_label(spec.keep_rate()))).weak());
    });
    let lo = 1.0 - spec.drop_rate;
    if spec.q < lo || spec.q > 1.0 {
        spec.q = lo;
    }
    if spec.method == Method::DarexQ {
        ui.horizontal(|ui| {
            ui.add_enabled(
                !panel.q_auto,
                Slider::new(&mut spec.q, lo.max(1e-4)..=1.0)
                    .logarithmic(true)
                    .text("q (survivors × 1/q)"),
            );
            ui.checkbox(&mut panel.q_auto, "auto").on_hover_text(
                "q maximising the task metric on a validation set, searched from 1 − p upward",
            );
            ui.label(RichText::new(format!("DARE would use q = {}", rate_label(lo))).weak());
        });
    }
}

fn status_row(ui: &mut Ui, panel: &mut DeltaPanel, board: &JobBoard, picker: &mut dyn FilePicker) {
    ui.horizontal(|ui| {
        if panel.is_previewing() {
            ui.spinner();
        }
        if let Some(e) = &panel.preview_error {
            ui.colored_label(BAD, e);
        } else if let Some(p) = &panel.preview {
            if let Some(score) = p.score {
                ui.label(RichText::new(format!("score {score:.3}")).strong());
            }
            ui.label(format!(
                "{} p={} kept {:.2}%",
                p.spec.method.name(),
                rate_label(p.spec.drop_rate),
                100.0 * p.summary.kept_fraction()
            ));
            if p.spec.method == Method::DarexQ {
                ui.label(format!("q = {:.4}", p.spec.q));
            }
        }
        ui.separator();
        let busy = panel.is_exporting();
        if ui
            .add_enabled(!busy, egui::Button::new("Export pruned checkpoint…"))
            .clicked()
        {
            if let Some(out) = picker.pick_folder() {
                panel.export_pruned(board, out);
            }
        }
        if busy {
            ui.spinner();
        }
    });
    outcome_line(ui, &panel.export_status, "export failed");
}

fn curves_plot(ui: &mut Ui, panel: &DeltaPanel) {
    ui.horizontal(|ui| {
        ui.label(RichText::new("task metric vs drop rate").strong());
        if panel.is_sweeping() {
            ui.spinner();
            ui.label(RichText::new(format!("{} points", panel.curves.len())).weak());
        }
    });
    if let Some(e) = &panel.curves_error {
        ui.colored_label(BAD, e);
    }
    if matches!(panel.subject, Subject::Folders { .. }) {
        ui.label(RichText::new("Curves need a zoo fine-tune (its task).").weak());
    }
    let current = nines(panel.spec.drop_rate);
    Plot::new("delta-curves")
        .height(230.0)
        .legend(Legend::default())
        .include_y(0.0)
        .include_y(1.0)
        .include_x(0.0)
        .include_x(3.0)
        .x_axis_label("drop rate")
        .y_axis_label("score")
        .x_axis_formatter(|mark, _| rate_label(from_nines(mark.value)))
        .show(ui, |plot| {
            for m in CURVE_METHODS {
                let pts: Vec<[f64; 2]> = panel
                    .curves
                    .iter()
                    .filter(|p| p.method == m)
                    .map(|p| [nines(p.drop_rate), p.score])
                    .collect();
                if pts.is_empty() {
                    continue;
                }
                plot.line(
                    Line::new(m.name(), PlotPoints::from(pts.clone())).color(method_color(m)),
                );
                plot.points(
                    Points::new(m.name(), PlotPoints::from(pts))
                        .color(method_color(m))
                        .radius(3.0),
                );
            }
            plot.vline(VLine::new("setting", current).color(Color32::GRAY));
            if let Some(p) = &panel.preview {
                if let Some(s) = p.score {
                    plot.points(
                        Points::new("current", vec![[nines(p.spec.drop_rate), s]])
                            .color(Color32::WHITE)
                            .radius(5.0),
                    );
                }
            }
        });
}

fn histogram_plot(ui: &mut Ui, panel: &DeltaPanel) {
    ui.label(RichText::new("log10 |δ| before and after (non-zero entries)").strong());
    let Some((before, after)) = panel.preview.as_ref().and_then(|p| p.summary.histogram()) else {
        ui.label(RichText::new("No preview yet.").weak());
        return;
    };
    let bars = |h: &crate::checkpoint::stats::Histogram, color: Color32, name: &str| {
        let w = h.bin_width() as f64;
        BarChart::new(
            name,
            h.counts
                .iter()
                .enumerate()
                .map(|(i, c)| Bar::new(h.bin_center(i) as f64, (*c as f64 + 1.0).log10()).width(w))
                .collect(),
        )
        .color(color)
    };
    let color = panel
        .preview
        .as_ref()
        .map_or(Color32::GRAY, |p| method_color(p.spec.method));
    Plot::new("delta-histogram")
        .height(230.0)
        .legend(Legend::default())
        .x_axis_label("log10 |δ|")
        .y_axis_label("log10 (count + 1)")
        .show(ui, |plot| {
            plot.bar_chart(bars(&before, Color32::from_gray(140), "before"));
            plot.bar_chart(bars(&after, color.gamma_multiply(0.8), "after"));
        });
}

fn layer_table(ui: &mut Ui, panel: &DeltaPanel) {
    let Some(p) = &panel.preview else { return };
    egui::CollapsingHeader::new("Per-layer statistics")
        .default_open(true)
        .show(ui, |ui| {
            egui::Grid::new("delta-layers")
                .striped(true)
                .show(ui, |ui| {
                    for h in [
                        "layer",
                        "entries",
                        "mean |δ|",
                        "std δ",
                        "kept",
                        "mean |δ̃| after",
                    ] {
                        ui.label(RichText::new(h).strong());
                    }
                    ui.end_row();
                    for l in per_layer(&p.summary.tensors) {
                        ui.label(&l.name);
                        ui.label(l.numel.to_string());
                        ui.label(format!("{:.2e}", l.mean_abs_before()));
                        ui.label(format!("{:.2e}", l.std_before()));
                        ui.label(format!("{:.2}%", 100.0 * l.kept_fraction()));
                        ui.label(format!("{:.2e}", l.abs_after / l.numel.max(1) as f64));
                        ui.end_row();
                    }
                });
        });
}

fn merge_view(ui: &mut Ui, panel: &mut DeltaPanel, board: &JobBoard, picker: &mut dyn FilePicker) {
    ui.label(RichText::new("Merge zoo decoder fine-tunes").strong());
    let view = &mut panel.merge;
    ui.horizontal(|ui| {
        let label = ui.label("merge method");
        ComboBox::from_id_salt("merge-method")
            .selected_text(view.method.name())
            .show_ui(ui, |ui| {
                for &m in MergeMethod::ALL {
                    ui.selectable_value(&mut view.method, m, m.name());
                }
            })
            .response
            .labelled_by(label.id);
    });
    egui::Grid::new("merge-rows").show(ui, |ui| {
        ui.label(RichText::new("model").strong());
        let weight = ui.label(RichText::new("weight").strong()).id;
        let density = ui.label(RichText::new("density").strong()).id;
        ui.end_row();
        for row in &mut view.rows {
            ui.checkbox(&mut row.on, &row.model);
            ui.add(
                egui::DragValue::new(&mut row.weight)
                    .range(0.0..=2.0)
                    .speed(0.01),
            )
            .labelled_by(weight);
            ui.add(
                egui::DragValue::new(&mut row.density)
                    .range(0.0..=1.0)
                    .speed(0.01),
            )
            .labelled_by(density);
            ui.end_row();
        }
    });
    let any = view.rows.iter().any(|r| r.on);
    ui.horizontal(|ui| {
        if ui
            .add_enabled(
                any && !view.is_running(),
                egui::Button::new("Merge and score"),
            )
            .clicked()
        {
            view.start(board);
        }
        if view.is_running() {
            ui.spinner();
        }
    });
    match &view.result {
        Some(Ok(r)) => {
            let manifest = crate::zoo::Manifest::load(&crate::zoo::manifest_path()).ok();
            let own = |task: &str| -> Option<f64> {
                let m = manifest.as_ref()?;
                m.models
                    .iter()
                    .find(|e| r.merge.models.contains(&e.name) && e.task == task)
                    .map(|e| e.score)
            };
            egui::Grid::new("merge-scores")
                .striped(true)
                .show(ui, |ui| {
                    for h in ["task", "merged", "its own fine-tune"] {
                        ui.label(RichText::new(h).strong());
                    }
                    ui.end_row();
                    for (task, s) in &r.scores {
                        ui.label(task);
                        ui.label(format!("{s:.3}"));
                        ui.label(own(task).map_or("–".into(), |v| format!("{v:.3}")));
                        ui.end_row();
                    }
                });
            if ui.button("Export merge…").clicked() {
                if let Some(out) = picker.pick_folder() {
                    panel.export_merged(board, out);
                }
            }
        }
        Some(Err(e)) => {
            ui.colored_label(BAD, e);
        }
        None => {}
    }
}
