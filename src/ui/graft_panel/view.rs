//! Drawing of the Graft page.

use egui::{Color32, ComboBox, DragValue, Grid, RichText, Slider, Ui};
use egui_plot::{HLine, Legend, Line, Plot, PlotPoints, Points};

use super::{GraftPanel, DECODERS, ENCODERS, MULTI_TASK};
use crate::data::classify::ClassTask;
use crate::graft::model::SetScore;
use crate::graft::tasks::{overlap_matrix, percent, GraftRow};
use crate::graft::GraftMethod;
use crate::jobs::JobBoard;
use crate::ui::file_picker::FilePicker;
use crate::ui::widgets::heatmap::Heatmap;
use crate::ui::widgets::job_progress::job_progress;
use crate::ui::widgets::outcome::{outcome_line, BAD};

const SIDE: f32 = 210.0;
const MODULES: [&str; 7] = ["q", "k", "v", "o", "mlp in", "mlp out", "norm"];

fn method_color(m: GraftMethod) -> Color32 {
    match m {
        GraftMethod::Learned => Color32::from_rgb(235, 140, 60),
        GraftMethod::Topk => Color32::from_rgb(80, 170, 235),
        GraftMethod::Random => Color32::from_rgb(150, 150, 150),
        GraftMethod::Dare => Color32::from_rgb(190, 110, 220),
    }
}

pub fn ui(ui: &mut Ui, panel: &mut GraftPanel, board: &JobBoard, picker: &mut dyn FilePicker) {
    model_row(ui, panel, picker);
    run_row(ui, panel, board);
    ui.separator();
    egui::ScrollArea::vertical()
        .id_salt("graft-scroll")
        .show(ui, |ui| {
            ui.columns(2, |cols| {
                results_table(&mut cols[0], panel);
                export_row(&mut cols[0], panel, board, picker);
                search_plot(&mut cols[0], panel);
                sparsity_plot(&mut cols[0], panel);
                reliability_plot(&mut cols[1], panel);
                density_map(&mut cols[1], panel);
                overlap_map(&mut cols[1], panel);
            });
        });
}

fn model_row(ui: &mut Ui, panel: &mut GraftPanel, picker: &mut dyn FilePicker) {
    ui.horizontal(|ui| {
        let text = ui.label("fine-tune");
        ComboBox::from_id_salt("graft-model")
            .selected_text(crate::text::elide(&panel.model, 40))
            .show_ui(ui, |ui| {
                let models = ENCODERS.iter().chain([&MULTI_TASK]).chain(DECODERS.iter());
                for &m in models {
                    if ui.selectable_label(panel.model == m, m).clicked() {
                        panel.model = m.to_string();
                        panel.base = None;
                    }
                }
            })
            .response
            .labelled_by(text.id)
            .on_hover_text(
                "Zoo fine-tunes: MiniLM classifiers (built on first use, about 2 minutes each) \
                 and the tiny decoders",
            );
        if ui
            .button("Open folders…")
            .on_hover_text("Pick a BERT classifier fine-tune's folder, then its pretrained model's")
            .clicked()
        {
            if let Some(ft) = picker.pick_folder() {
                if let Some(base) = picker.pick_folder() {
                    panel.model = ft.display().to_string();
                    panel.base = Some(base.display().to_string());
                }
            }
        }
        if panel.is_multi_task() {
            let text = ui.label("task");
            ComboBox::from_id_salt("graft-task")
                .selected_text(panel.task.name())
                .show_ui(ui, |ui| {
                    for t in ClassTask::SINGLE {
                        ui.selectable_value(&mut panel.task, t, t.name());
                    }
                })
                .response
                .labelled_by(text.id);
        }
        let text = ui.label("kept");
        ui.add(
            Slider::new(&mut panel.log_sparsity, -5.0..=-2.0)
                .step_by(0.25)
                .custom_formatter(|v, _| percent(10f64.powf(v))),
        )
        .labelled_by(text.id)
        .on_hover_text("Share of the transformer-block parameters the mask keeps (log scale)");
        let text = ui.label("steps");
        ui.add(DragValue::new(&mut panel.learn.steps).range(1..=500))
            .labelled_by(text.id);
        let text = ui.label("learning rate");
        ui.add(
            DragValue::new(&mut panel.learn.lr)
                .range(1.0..=1e14)
                .speed(1e7)
                .custom_formatter(|v, _| format!("{v:.0e}")),
        )
        .labelled_by(text.id)
        .on_hover_text("Step size on the mask scores S (the official code uses 1e7)");
    });
}

fn run_row(ui: &mut Ui, panel: &mut GraftPanel, board: &JobBoard) {
    ui.horizontal(|ui| {
        if panel.is_running() {
            if job_progress(ui, board, panel.job_id()) {
                panel.cancel(board);
            }
            return;
        }
        if ui
            .button("Learn mask")
            .on_hover_text("The published mask search at the chosen sparsity")
            .clicked()
        {
            panel.learn(board);
        }
        if ui
            .button("Sweep sparsities")
            .on_hover_text("Top-k, random and DARE at 0.001% … 1%, then learned masks at each")
            .clicked()
        {
            panel.sweep(board);
        }
        if ui
            .button("Masks of all tasks")
            .on_hover_text(
                "Learned masks of the four single-task fine-tunes and of the multi-task model \
                 per task, at the chosen sparsity: the overlap matrix",
            )
            .clicked()
        {
            panel.all_tasks(board);
        }
        if let Some(e) = &panel.error {
            ui.colored_label(BAD, format!("grafting failed: {e}"));
        }
    });
}

fn cell(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.3}"))
}

fn results_table(ui: &mut Ui, panel: &mut GraftPanel) {
    ui.label(RichText::new("Held-out accuracy and calibration").strong());
    if panel.rows.is_empty() {
        ui.label(RichText::new("Learn a mask to fill the table.").weak());
        return;
    }
    Grid::new("graft-results")
        .striped(true)
        .num_columns(6)
        .show(ui, |ui| {
            for h in ["model", "kept", "val acc", "test acc", "ECE", "OOD acc"] {
                ui.label(RichText::new(h).strong());
            }
            ui.end_row();
            for r in &panel.rows {
                ui.label(&r.label);
                ui.label(format!("{} ({})", percent(r.sparsity), r.kept));
                ui.label(format!("{:.3}", r.val_accuracy));
                ui.label(cell(r.test.as_ref().map(|t| t.accuracy)));
                ui.label(cell(r.test.as_ref().map(|t| t.ece)));
                ui.label(cell(r.ood.as_ref().map(|t| t.accuracy)));
                ui.end_row();
            }
        });
}

fn export_row(ui: &mut Ui, panel: &mut GraftPanel, board: &JobBoard, picker: &mut dyn FilePicker) {
    if panel.masks.is_empty() {
        return;
    }
    ui.add_space(6.0);
    ui.horizontal(|ui| {
        let text = ui.label("mask");
        let shown = panel.shown.unwrap_or(0);
        let mut choice = shown;
        ComboBox::from_id_salt("graft-shown")
            .selected_text(panel.masks.get(shown).map_or("", |m| m.label.as_str()))
            .width(300.0)
            .show_ui(ui, |ui| {
                for (i, m) in panel.masks.iter().enumerate() {
                    ui.selectable_value(&mut choice, i, &m.label);
                }
            })
            .response
            .labelled_by(text.id);
        panel.shown = Some(choice);
        if ui
            .button("Export…")
            .on_hover_text("Write mask.safetensors and the grafted model (grafted/) into a folder")
            .clicked()
        {
            if let Some(out) = picker.pick_folder() {
                panel.export(board, out);
            }
        }
    });
    outcome_line(ui, &panel.export_status, "export failed");
}

fn search_plot(ui: &mut Ui, panel: &GraftPanel) {
    if panel.steps.is_empty() {
        return;
    }
    ui.add_space(6.0);
    ui.label("mask search: accuracy of the rounded mask and loss of the relaxed graft per step");
    let series = |f: &dyn Fn(&crate::graft::LearnStep) -> f64| -> PlotPoints {
        panel.steps.iter().map(|s| [s.step as f64, f(s)]).collect()
    };
    Plot::new("graft-search")
        .height(140.0)
        .legend(Legend::default())
        .x_axis_label("step")
        .include_y(0.0)
        .include_y(1.0)
        .allow_scroll(false)
        .show(ui, |plot| {
            plot.line(Line::new("train accuracy", series(&|s| s.train_accuracy)));
            plot.line(Line::new(
                "validation accuracy",
                series(&|s| s.val_accuracy),
            ));
            plot.line(Line::new("loss", series(&|s| s.loss as f64)));
        });
    if let Some(last) = panel.steps.last() {
        ui.label(
            RichText::new(format!(
                "step {}: {} kept, {} changed from top-k, largest |ΔS| {:.3}",
                last.step, last.kept, last.changed, last.max_score_change
            ))
            .weak(),
        );
    }
}

/// The accuracy a row is plotted with: test when scored, else validation.
fn plotted(r: &GraftRow) -> f64 {
    r.test.as_ref().map_or(r.val_accuracy, |t| t.accuracy)
}

fn sparsity_plot(ui: &mut Ui, panel: &GraftPanel) {
    if !panel.rows.iter().any(|r| r.method.is_some()) {
        return;
    }
    ui.add_space(6.0);
    ui.label("accuracy against kept share (log10), with the fine-tune and no graft");
    Plot::new("graft-sparsity")
        .height(170.0)
        .legend(Legend::default())
        .x_axis_label("log10 kept share")
        .include_y(0.0)
        .include_y(1.0)
        .allow_scroll(false)
        .show(ui, |plot| {
            for m in GraftMethod::ALL {
                let mut pts: Vec<[f64; 2]> = panel
                    .rows
                    .iter()
                    .filter(|r| r.method == Some(*m))
                    .map(|r| [r.sparsity.log10(), plotted(r)])
                    .collect();
                pts.sort_by(|a, b| a[0].total_cmp(&b[0]));
                let color = method_color(*m);
                plot.points(Points::new(m.name(), pts.clone()).radius(3.0).color(color));
                plot.line(Line::new(m.name(), PlotPoints::from(pts)).color(color));
            }
            for r in panel.rows.iter().filter(|r| r.method.is_none()) {
                plot.hline(HLine::new(r.label.as_str(), plotted(r)));
            }
        });
}

fn reliability_plot(ui: &mut Ui, panel: &GraftPanel) {
    let fine = panel.rows.iter().find(|r| r.label == "fine-tuned");
    let graft = panel.shown_mask().map(|k| &k.row);
    let curves: Vec<(String, &SetScore)> = [fine, graft]
        .into_iter()
        .flatten()
        .filter_map(|r| {
            r.test
                .as_ref()
                .filter(|t| !t.reliability.is_empty())
                .map(|t| {
                    (
                        format!("{} {} (ECE {:.3})", r.label, percent(r.sparsity), t.ece),
                        t,
                    )
                })
        })
        .collect();
    ui.label(RichText::new("Reliability on the test set (15 bins)").strong());
    if curves.is_empty() {
        ui.label(RichText::new("Accuracy against confidence appears after a run.").weak());
        return;
    }
    Plot::new("graft-reliability")
        .height(190.0)
        .legend(Legend::default())
        .x_axis_label("confidence")
        .include_x(0.0)
        .include_x(1.0)
        .include_y(0.0)
        .include_y(1.0)
        .allow_scroll(false)
        .show(ui, |plot| {
            plot.line(
                Line::new("perfect calibration", vec![[0.0, 0.0], [1.0, 1.0]]).color(Color32::GRAY),
            );
            for (name, s) in &curves {
                let pts: Vec<[f64; 2]> = s
                    .reliability
                    .iter()
                    .filter(|b| b.count > 0)
                    .map(|b| [b.mean_confidence, b.accuracy])
                    .collect();
                plot.points(Points::new(name.as_str(), pts.clone()).radius(3.0));
                plot.line(Line::new(name.as_str(), PlotPoints::from(pts)));
            }
        });
}

fn density_map(ui: &mut Ui, panel: &GraftPanel) {
    ui.add_space(6.0);
    ui.label(RichText::new("Where the skill lives: kept share per layer and module").strong());
    let Some(kept) = panel.shown_mask() else {
        ui.label(RichText::new("The shown mask's density appears here.").weak());
        return;
    };
    let d = &kept.row.densities;
    let mut layers: Vec<&str> = d.iter().map(|x| x.layer.as_str()).collect();
    layers.dedup();
    let value = |l: &str, m: &str| {
        d.iter()
            .find(|x| x.layer == l && x.module == m)
            .map_or(0.0, |x| x.kept as f64 / x.total.max(1) as f64)
    };
    let values: Vec<f64> = layers
        .iter()
        .flat_map(|l| MODULES.iter().map(move |m| value(l, m)))
        .collect();
    let label = |i: usize, j: usize| {
        format!(
            "{} {}: {:.4}% kept",
            layers[i],
            MODULES[j],
            100.0 * values[i * MODULES.len() + j]
        )
    };
    ui.label(RichText::new(format!("{} · columns: {}", kept.label, MODULES.join(", "))).weak());
    Heatmap {
        title: "Mask density by layer and module",
        rows: layers.len(),
        cols: MODULES.len(),
        values: &values,
        cell_label: &label,
    }
    .show(ui, SIDE);
}

fn overlap_map(ui: &mut Ui, panel: &GraftPanel) {
    ui.add_space(6.0);
    ui.label(
        RichText::new("Mask overlap: share of column j's kept parameters that row i keeps too")
            .strong(),
    );
    let masks: Vec<&crate::graft::Mask> = panel.masks.iter().map(|k| &k.mask).collect();
    if masks.len() < 2 {
        ui.label(RichText::new("Two masks or more: try Masks of all tasks.").weak());
        return;
    }
    let matrix = match overlap_matrix(&masks) {
        Ok(m) => m,
        Err(e) => {
            ui.colored_label(BAD, e.to_string());
            return;
        }
    };
    let n = masks.len();
    let values: Vec<f64> = matrix.iter().flatten().copied().collect();
    let label = |i: usize, j: usize| {
        format!(
            "{} in {}: {:.3}",
            panel.masks[i].label, panel.masks[j].label, matrix[i][j]
        )
    };
    Heatmap {
        title: "Mask overlap",
        rows: n,
        cols: n,
        values: &values,
        cell_label: &label,
    }
    .show(ui, SIDE);
    for (i, k) in panel.masks.iter().enumerate() {
        ui.label(RichText::new(format!("{i}: {}", k.label)).weak().small());
    }
}
