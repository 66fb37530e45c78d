//! Drawing the Fine-tune page.

use egui::{DragValue, RichText, Ui};
use egui_plot::{Line, Plot, PlotPoints};

use super::FinetunePanel;
use crate::train::finetune::Method;
use crate::ui::widgets::outcome::BAD;
use crate::ui::LabCtx;

pub fn ui(ui: &mut Ui, panel: &mut FinetunePanel, ctx: &mut LabCtx) {
    let loaded = ctx.model.model.as_ref().map(|m| m.info.path.clone());
    egui::Grid::new("finetune-inputs")
        .num_columns(2)
        .show(ui, |ui| {
            let label = ui.label("model");
            let hint = loaded
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "the shipped SmolLM2".into());
            ui.add(
                egui::TextEdit::singleline(&mut panel.model_input)
                    .hint_text(format!("{hint} (the loaded model)"))
                    .desired_width(520.0),
            )
            .labelled_by(label.id);
            ui.end_row();
            for (name, text) in [
                ("training data", &mut panel.data_input),
                ("eval data", &mut panel.eval_input),
            ] {
                let label = ui.label(name);
                ui.add(egui::TextEdit::singleline(text).desired_width(520.0))
                    .labelled_by(label.id);
                ui.end_row();
            }
        });
    let r = &mut panel.request;
    ui.horizontal_wrapped(|ui| {
        let label = ui.label("method");
        let before = r.method;
        egui::ComboBox::from_id_salt("finetune-method")
            .selected_text(r.method.name())
            .show_ui(ui, |ui| {
                for &m in Method::ALL {
                    ui.selectable_value(&mut r.method, m, m.name())
                        .on_hover_text(crate::names::Named::help(m));
                }
            })
            .response
            .labelled_by(label.id);
        if r.method != before {
            r.lr = r.method.default_lr();
        }
        for (name, value, range) in [
            ("steps", &mut r.steps, 1..=10_000),
            ("batch", &mut r.batch, 1..=64),
            ("sequence length", &mut r.seq_len, 8..=2048),
        ] {
            let label = ui.label(name);
            ui.add(DragValue::new(value).range(range))
                .labelled_by(label.id);
        }
        let label = ui.label("learning rate");
        ui.add(
            DragValue::new(&mut r.lr)
                .range(1e-6..=1.0)
                .speed(1e-5)
                .custom_formatter(|v, _| format!("{v:.1e}")),
        )
        .labelled_by(label.id);
        match r.method {
            Method::Lora => {
                let label = ui.label("LoRA rank");
                ui.add(DragValue::new(&mut r.lora.rank).range(1..=256))
                    .labelled_by(label.id);
            }
            Method::Prompt => {
                let label = ui.label("prompt vectors");
                ui.add(DragValue::new(&mut r.prompt_len).range(1..=256))
                    .labelled_by(label.id);
            }
            Method::Full => {}
        }
    });
    ui.horizontal(|ui| {
        if panel.is_running() {
            if ui.button("Cancel").clicked() {
                panel.cancel(ctx.board);
            }
            if let Some(job) = panel.job_id().and_then(|id| ctx.board.status(id)) {
                ui.label(job.message);
            }
        } else if ui.button("Train").clicked() {
            panel.start(ctx.board, loaded.clone());
        }
    });
    match &panel.outcome {
        Some(Ok(o)) => {
            let eval = o
                .eval_loss
                .map(|(b, a)| format!(" · eval loss {b:.3} before, {a:.3} after"))
                .unwrap_or_default();
            ui.label(format!(
                "{} fine-tune of {} trainable parameters: {:.0} s, {:.0} tok/s{eval}",
                o.method, o.trainable_parameters, o.seconds, o.tokens_per_second
            ));
        }
        Some(Err(e)) => {
            ui.colored_label(BAD, format!("fine-tune stopped: {e}"));
        }
        None => {}
    }
    // The result, or after a cancel the last checkpoint written.
    let saved = panel
        .last_out
        .clone()
        .filter(|p| !panel.is_running() && p.join("config.json").exists());
    if let Some(out) = saved {
        ui.horizontal_wrapped(|ui| {
            ui.label(format!("model in {}", out.display()));
            if ui.button("Chat with the result").clicked() {
                ctx.model.load(ctx.board, out.clone());
                // A prompt-tuned result is the base model plus its soft prompt.
                let prompt = out.join(crate::lm::soft_prompt::FILE);
                ctx.settings.soft_prompt = prompt.exists().then_some(prompt);
                ctx.settings.lab = "generate".into();
            }
        });
    }
    ui.label(RichText::new("training loss (answer tokens)").strong());
    if panel.losses.is_empty() && !panel.is_running() {
        ui.weak(
            "Train to draw the curve. On 2 cores, 60 LoRA steps of SmolLM2 on the pirate set \
             took 13 minutes here; the tiny zoo decoders train in seconds.",
        );
    }
    Plot::new("finetune-loss")
        .height(ui.available_height().max(160.0))
        .x_axis_label("step")
        .y_axis_label("loss")
        .show(ui, |plot| {
            plot.line(Line::new("loss", PlotPoints::from(panel.losses.clone())));
        });
}
