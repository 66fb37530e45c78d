//! Choosing and loading a language model, shared by the labs that use one.

use std::path::PathBuf;

use egui::Ui;

use crate::ui::LabCtx;

/// Model choice (shipped, recent, open file or folder, typed path), load errors and model info.
/// `path_input` is the panel's text field for a typed path.
pub fn model_picker(ui: &mut Ui, path_input: &mut String, ctx: &mut LabCtx) {
    let LabCtx {
        settings,
        model: slot,
        board,
        picker,
    } = ctx;
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
            egui::TextEdit::singleline(path_input)
                .hint_text("type or drop a .gguf file or a model folder")
                .desired_width(ui.available_width() - 60.0),
        )
        .labelled_by(label.id);
        if ui.button("Load").clicked() && !path_input.trim().is_empty() {
            load = Some(PathBuf::from(path_input.trim()));
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
