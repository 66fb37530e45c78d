//! Drawing of the Zoo page.

use egui::{Color32, RichText, ScrollArea, Ui};
use egui_plot::{Line, Plot, PlotPoints};

use super::ZooPanel;
use crate::jobs::JobBoard;
use crate::zoo::{specs, ModelEntry};

const GOOD: Color32 = Color32::from_rgb(90, 190, 120);

pub fn ui(ui: &mut Ui, panel: &mut ZooPanel, board: &JobBoard) {
    let models = match panel.manifest() {
        Some(Ok(m)) => m.models.clone(),
        Some(Err(e)) => {
            ui.colored_label(Color32::LIGHT_RED, e.clone());
            Vec::new()
        }
        None => Vec::new(),
    };
    if let Some(e) = &panel.error {
        ui.colored_label(Color32::LIGHT_RED, e);
    }
    build_bar(ui, panel, board);
    ui.separator();
    ScrollArea::vertical()
        .id_salt("zoo-table")
        .max_height(ui.available_height() * 0.45)
        .show(ui, |ui| table(ui, panel, &models));
    ui.separator();
    if let Some(entry) = panel
        .selected
        .as_ref()
        .and_then(|name| models.iter().find(|m| &m.name == name))
    {
        details(ui, panel, board, entry);
    } else {
        ui.label("Select a model to see its recipe and loss curve.");
    }
}

fn build_bar(ui: &mut Ui, panel: &mut ZooPanel, board: &JobBoard) {
    let Some(live) = panel.live.clone() else {
        return;
    };
    if !panel.is_building() && live.step == 0 {
        return;
    }
    ui.horizontal(|ui| {
        let frac = live.step as f32 / live.total.max(1) as f32;
        let text = format!("training {}: step {}/{}", live.model, live.step, live.total);
        ui.add(egui::ProgressBar::new(frac).desired_width(320.0).text(text));
        if let Some(loss) = live.losses.last() {
            ui.label(format!("loss {loss:.3}"));
        }
        if panel.is_building() && ui.button("Cancel").clicked() {
            panel.cancel(board);
        }
    });
    loss_plot(ui, "zoo-live-loss", &live.losses, 120.0);
}

fn table(ui: &mut Ui, panel: &mut ZooPanel, models: &[ModelEntry]) {
    egui::Grid::new("zoo-grid")
        .striped(true)
        .num_columns(9)
        .show(ui, |ui| {
            for h in [
                "model", "arch", "task", "metric", "score", "base", "Δ", "params", "train",
            ] {
                ui.label(RichText::new(h).strong());
            }
            ui.end_row();
            for m in models {
                let selected = panel.selected.as_deref() == Some(m.name.as_str());
                if ui.selectable_label(selected, &m.name).clicked() {
                    panel.selected = Some(m.name.clone());
                }
                ui.label(&m.architecture);
                ui.label(&m.task);
                ui.label(&m.metric);
                ui.label(RichText::new(format!("{:.3}", m.score)).monospace());
                match m.base_score {
                    Some(b) => {
                        ui.label(RichText::new(format!("{b:.3}")).monospace());
                        let gain = if m.higher_is_better {
                            m.score - b
                        } else {
                            b - m.score
                        };
                        let colour = if gain > 0.0 { GOOD } else { Color32::LIGHT_RED };
                        ui.label(
                            RichText::new(format!("{gain:+.3}"))
                                .monospace()
                                .color(colour),
                        );
                    }
                    None => {
                        ui.label("–");
                        ui.label("–");
                    }
                }
                ui.label(format!("{:.2} M", m.parameters as f64 / 1e6));
                ui.label(if m.recipe.is_string() {
                    "pretrained".to_string()
                } else {
                    format!("{:.0} s", m.train_seconds)
                });
                ui.end_row();
            }
        });
}

fn details(ui: &mut Ui, panel: &mut ZooPanel, board: &JobBoard, m: &ModelEntry) {
    ui.horizontal(|ui| {
        ui.label(RichText::new(&m.name).strong().size(16.0));
        ui.label(format!(
            "· {} · {}",
            m.path,
            if m.shipped {
                "shipped"
            } else if crate::assets::dir().join(&m.path).exists() {
                "built on first use (built)"
            } else {
                "built on first use (not built yet: Rebuild builds it)"
            }
        ));
        let trainable =
            specs::spec(&m.name).is_ok_and(|s| !matches!(s.recipe, specs::Recipe::Pretrained));
        if trainable
            && ui
                .add_enabled(!panel.is_building(), egui::Button::new("Rebuild"))
                .on_hover_text("Retrain with the recipe's seed and re-score (a job)")
                .clicked()
        {
            panel.start_build(board, vec![m.name.clone()]);
        }
    });
    ui.columns(2, |cols| {
        cols[0].label(RichText::new("Recipe").strong());
        let recipe = serde_json::to_string_pretty(&m.recipe).unwrap_or_default();
        cols[0].label(RichText::new(recipe).monospace());
        if !m.details.is_empty() {
            cols[0].label(RichText::new("More scores").strong());
            for (k, v) in &m.details {
                cols[0].label(RichText::new(format!("{k}: {v:.4}")).monospace());
            }
        }
        cols[1].label(RichText::new("Training loss").strong());
        loss_plot(&mut cols[1], "zoo-loss", &m.loss_curve, 200.0);
        cols[1].label(format!(
            "{:.0} s training · evaluated in {:.2} s",
            m.train_seconds, m.eval_seconds
        ));
    });
}

fn loss_plot(ui: &mut Ui, id: &str, losses: &[f32], height: f32) {
    let points: PlotPoints = losses
        .iter()
        .enumerate()
        .map(|(i, &l)| [i as f64, l as f64])
        .collect();
    Plot::new(id)
        .height(height)
        .allow_scroll(false)
        .include_y(0.0)
        .show(ui, |plot| plot.line(Line::new("loss", points)));
}
