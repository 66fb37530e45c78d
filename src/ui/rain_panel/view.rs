//! Drawing the RAIN lab.

use egui::{RichText, ScrollArea, Ui};
use egui_plot::{Line, Plot, PlotPoints, VLine};

use super::RainPanel;
use crate::rain::{AnswerBy, ScoreKind, Setting};
use crate::ui::widgets::tree_view::{tree_view, value_color};
use crate::ui::LabCtx;

pub fn ui(ui: &mut Ui, panel: &mut RainPanel, ctx: &mut LabCtx) {
    if panel.trace_dir.is_none() {
        panel.trace_dir = ctx.board.runs_dir().cloned();
    }
    panel.offer_demo();
    if panel.playback.is_some() {
        panel.advance_playback(ui.input(|i| i.stable_dt).min(0.1));
        ui.ctx().request_repaint();
    }
    // Side panels first, so the controls and the tree get the remaining width.
    egui::Panel::right("rain-inspector")
        .default_size(320.0)
        .resizable(true)
        .show(ui, |ui| {
            ScrollArea::vertical()
                .id_salt("rain-inspector-scroll")
                .show(ui, |ui| {
                    answers(ui, panel);
                    ui.separator();
                    inspector(ui, panel);
                })
        });
    egui::Panel::bottom("rain-timeline")
        .default_size(150.0)
        .resizable(true)
        .show(ui, |ui| timeline(ui, panel));
    egui::CentralPanel::default().show(ui, |ui| {
        controls(ui, panel, ctx);
        let last = panel.events[..panel.shown()].last().cloned();
        let running = panel.is_running() && panel.scrub.is_none();
        tree_view(ui, &mut panel.view, &panel.replay, last.as_ref(), running);
    });
}

fn controls(ui: &mut Ui, panel: &mut RainPanel, ctx: &mut LabCtx) {
    let model = ctx.model.model.clone();
    ui.horizontal_wrapped(|ui| {
        let label = ui.label("Prompt");
        ui.add(egui::TextEdit::singleline(&mut panel.prompt).desired_width(360.0))
            .labelled_by(label.id);
        let current = panel.config.setting;
        egui::ComboBox::from_label("Setting")
            .selected_text(current.name())
            .show_ui(ui, |ui| {
                for &s in Setting::ALL {
                    if ui.selectable_label(s == current, s.name()).clicked() {
                        let keep = (panel.config.max_tokens, panel.config.seed);
                        panel.config = crate::rain::RainConfig::for_setting(s);
                        (panel.config.max_tokens, panel.config.seed) = keep;
                    }
                }
            });
        if ui
            .add_enabled(!panel.is_running(), egui::Button::new("Play demo"))
            .on_hover_text(
                "a shipped search: the harm judge steers SmolLM2 away from a harmful answer",
            )
            .clicked()
        {
            panel.play_demo();
        }
        if let Some(p) = &mut panel.playback {
            ui.add(
                egui::Slider::new(&mut p.events_per_second, 2.0..=400.0)
                    .logarithmic(true)
                    .text("events/s"),
            );
            if ui.button("Skip to end").clicked() {
                p.events_per_second = f32::INFINITY;
            }
        }
        ui.separator();
        let Some(model) = model else {
            ui.label("load a model in the Generate lab first");
            return;
        };
        let running = panel.is_running();
        if ui
            .add_enabled(!running, egui::Button::new("Start"))
            .clicked()
        {
            panel.start(ctx.board, &model, false);
        }
        let pause = if panel.is_paused() { "Resume" } else { "Pause" };
        if ui.add_enabled(running, egui::Button::new(pause)).clicked() {
            panel.toggle_pause();
        }
        if ui
            .button("Step")
            .on_hover_text("run one simulation")
            .clicked()
        {
            panel.step(ctx.board, &model);
        }
        if ui.add_enabled(running, egui::Button::new("Stop")).clicked() {
            panel.stop();
        }
    });
    ui.horizontal_wrapped(|ui| {
        let r = &panel.replay;
        ui.label(
            RichText::new(format!(
                "simulations {} · rewinds {} · commits {} · nodes {}",
                r.simulations,
                r.rewinds,
                r.commits,
                r.tree.nodes.len()
            ))
            .strong(),
        );
        if let Some(judge) = panel.judge_name() {
            ui.label(format!("judge: {judge}"));
        }
        if panel.is_running() {
            ui.label(if panel.is_paused() {
                "paused"
            } else {
                "searching…"
            });
        }
        ui.checkbox(&mut panel.view.follow, "Follow");
        ui.separator();
        let label = ui.label("Trace");
        ui.add(
            egui::TextEdit::singleline(&mut panel.trace_input)
                .hint_text("a .jsonl trace to open")
                .desired_width(220.0),
        )
        .labelled_by(label.id);
        if ui.button("Open trace").clicked() {
            let path = std::path::PathBuf::from(panel.trace_input.trim());
            panel.open_trace(&path);
        }
        if ui.button("Browse…").clicked() {
            if let Some(path) = ctx.picker.pick_model_file() {
                panel.open_trace(&path);
            }
        }
    });
    if let Some(e) = &panel.error {
        ui.colored_label(ui.visuals().error_fg_color, e);
    }
    parameters(ui, panel);
}

fn parameters(ui: &mut Ui, panel: &mut RainPanel) {
    egui::CollapsingHeader::new("Parameters")
        .id_salt("rain-params")
        .show(ui, |ui| {
            ui.horizontal(|ui| {
                let label = ui.label("Judge");
                ui.add(
                    egui::TextEdit::singleline(&mut panel.judge_input)
                        .hint_text(
                            "self (the generator judges itself), or a .gguf file or model folder",
                        )
                        .desired_width(420.0),
                )
                .labelled_by(label.id);
            });
            let c = &mut panel.config;
            ui.spacing_mut().slider_width = 80.0;
            ui.columns(3, |cols| {
                cols[0].add(egui::Slider::new(&mut c.max_tokens, 1..=256).text("Max tokens"));
                cols[0].add(egui::Slider::new(&mut c.t_max, 1..=200).text("T_max"));
                cols[0].add(egui::Slider::new(&mut c.t_min, 0..=50).text("T_min"));
                cols[0].add(egui::Slider::new(&mut c.v_t, -1.0..=1.0).text("V_t"));
                cols[1].add(
                    egui::Slider::new(&mut c.min_new_simulations, 1..=100).text("Min new sims"),
                );
                cols[1].add(egui::Slider::new(&mut c.exploration, 0.0..=8.0).text("Exploration c"));
                cols[1].add(
                    egui::Slider::new(&mut c.rollout_max_tokens, 0..=128).text("Rollout tokens"),
                );
                cols[1].add(
                    egui::Slider::new(&mut c.chunk_temperature, 0.1..=3.0).text("Chunk temp."),
                );
                cols[1]
                    .add(egui::Slider::new(&mut c.parallel, 1..=16).text("Parallel sims"))
                    .on_hover_text(
                        "simulations run at once, kept apart by virtual loss and batched \
                         through the model (1: the paper's one at a time)",
                    );
                cols[2].checkbox(&mut c.dynamic_addition, "Dynamic node addition");
                cols[2].checkbox(&mut c.similarity_update, "Similarity update");
                let mut soft = c.score == ScoreKind::Soft;
                if cols[2]
                    .checkbox(&mut soft, "Soft self-evaluation score")
                    .changed()
                {
                    c.score = if soft {
                        ScoreKind::Soft
                    } else {
                        ScoreKind::Binary
                    };
                }
                let mut words = c.answer_by == AnswerBy::Words;
                if cols[2]
                    .checkbox(&mut words, "Judge by option words")
                    .changed()
                {
                    c.answer_by = if words {
                        AnswerBy::Words
                    } else {
                        AnswerBy::Letters
                    };
                }
                cols[2].horizontal(|ui| {
                    let label = ui.label("Seed");
                    ui.add(egui::DragValue::new(&mut c.seed))
                        .labelled_by(label.id);
                });
            });
        });
}

fn answers(ui: &mut Ui, panel: &RainPanel) {
    ui.label(RichText::new("RAIN answer so far").strong());
    let answer = if panel.replay.answer.is_empty() {
        "(nothing committed yet)"
    } else {
        &panel.replay.answer
    };
    ui.label(answer);
    ui.add_space(6.0);
    ui.label(RichText::new("Vanilla answer (greedy, same prompt)").strong());
    ui.label(if panel.vanilla_text.is_empty() {
        "—"
    } else {
        &panel.vanilla_text
    });
    if let Some(o) = &panel.outcome {
        ui.add_space(6.0);
        ui.weak(format!(
            "{} simulations in {:.1} s ({:.2}/s), {} tokens processed",
            o.simulations,
            o.seconds,
            o.simulations as f64 / o.seconds.max(1e-9),
            o.tokens_processed
        ));
    }
    if let Some(path) = &panel.last_trace {
        ui.weak(format!("trace: {}", path.display()));
    }
}

fn inspector(ui: &mut Ui, panel: &RainPanel) {
    ui.label(RichText::new("Node").strong());
    let Some(id) = panel
        .view
        .selected
        .filter(|&id| id < panel.replay.tree.nodes.len())
    else {
        ui.weak("Click a node in the tree.");
        return;
    };
    let r = &panel.replay;
    let node = r.tree.node(id);
    egui::Grid::new("rain-node").num_columns(2).show(ui, |ui| {
        let mut row = |k: &str, v: String| {
            ui.label(k);
            ui.label(v);
            ui.end_row();
        };
        row("id", id.to_string());
        row("chunk", format!("{:?}", node.text));
        row("n (visits)", format!("{:.2}", node.n));
        row("fn (real visits)", node.fn_.to_string());
        row("q (value)", format!("{:+.3}", node.q));
        row("prior", format!("{:.4}", node.prior));
        row(
            "added",
            format!("simulation {} by {:?}", node.added_at, node.origin),
        );
        if let Some(e) = r.evaluations.get(&id) {
            row("self-eval (binary)", format!("{:+.0}", e.binary));
            row("self-eval (soft)", format!("{:+.3}", e.soft));
            row("evaluated in", format!("simulation {}", e.sim));
        }
    });
    let color = value_color(node.q);
    ui.add_space(4.0);
    ui.label(RichText::new("Text so far").strong());
    ui.colored_label(color, r.text_to(id));
    if let Some(e) = r.evaluations.get(&id) {
        ui.label(RichText::new("Rollout").strong());
        ui.label(if e.rollout.is_empty() {
            "(none: the text already ends a clause)"
        } else {
            &e.rollout
        });
    }
}

fn timeline(ui: &mut Ui, panel: &mut RainPanel) {
    let total = panel.events.len();
    ui.horizontal_wrapped(|ui| {
        ui.label(RichText::new("Timeline").strong());
        let mut k = panel.shown();
        let slider = egui::Slider::new(&mut k, 0..=total).text("event");
        if ui.add_enabled(total > 0, slider).changed() {
            panel.set_scrub(Some(k));
        }
        if ui
            .add_enabled(panel.scrub.is_some(), egui::Button::new("Latest"))
            .clicked()
        {
            panel.set_scrub(None);
        }
        ui.weak("value per simulation; gold lines: commits");
    });
    let points: PlotPoints = panel
        .replay
        .values
        .iter()
        .map(|&(s, v)| [s as f64, v as f64])
        .collect();
    Plot::new("rain-values")
        .include_y(-1.0)
        .include_y(1.0)
        .allow_scroll(false)
        .show(ui, |plot| {
            plot.line(Line::new("value", points));
            for &(_, sim) in &panel.replay.committed {
                plot.vline(
                    VLine::new("commit", sim as f64).color(egui::Color32::from_rgb(235, 190, 60)),
                );
            }
        });
}
