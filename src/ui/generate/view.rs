//! Drawing the Generate lab.

use std::path::PathBuf;

use egui::{RichText, ScrollArea, Ui};

use super::loom::Role;
use super::GeneratePanel;
use crate::jobs::JobBoard;
use crate::ui::file_picker::FilePicker;
use crate::ui::model_slot::ModelSlot;
use crate::ui::settings::Settings;
use crate::ui::widgets::token_view::token_view;

pub fn ui(
    ui: &mut Ui,
    panel: &mut GeneratePanel,
    settings: &mut Settings,
    slot: &mut ModelSlot,
    board: &JobBoard,
    picker: &mut dyn FilePicker,
) {
    egui::Panel::right("generate-settings")
        .default_size(330.0)
        .resizable(true)
        .show(ui, |ui| {
            ScrollArea::vertical().id_salt("generate-settings-scroll").show(ui, |ui| {
                ui.add_space(4.0);
                ui.label(RichText::new("Model").strong());
                model_picker(ui, panel, settings, slot, board, picker);
                ui.separator();
                sampling(ui, settings);
                ui.separator();
                ui.label(RichText::new("Token colours").strong());
                ui.weak("The warmer a token, the less likely the model found it. Hover a token for its probability and the alternatives; click one to branch.");
            });
        });
    ui.heading("Generate");

    let Some(model) = slot.model.clone() else {
        ui.label("Load a model to start.");
        return;
    };

    if panel.loom.branches.len() > 1 {
        ui.horizontal(|ui| {
            ui.label("Branch");
            let current = panel.loom.active;
            egui::ComboBox::from_id_salt("branch")
                .selected_text(format!("{}: {}", current, panel.loom.active().label))
                .show_ui(ui, |ui| {
                    for (i, b) in panel.loom.branches.iter().enumerate() {
                        let label = format!("{i}: {}", b.label);
                        if ui.selectable_label(i == current, label).clicked()
                            && !panel.is_generating()
                        {
                            panel.loom.active = i;
                        }
                    }
                });
        });
    }

    let input_height = 100.0;
    let mut pick = None;
    ScrollArea::vertical()
        .max_height((ui.available_height() - input_height).max(80.0))
        .stick_to_bottom(true)
        .auto_shrink([false, false])
        .show(ui, |ui| {
            for (i, turn) in panel.loom.active().turns.iter().enumerate() {
                match turn.role {
                    Role::User => {
                        ui.add_space(8.0);
                        egui::Frame::group(ui.style())
                            .fill(ui.visuals().faint_bg_color)
                            .show(ui, |ui| {
                                ui.label(RichText::new(format!("You: {}", turn.text)).strong());
                            });
                    }
                    Role::Assistant => {
                        ui.add_space(4.0);
                        if turn.tokens.is_empty() && panel.is_generating() {
                            ui.weak("reading the prompt…");
                        }
                        if let Some((t, alt)) =
                            token_view(ui, ("turn", panel.loom.active, i), &turn.tokens)
                        {
                            pick = Some((i, t, alt));
                        }
                    }
                }
            }
        });
    if let Some((turn, token, alt)) = pick {
        panel.branch(board, &model, settings, turn, token, &alt);
    }

    if let Some(err) = &panel.error {
        ui.colored_label(ui.visuals().error_fg_color, err);
    }
    ui.horizontal(|ui| {
        let label = ui.label("Message");
        let edit = egui::TextEdit::multiline(&mut panel.input)
            .desired_rows(2)
            .desired_width(ui.available_width() - 150.0)
            .hint_text("Ask the model something (Ctrl+Enter sends)");
        let response = ui.add(edit).labelled_by(label.id);
        let ctrl_enter = response.has_focus()
            && ui.input(|i| i.key_pressed(egui::Key::Enter) && i.modifiers.command);
        if panel.is_generating() {
            if ui.button("Stop").clicked() {
                panel.stop();
            }
        } else if ui.button("Send").clicked() || ctrl_enter {
            panel.send(board, &model, settings);
        }
        if ui.button("New chat").clicked() {
            panel.new_chat();
        }
    });
    if let Some(t) = &panel.last_timings {
        ui.weak(format!(
            "last answer: {} prompt tokens at {:.0} tok/s, {} tokens at {:.1} tok/s",
            t.prompt_tokens,
            t.prompt_tok_s(),
            t.generated_tokens,
            t.decode_tok_s()
        ));
    }
}

fn model_picker(
    ui: &mut Ui,
    panel: &mut GeneratePanel,
    settings: &mut Settings,
    slot: &mut ModelSlot,
    board: &JobBoard,
    picker: &mut dyn FilePicker,
) {
    let mut load: Option<PathBuf> = None;
    ui.horizontal_wrapped(|ui| {
        let current = slot
            .model
            .as_ref()
            .map(|m| m.info.name.clone())
            .unwrap_or_else(|| "(none)".into());
        egui::ComboBox::from_label("Model")
            .selected_text(current)
            .width(200.0)
            .show_ui(ui, |ui| {
                let shipped = crate::assets::default_model();
                if ui
                    .selectable_label(false, "SmolLM2-135M-Instruct (shipped)")
                    .clicked()
                {
                    load = Some(shipped.clone());
                }
                for path in settings.recent_models.iter().filter(|p| **p != shipped) {
                    if ui
                        .selectable_label(false, path.display().to_string())
                        .clicked()
                    {
                        load = Some(path.clone());
                    }
                }
            });
        if let Some(path) = slot.loading_path() {
            ui.label(format!("loading {}…", path.display()));
        }
    });
    ui.horizontal_wrapped(|ui| {
        if ui.button("Open file…").clicked() {
            load = picker.pick_model_file();
        }
        if ui.button("Open folder…").clicked() {
            load = picker.pick_folder();
        }
    });
    ui.horizontal(|ui| {
        let label = ui.label("Path");
        ui.add(
            egui::TextEdit::singleline(&mut panel.path_input)
                .hint_text("type or drop a .gguf file or a model folder")
                .desired_width(ui.available_width() - 60.0),
        )
        .labelled_by(label.id);
        if ui.button("Load").clicked() && !panel.path_input.trim().is_empty() {
            load = Some(PathBuf::from(panel.path_input.trim()));
        }
    });
    if let Some(err) = &slot.error {
        ui.colored_label(
            ui.visuals().error_fg_color,
            format!("Could not load the model: {err}"),
        );
    }
    if let Some(path) = load {
        slot.load(board, path);
    }
    if let Some(m) = &slot.model {
        egui::CollapsingHeader::new("Model info")
            .id_salt("model-info")
            .show(ui, |ui| {
                egui::Grid::new("model-info-grid")
                    .num_columns(2)
                    .show(ui, |ui| {
                        let i = &m.info;
                        let rows = [
                            ("Name", i.name.clone()),
                            ("Metadata name", i.metadata_name.clone()),
                            ("File", i.path.display().to_string()),
                            ("Format", i.format.to_string()),
                            ("Architecture", i.architecture.clone()),
                            ("Parameters", format!("{:.1} M", i.parameters as f64 / 1e6)),
                            ("Weights", i.quantization.clone()),
                            ("Context length", i.context_length.to_string()),
                            (
                                "Layers × hidden",
                                format!("{} × {}", i.layers, i.hidden_size),
                            ),
                            ("Heads (kv)", format!("{} ({})", i.heads, i.kv_heads)),
                            ("Vocabulary", i.vocab_size.to_string()),
                            (
                                "Chat template",
                                if m.chat_template.is_some() {
                                    "yes"
                                } else {
                                    "no"
                                }
                                .to_string(),
                            ),
                        ];
                        for (k, v) in rows {
                            ui.label(k);
                            ui.label(v);
                            ui.end_row();
                        }
                    });
            });
    }
}

fn sampling(ui: &mut Ui, settings: &mut Settings) {
    egui::CollapsingHeader::new("Sampling")
        .id_salt("sampling")
        .show(ui, |ui| {
            let g = &mut settings.generation;
            ui.add(
                egui::Slider::new(&mut g.sampling.temperature, 0.0..=2.0)
                    .text("Temperature (0 = greedy)"),
            );
            ui.add(egui::Slider::new(&mut g.sampling.top_k, 0..=200).text("Top-k (0 = off)"));
            ui.add(egui::Slider::new(&mut g.sampling.top_p, 0.05..=1.0).text("Top-p"));
            ui.add(egui::Slider::new(&mut g.max_tokens, 1..=1024).text("Max tokens"));
            ui.add(
                egui::Slider::new(&mut g.sampling.alternatives, 0..=10).text("Alternatives shown"),
            );
            ui.horizontal(|ui| {
                let label = ui.label("Seed");
                ui.add(egui::DragValue::new(&mut g.sampling.seed))
                    .labelled_by(label.id);
            });
            ui.checkbox(&mut settings.raw_prompt, "Raw prompt (no chat template)");
        });
}
