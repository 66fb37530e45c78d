//! Drawing the Generate lab.

use egui::{RichText, ScrollArea, Ui};

use super::loom::Role;
use super::GeneratePanel;
use crate::ui::settings::Settings;
use crate::ui::widgets::model_picker::model_picker;
use crate::ui::widgets::token_view::token_view;
use crate::ui::LabCtx;

pub fn ui(ui: &mut Ui, panel: &mut GeneratePanel, ctx: &mut LabCtx) {
    egui::Panel::right("generate-settings")
        .default_size(330.0)
        .resizable(true)
        .show(ui, |ui| {
            ScrollArea::vertical().id_salt("generate-settings-scroll").show(ui, |ui| {
                ui.add_space(4.0);
                ui.label(RichText::new("Model").strong());
                model_picker(ui, &mut panel.path_input, ctx);
                ui.separator();
                soft_prompt(ui, panel, ctx.settings);
                ui.separator();
                sampling(ui, ctx.settings);
                ui.separator();
                ui.label(RichText::new("Token colours").strong());
                ui.weak("The warmer a token, the less likely the model found it. Hover a token for its probability and the alternatives; click one to branch.");
            });
        });
    let (board, settings) = (ctx.board, &*ctx.settings);
    let Some(model) = ctx.model.model.clone() else {
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

    if panel.loom.active().turns.is_empty() && !panel.is_generating() {
        examples(ui, panel, board, &model, settings);
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

/// Prompts that show the lab's point at once: a fact, a list, and a story whose tokens get
/// less certain as it goes.
const EXAMPLES: [&str; 3] = [
    "What is the capital of France?",
    "Give me three tips for staying healthy.",
    "Write a two-sentence story about a lighthouse keeper.",
];

/// The empty conversation: what to do, and example prompts sent with one click.
fn examples(
    ui: &mut Ui,
    panel: &mut GeneratePanel,
    board: &crate::jobs::JobBoard,
    model: &std::sync::Arc<crate::lm::LanguageModel>,
    settings: &Settings,
) {
    ui.add_space(6.0);
    ui.label(
        "Type a message below, or try one of these. Each answer token is coloured by how \
         likely the model found it; click any token to continue from one of its alternatives.",
    );
    ui.horizontal_wrapped(|ui| {
        for example in EXAMPLES {
            if ui.button(example).clicked() {
                panel.input = example.to_string();
                panel.send(board, model, settings);
            }
        }
    });
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

/// The soft prompt put before every prompt: which file, or a field to name one.
fn soft_prompt(ui: &mut Ui, panel: &mut GeneratePanel, settings: &mut Settings) {
    ui.label(RichText::new("Soft prompt").strong());
    let Some(path) = settings.soft_prompt.clone() else {
        ui.weak("Learned embeddings put before every prompt (what prompt tuning trains).");
        ui.horizontal(|ui| {
            ui.add(
                egui::TextEdit::singleline(&mut panel.soft_prompt_input)
                    .hint_text("soft_prompt.safetensors")
                    .desired_width(220.0),
            );
            let typed = panel.soft_prompt_input.trim();
            if ui
                .add_enabled(!typed.is_empty(), egui::Button::new("Use"))
                .clicked()
            {
                settings.soft_prompt = Some(typed.into());
            }
        });
        return;
    };
    let name = path
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    match panel.soft_prompt(settings) {
        Ok(Some(p)) => {
            ui.label(format!("{name}: {} positions before every prompt", p.len()))
                .on_hover_text(path.display().to_string());
        }
        Ok(None) => {}
        Err(e) => {
            ui.colored_label(crate::ui::widgets::outcome::BAD, e);
        }
    }
    if ui.button("Remove the soft prompt").clicked() {
        settings.soft_prompt = None;
    }
}
