//! Drawing of the Fusion page.

use egui::{Color32, ComboBox, DragValue, Grid, RichText, Ui};
use egui_plot::{Legend, Line, Plot, PlotPoints, VLine};

use super::{FusionPanel, Parents, Shown, ZOO_SETS};
use crate::fusion::lab::Target;
use crate::fusion::options::{BranchMap, CostKind, FuseOptions, QkPolicy, ResidualPolicy};
use crate::jobs::JobBoard;
use crate::ui::file_picker::FilePicker;
use crate::ui::widgets::heatmap::Heatmap;
use crate::ui::widgets::job_progress::job_progress;
use crate::ui::widgets::outcome::{outcome_line, BAD};

const BEST: Color32 = Color32::from_rgb(120, 200, 120);
const MAP_SIDE: f32 = 235.0;

pub fn ui(ui: &mut Ui, panel: &mut FusionPanel, board: &JobBoard, picker: &mut dyn FilePicker) {
    parents_row(ui, panel, picker);
    option_rows(ui, panel);
    run_row(ui, panel, board);
    ui.separator();
    egui::ScrollArea::vertical()
        .id_salt("fusion-scroll")
        .show(ui, |ui| {
            ui.columns(2, |cols| {
                results_table(&mut cols[0], panel);
                export_row(&mut cols[0], panel, picker);
                map_view(&mut cols[1], panel);
                alignment_plot(&mut cols[1], panel);
            });
        });
}

/// A labelled combo box showing `selected`; true when the user picked another value.
fn combo<T: PartialEq + Clone>(
    ui: &mut Ui,
    label: &str,
    selected: String,
    value: &mut T,
    options: &[(T, String)],
) -> bool {
    let before = value.clone();
    let text = ui.label(label);
    ComboBox::from_id_salt(("fusion", label))
        .selected_text(selected)
        .show_ui(ui, |ui| {
            for (v, name) in options {
                ui.selectable_value(value, v.clone(), name);
            }
        })
        .response
        .labelled_by(text.id);
    *value != before
}

/// [`combo`] over a few named values of an enum.
fn choice<T: PartialEq + Copy>(
    ui: &mut Ui,
    label: &str,
    value: &mut T,
    options: &[(T, &str)],
) -> bool {
    let selected = options
        .iter()
        .find(|(v, _)| v == value)
        .map_or("?", |(_, n)| *n)
        .to_string();
    let owned: Vec<(T, String)> = options.iter().map(|&(v, n)| (v, n.to_string())).collect();
    combo(ui, label, selected, value, &owned)
}

fn parents_row(ui: &mut Ui, panel: &mut FusionPanel, picker: &mut dyn FilePicker) {
    ui.horizontal(|ui| {
        let sets: Vec<(Parents, String)> = ZOO_SETS
            .iter()
            .map(|&names| {
                let p = Parents::Zoo(names);
                let l = p.label();
                (p, l)
            })
            .collect();
        let selected = panel.parents.label();
        if combo(ui, "models A + B", selected, &mut panel.parents, &sets) {
            panel.options.finetune_steps = panel.parents.finetune_steps();
        }
        if ui
            .button("Open folders…")
            .on_hover_text(
                "Pick model A's folder, then model B's: two ViT or BERT classifiers, or two \
                 llama-family decoders",
            )
            .clicked()
        {
            if let Some(a) = picker.pick_folder() {
                if let Some(b) = picker.pick_folder() {
                    panel.parents = Parents::Folders(a, b);
                    panel.options.finetune_steps = panel.parents.finetune_steps();
                }
            }
        }
    });
}

fn option_rows(ui: &mut Ui, panel: &mut FusionPanel) {
    let o = &mut panel.options;
    ui.horizontal(|ui| {
        if choice(
            ui,
            "cost",
            &mut o.cost,
            &[
                (CostKind::Acts, "activations"),
                (CostKind::Weights, "weights"),
            ],
        ) {
            panel.reg = FuseOptions::default_reg(o.cost);
        }
        choice(
            ui,
            "Q-K maps",
            &mut o.qk,
            &[(QkPolicy::Separate, "separate"), (QkPolicy::Joint, "joint")],
        );
        choice(
            ui,
            "residual",
            &mut o.residual,
            &[
                (ResidualPolicy::Mean, "mean of skip and branch"),
                (ResidualPolicy::Weighted, "weighted by |activation|"),
                (ResidualPolicy::Skip, "skip only"),
                (ResidualPolicy::Branch, "branch only"),
                (ResidualPolicy::Shared, "one shared stream map"),
            ],
        );
        choice(
            ui,
            "branch output",
            &mut o.branch_map,
            &[
                (BranchMap::Own, "own map"),
                (BranchMap::Stream, "stream map"),
            ],
        );
    });
    ui.horizontal(|ui| {
        choice(
            ui,
            "target width",
            &mut o.target,
            &[
                (Target::Narrower, "the narrower parent's"),
                (Target::A, "A's"),
                (Target::B, "B's"),
            ],
        );
        let text = ui.label("Sinkhorn ε");
        ui.add(
            DragValue::new(&mut panel.reg)
                .range(0.001..=1.0)
                .speed(0.001)
                .max_decimals(3),
        )
        .labelled_by(text.id)
        .on_hover_text("Regulariser on the max-normalised cost: smaller is sharper");
        let text = ui.label("fine-tune steps");
        ui.add(DragValue::new(&mut o.finetune_steps).range(0..=5000))
            .labelled_by(text.id)
            .on_hover_text("0: no fine-tune rows");
        let text = ui.label("activation samples");
        ui.add(DragValue::new(&mut o.samples).range(8..=2000))
            .labelled_by(text.id)
            .on_hover_text(
                "Scenes (ViT) or text rows (decoders) the activation cost is measured on",
            );
    });
}

fn run_row(ui: &mut Ui, panel: &mut FusionPanel, board: &JobBoard) {
    ui.horizontal(|ui| {
        if panel.is_running() {
            if job_progress(ui, board, panel.job_id()) {
                panel.cancel(board);
            }
        } else {
            if ui.button("Run fusion").clicked() {
                panel.start(board);
            }
            match (&panel.error, &panel.report) {
                (Some(e), _) => {
                    ui.colored_label(BAD, format!("fusion failed: {e}"));
                }
                (None, Some(r)) => {
                    let (a, b) = r.widths;
                    let into = if r.anchor_is_a { a } else { b };
                    ui.label(format!("widths A {a}, B {b}; fused into width {into}"));
                }
                _ => {}
            }
        }
    });
}

fn results_table(ui: &mut Ui, panel: &FusionPanel) {
    let Some(best) = panel
        .rows
        .iter()
        .reduce(|best, r| if r.beats(best) { r } else { best })
    else {
        ui.label(RichText::new("Results on held-out data").strong());
        ui.label(RichText::new("Run a fusion to fill the table.").weak());
        return;
    };
    ui.label(RichText::new(format!("Results on {}", best.data)).strong());
    Grid::new("fusion-results")
        .striped(true)
        .num_columns(4)
        .show(ui, |ui| {
            for h in ["model", "width", best.metric, "loss"] {
                ui.label(RichText::new(h).strong());
            }
            ui.end_row();
            for r in &panel.rows {
                ui.label(&r.model);
                ui.label(r.width.to_string());
                let score = RichText::new(format!("{:.3}", r.score));
                ui.label(if r.score == best.score {
                    score.color(BEST)
                } else {
                    score
                });
                ui.label(format!("{:.3}", r.loss));
                ui.end_row();
            }
        });
}

fn export_row(ui: &mut Ui, panel: &mut FusionPanel, picker: &mut dyn FilePicker) {
    let choices = panel.exportable();
    if choices.is_empty() {
        return;
    }
    ui.add_space(8.0);
    ui.horizontal(|ui| {
        let selected = choices
            .iter()
            .find(|(k, _)| *k == panel.export_choice)
            .map_or_else(|| choices[0].1.clone(), |(_, l)| l.clone());
        combo(ui, "export", selected, &mut panel.export_choice, &choices);
        if ui
            .button("Export…")
            .on_hover_text("Write config.json and model.safetensors into a folder")
            .clicked()
        {
            if let Some(out) = picker.pick_folder() {
                panel.export(out);
            }
        }
    });
    outcome_line(ui, &panel.export_status, "export failed");
}

fn map_view(ui: &mut Ui, panel: &mut FusionPanel) {
    ui.label(RichText::new("Transport maps").strong());
    let shown = &mut panel.shown;
    ui.horizontal(|ui| {
        for (i, name) in ["hard (exact)", "soft (Sinkhorn)"].into_iter().enumerate() {
            ui.selectable_value(&mut shown.run, i, name);
        }
    });
    let Some(maps) = panel.maps.get(shown.run).filter(|m| !m.is_empty()) else {
        ui.label(RichText::new("Maps appear here layer by layer as the fusion runs.").weak());
        return;
    };
    shown.map = shown.map.min(maps.len() - 1);
    ui.horizontal(|ui| {
        if ui.button("< previous").clicked() {
            shown.map = shown.map.saturating_sub(1);
        }
        let text = ui.label("map");
        ComboBox::from_id_salt("fusion-map")
            .selected_text(&maps[shown.map].name)
            .width(220.0)
            .show_ui(ui, |ui| {
                for (i, m) in maps.iter().enumerate() {
                    ui.selectable_value(&mut shown.map, i, &m.name);
                }
            })
            .response
            .labelled_by(text.id);
        if ui.button("next >").clicked() {
            shown.map = (shown.map + 1).min(maps.len() - 1);
        }
    });
    ui.checkbox(&mut shown.matched, "columns in matched order")
        .on_hover_text("Order B's neurons by the A neuron that sends each the most mass");
    let Shown { map, matched, .. } = *shown;
    let m = &maps[map];
    let order: Vec<usize> = if matched {
        m.matched_column_order()
    } else {
        (0..m.plan.cols).collect()
    };
    let reorder = |v: &[f64]| -> Vec<f64> {
        (0..m.plan.rows)
            .flat_map(|i| order.iter().map(move |&j| v[i * m.plan.cols + j]))
            .collect()
    };
    let label = |i: usize, j: usize| format!("A neuron {i} to B neuron {}", order[j]);
    let cost_part = m
        .transport_and_mean_cost()
        .map(|(tc, mean)| format!(" · <T, C> {tc:.3} vs mean C {mean:.3}"))
        .unwrap_or_default();
    ui.label(
        RichText::new(format!(
            "{}×{} · sharpness {:.3}{cost_part}",
            m.plan.rows,
            m.plan.cols,
            m.sharpness(),
        ))
        .weak(),
    )
    .on_hover_text(
        "sharpness: the mean share of each A neuron's mass on its best match (1 for hard maps); \
         <T, C>: what the plan pays, against the mean cost an uninformed plan pays",
    );
    ui.horizontal_top(|ui| {
        ui.vertical(|ui| {
            ui.label("transport map T (rows: A, columns: B)");
            Heatmap {
                title: &format!("Transport map: {}", m.name),
                rows: m.plan.rows,
                cols: m.plan.cols,
                values: &reorder(&m.plan.t),
                cell_label: &label,
            }
            .show(ui, MAP_SIDE);
        });
        ui.vertical(|ui| {
            if m.cost.is_empty() {
                ui.label("no cost matrix");
                ui.label(
                    RichText::new("This stream map blends the skip's and the branch's maps.")
                        .weak(),
                );
            } else {
                ui.label("cost C (normalised)");
                Heatmap {
                    title: &format!("Cost matrix: {}", m.name),
                    rows: m.plan.rows,
                    cols: m.plan.cols,
                    values: &reorder(&m.cost),
                    cell_label: &label,
                }
                .show(ui, MAP_SIDE);
            }
        });
    });
}

/// ⟨T, C⟩ ÷ mean C for every solved map of each run: 1 is no better than an uninformed plan,
/// lower is a closer match. The shown map is marked.
fn alignment_plot(ui: &mut Ui, panel: &FusionPanel) {
    if panel.maps.iter().all(Vec::is_empty) {
        return;
    }
    ui.add_space(6.0);
    ui.label("alignment by map: <T, C> / mean C (lower is a closer match)");
    let colors = [
        Color32::from_rgb(235, 140, 60),
        Color32::from_rgb(80, 170, 235),
    ];
    Plot::new("fusion-alignment")
        .height(150.0)
        .legend(Legend::default())
        .x_axis_label("map")
        .include_y(0.0)
        .include_y(1.0)
        .allow_scroll(false)
        .show(ui, |plot| {
            for (run, (maps, name)) in panel.maps.iter().zip(["hard", "soft"]).enumerate() {
                let points: Vec<[f64; 2]> = maps
                    .iter()
                    .enumerate()
                    .filter_map(|(i, m)| {
                        m.transport_and_mean_cost()
                            .map(|(tc, mean)| [i as f64, tc / mean.max(1e-12)])
                    })
                    .collect();
                plot.line(
                    Line::new(name, PlotPoints::from(points)).color(colors[run % colors.len()]),
                );
            }
            plot.vline(VLine::new("shown", panel.shown.map as f64).color(Color32::GRAY));
        });
}
