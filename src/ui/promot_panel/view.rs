//! Drawing of the ProMoT page.

use egui::{Color32, ComboBox, DragValue, Grid, RichText, Ui};
use egui_plot::{Bar, BarChart, Legend, Line, Plot, PlotPoints};

use super::PromotPanel;
use crate::jobs::JobBoard;
use crate::names::Named;
use crate::promot::icl::IclTask;
use crate::promot::run::{suite, PromotMethod, PromotOutcome};
use crate::promot::tasks::PromotTask;
use crate::ui::widgets::job_progress::job_progress;
use crate::ui::widgets::outcome::BAD;
use crate::ui::LabCtx;

const GOOD: Color32 = Color32::from_rgb(120, 200, 120);

fn method_color(m: PromotMethod) -> Color32 {
    match m {
        PromotMethod::Base => Color32::from_rgb(150, 150, 150),
        PromotMethod::Finetune => Color32::from_rgb(235, 110, 100),
        PromotMethod::Prompt => Color32::from_rgb(80, 170, 235),
        PromotMethod::Promot => Color32::from_rgb(235, 170, 60),
    }
}

fn method_label(m: PromotMethod) -> &'static str {
    match m {
        PromotMethod::Base => "base",
        PromotMethod::Finetune => "fine-tune",
        PromotMethod::Prompt => "prompt tuning",
        PromotMethod::Promot => "ProMoT",
    }
}

pub fn ui(ui: &mut Ui, panel: &mut PromotPanel, ctx: &mut LabCtx) {
    controls(ui, panel, ctx.board);
    chat_row(ui, panel, ctx);
    if let Some(e) = &panel.error {
        ui.colored_label(BAD, format!("run failed: {e}"));
    }
    for (m, r) in &panel.results {
        if let Err(e) = r {
            ui.colored_label(BAD, format!("{}: {e}", method_label(*m)));
        }
    }
    ui.separator();
    egui::ScrollArea::vertical()
        .id_salt("promot-scroll")
        .show(ui, |ui| {
            table(ui, panel);
            ui.add_space(6.0);
            // The full width: every group keeps its name under the axis.
            bars(ui, panel);
            ui.add_space(6.0);
            ui.columns(2, |cols| {
                side_by_side(&mut cols[0], panel);
                losses(&mut cols[1], panel);
            });
        });
}

fn controls(ui: &mut Ui, panel: &mut PromotPanel, board: &JobBoard) {
    ui.horizontal_wrapped(|ui| {
        let text = ui.label("task");
        ComboBox::from_id_salt("promot-task")
            .selected_text(panel.task.name())
            .show_ui(ui, |ui| {
                for &t in PromotTask::ALL {
                    ui.selectable_value(&mut panel.task, t, t.name())
                        .on_hover_text(t.help());
                }
            })
            .response
            .labelled_by(text.id);
        let text = ui.label("method");
        ComboBox::from_id_salt("promot-method")
            .selected_text(method_label(panel.method))
            .show_ui(ui, |ui| {
                for &m in PromotMethod::ALL {
                    ui.selectable_value(&mut panel.method, m, method_label(m))
                        .on_hover_text(m.help());
                }
            })
            .response
            .labelled_by(text.id);
        let r = &mut panel.request;
        let text = ui.label("prompt steps");
        ui.add(DragValue::new(&mut r.prompt_steps).range(1..=5000))
            .labelled_by(text.id)
            .on_hover_text("Prompt tuning (ProMoT's first stage): about 10 s a step on 2 cores");
        let text = ui.label("model steps");
        ui.add(DragValue::new(&mut r.steps).range(1..=1000))
            .labelled_by(text.id)
            .on_hover_text("Fine-tuning every weight (ProMoT's second stage): about 17 s a step");
        let text = ui.label("prompt length");
        ui.add(DragValue::new(&mut r.prompt_len).range(1..=200))
            .labelled_by(text.id);
        if panel.is_running() {
            if job_progress(ui, board, panel.job_id()) {
                panel.cancel(board);
            }
        } else if ui
            .button("Run")
            .on_hover_text("Train, then score the task and the in-context suite; replaces this row")
            .clicked()
        {
            panel.run(board);
        }
    });
}

/// Opens the chosen method's model in the Generate lab; weights not built here are built
/// first by a run (the same button either way, so the page looks the same before and after).
fn chat_row(ui: &mut Ui, panel: &mut PromotPanel, ctx: &mut LabCtx) {
    ui.horizontal_wrapped(|ui| {
        let files = panel.chat_files();
        let hover = match &files {
            Some((model, _)) => model.display().to_string(),
            None => "Not built here (only scores and soft prompts ship): runs the method first, \
                     then opens the result"
                .to_string(),
        };
        let clicked = ui
            .add_enabled(
                !panel.is_running(),
                egui::Button::new(format!(
                    "Chat with the {} model",
                    method_label(panel.method)
                )),
            )
            .on_hover_text(hover)
            .clicked();
        if clicked {
            panel.chat(ctx);
        }
        if panel.method == PromotMethod::Promot {
            ui.weak("without its soft prompt, as the in-context suite asks it");
        }
    });
}

fn pct(v: f64) -> String {
    format!("{:.0}%", 100.0 * v)
}

fn table(ui: &mut Ui, panel: &PromotPanel) {
    ui.label(RichText::new("Target task and in-context suite").strong());
    let rows = panel.rows();
    if rows.is_empty() {
        ui.label("No results for this task yet: run a method.");
        return;
    }
    let shots = rows[0].1.icl.shots;
    Grid::new("promot-table").striped(true).show(ui, |ui| {
        ui.label("");
        ui.label(format!("{} (target)", panel.task.name()));
        for t in suite() {
            ui.label(t.name());
        }
        ui.label("mean");
        ui.label("in the task's labels")
            .on_hover_text("Share of in-context answers that are a label of the fine-tuning task: format specialisation");
        ui.end_row();
        for (m, o) in &rows {
            ui.colored_label(method_color(*m), method_label(*m));
            ui.label(pct(o.target.accuracy));
            for t in suite() {
                ui.label(o.icl.score(t).map(|s| pct(s.accuracy)).unwrap_or_default());
            }
            ui.label(RichText::new(pct(o.icl.mean)).strong());
            let spec = o.icl.specialised.unwrap_or(0.0);
            let text = RichText::new(pct(spec));
            ui.label(if spec > 0.05 { text.color(BAD) } else { text });
            ui.end_row();
        }
    });
    ui.small(format!(
        "{shots}-shot chats answered greedily by our runtime (Q8_0 exports). The target task is \
         asked with the soft prompt, the suite without it."
    ));
}

fn bars(ui: &mut Ui, panel: &PromotPanel) {
    let rows = panel.rows();
    if rows.is_empty() {
        return;
    }
    let tasks = suite();
    let width = 0.8 / rows.len() as f64;
    let charts: Vec<BarChart> = rows
        .iter()
        .enumerate()
        .map(|(j, (m, o))| {
            let offset = (j as f64 - (rows.len() as f64 - 1.0) / 2.0) * width;
            let mut values: Vec<f64> = tasks
                .iter()
                .map(|t| o.icl.score(*t).map_or(0.0, |s| s.accuracy))
                .collect();
            values.push(o.target.accuracy);
            let bars = values
                .iter()
                .enumerate()
                .map(|(i, v)| Bar::new(i as f64 + offset, 100.0 * v).width(width * 0.9))
                .collect();
            BarChart::new(method_label(*m), bars).color(method_color(*m))
        })
        .collect();
    let mut names: Vec<String> = tasks.iter().map(|t| t.name().to_string()).collect();
    names.push("target".to_string());
    let groups = names.len() as f64;
    Plot::new("promot-bars")
        .height(200.0)
        .legend(Legend::default().position(egui_plot::Corner::LeftTop))
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .include_x(-0.5)
        .include_x(groups - 0.4)
        // Headroom above 100% for the legend.
        .include_y(0.0)
        .include_y(130.0)
        .y_axis_label("accuracy %")
        // A mark at every group, so each gets its name.
        .x_grid_spacer(egui_plot::uniform_grid_spacer(|_| [1.0, 1.0, 1.0]))
        .x_axis_formatter(move |mark, _| {
            let i = mark.value.round();
            if (mark.value - i).abs() < 1e-6 && i >= 0.0 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .show(ui, |plot| {
            for c in charts {
                plot.bar_chart(c);
            }
        });
}

/// The live run's curves, or the shown method's stored ones: the prompt stage, then the model
/// stage after it.
fn losses(ui: &mut Ui, panel: &PromotPanel) {
    let stored = |f: fn(&PromotOutcome) -> &Vec<f32>| -> Vec<[f64; 2]> {
        match panel.results.get(&panel.method) {
            Some(Ok(o)) => f(o)
                .iter()
                .enumerate()
                .map(|(i, l)| [(i + 1) as f64, *l as f64])
                .collect(),
            _ => Vec::new(),
        }
    };
    let live =
        panel.is_running() || !panel.prompt_losses.is_empty() || !panel.model_losses.is_empty();
    let (prompt, model) = if live {
        (panel.prompt_losses.clone(), panel.model_losses.clone())
    } else {
        (stored(|o| &o.prompt_losses), stored(|o| &o.model_losses))
    };
    ui.label(
        RichText::new(format!(
            "Training loss ({}{})",
            method_label(panel.method),
            if live { ", this run" } else { ", shipped run" }
        ))
        .strong(),
    );
    if prompt.is_empty() && model.is_empty() {
        ui.label(if panel.method == PromotMethod::Base {
            "No training: the base model is scored as it is."
        } else {
            "No run of this method on this task yet."
        });
        return;
    }
    let shift = prompt.len() as f64;
    let model: Vec<[f64; 2]> = model.iter().map(|[s, l]| [s + shift, *l]).collect();
    Plot::new("promot-loss")
        .height(170.0)
        .legend(Legend::default())
        .x_axis_label("step")
        .y_axis_label("SFT loss")
        .show(ui, |plot| {
            if !prompt.is_empty() {
                plot.line(
                    Line::new("prompt stage", PlotPoints::from(prompt))
                        .color(method_color(PromotMethod::Prompt)),
                );
            }
            if !model.is_empty() {
                plot.line(
                    Line::new("model stage", PlotPoints::from(model))
                        .color(method_color(PromotMethod::Finetune)),
                );
            }
        });
}

fn side_by_side(ui: &mut Ui, panel: &mut PromotPanel) {
    ui.label(RichText::new("One few-shot chat, every model's answer").strong());
    let rows = panel.rows();
    let Some((_, first)) = rows.first() else {
        return;
    };
    let count = first
        .icl
        .answers
        .iter()
        .filter(|a| a.question.task == panel.question_task)
        .count();
    let mut task = panel.question_task;
    let mut index = panel.question;
    ui.horizontal(|ui| {
        let text = ui.label("in-context task");
        ComboBox::from_id_salt("promot-question-task")
            .selected_text(task.name())
            .show_ui(ui, |ui| {
                for &t in IclTask::ALL {
                    ui.selectable_value(&mut task, t, t.name())
                        .on_hover_text(t.help());
                }
            })
            .response
            .labelled_by(text.id);
        if ui.button("<").on_hover_text("Previous question").clicked() {
            index = index.saturating_sub(1);
        }
        ui.label(format!(
            "question {} of {count}",
            index.min(count.saturating_sub(1)) + 1
        ));
        if ui.button(">").on_hover_text("Next question").clicked() {
            index += 1;
        }
    });
    index = index.min(count.saturating_sub(1));
    let answer_of = |o: &PromotOutcome| {
        o.icl
            .answers
            .iter()
            .filter(|a| a.question.task == task)
            .nth(index)
            .cloned()
    };
    if let Some(a) = answer_of(first) {
        egui::Frame::group(ui.style()).show(ui, |ui| {
            for shot in &a.question.shots {
                ui.label(format!("user: {}", shot.input));
                ui.label(format!("assistant: {}", shot.answer));
            }
            ui.label(RichText::new(format!("user: {}", a.question.query.input)).strong());
            ui.small(format!("expected: {}", a.question.query.answer));
        });
        let labels = panel.task.labels();
        Grid::new("promot-answers").striped(true).show(ui, |ui| {
            for (m, o) in &rows {
                let Some(a) = answer_of(o) else { continue };
                ui.colored_label(method_color(*m), method_label(*m));
                let text = crate::text::elide(a.got.trim(), 40);
                ui.label(RichText::new(text).color(if a.correct { GOOD } else { BAD }));
                if crate::promot::icl::in_labels(&a.got, &labels) {
                    ui.small("a label of the fine-tuning task");
                }
                ui.end_row();
            }
        });
    }
    panel.question_task = task;
    panel.question = index;
}
