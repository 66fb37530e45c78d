//! Drawing of the RAG page; state and jobs are in `mod.rs`.

use egui::{Color32, DragValue, Frame, RichText, TextEdit, Ui};
use egui_plot::{Legend, Line, Plot, PlotPoints};

use super::{RagPanel, RagTab};
use crate::knowledge::{Hops, Split};
use crate::names::Named;
use crate::rag::mine::Alignment;
use crate::rag::pipeline::{Asked, AskedPassage};
use crate::rag::reranker::Loss;
use crate::rag::score::hit;
use crate::ui::lab::LabCtx;
use crate::ui::widgets::grouped_bars::{grouped_bars, Series};
use crate::ui::widgets::job_progress::job_progress;
use crate::ui::widgets::outcome::BAD;
use crate::ui::widgets::tab_bar::tab_bar;

const GOOD: Color32 = Color32::from_rgb(60, 170, 90);

fn label_color(label: Option<Alignment>) -> Color32 {
    match label {
        Some(Alignment::Aligned) => Color32::from_rgb(40, 120, 60),
        Some(Alignment::Unaligned) => Color32::from_rgb(150, 50, 50),
        Some(Alignment::BothRight) => Color32::from_rgb(50, 90, 70),
        Some(Alignment::BothWrong) | None => Color32::from_gray(60),
    }
}

fn label_words(label: Option<Alignment>) -> &'static str {
    match label {
        Some(Alignment::Aligned) => "helps: wrong without it, right with it",
        Some(Alignment::Unaligned) => "misleads: right without it, wrong with it",
        Some(Alignment::BothRight) => "right either way",
        Some(Alignment::BothWrong) => "wrong either way",
        None => "no gold answer",
    }
}

fn loss_color(i: usize) -> Color32 {
    [
        Color32::from_rgb(90, 160, 230),
        Color32::from_rgb(230, 150, 60),
        Color32::from_rgb(170, 110, 220),
    ][i]
}

pub fn ui(ui: &mut Ui, panel: &mut RagPanel, ctx: &mut LabCtx) {
    tab_bar(
        ui,
        &mut panel.tab,
        &RagTab::ALL,
        RagTab::label,
        panel.error.as_ref(),
    );
    match panel.tab {
        RagTab::Ask => ask_tab(ui, panel, ctx),
        RagTab::Knowledge => knowledge_tab(ui, panel),
        RagTab::Training => training_tab(ui, panel, ctx),
        RagTab::Results => results_tab(ui, panel),
    }
}

fn ask_tab(ui: &mut Ui, panel: &mut RagPanel, ctx: &mut LabCtx) {
    ui.horizontal_wrapped(|ui| {
        let text = ui.label("question");
        ui.add(TextEdit::singleline(&mut panel.question).desired_width(420.0))
            .labelled_by(text.id);
        let text = ui.label("k");
        ui.add(DragValue::new(&mut panel.k).range(1..=10))
            .labelled_by(text.id)
            .on_hover_text("Passages the reader gets");
        let text = ui.label("retrieved");
        ui.add(DragValue::new(&mut panel.depth).range(1..=50))
            .labelled_by(text.id)
            .on_hover_text("Passages retrieved, reranked and each read alone");
        if panel.is_asking() {
            if job_progress(ui, ctx.board, panel.ask_job_id()) {
                panel.cancel_all(ctx.board);
            }
        } else {
            if ui.button("Ask").clicked() {
                panel.ask(ctx.board);
            }
            if ui
                .button("Next test question")
                .on_hover_text("A question of the test split, with its gold answer")
                .clicked()
            {
                next_test_question(panel);
            }
        }
    });
    let Some(asked) = panel.asked.clone() else {
        ui.label(
            "Ask runs the reader once without passages, once with each retrieved passage alone \
             (that colours it), and once with the top k before and after reranking.",
        );
        if !panel.results().0.is_empty() {
            ui.add_space(8.0);
            ui.label(RichText::new("On the test split (scores in %)").strong());
            results_grid(ui, &panel.results().0);
        }
        return;
    };
    answers(ui, &asked);
    ui.horizontal_wrapped(|ui| {
        ui.label("Each passage is coloured by what it alone does to the reader:");
        for l in [
            Alignment::Aligned,
            Alignment::Unaligned,
            Alignment::BothRight,
            Alignment::BothWrong,
        ] {
            Frame::new()
                .fill(label_color(Some(l)))
                .inner_margin(3.0)
                .show(ui, |ui| {
                    ui.label(RichText::new(label_words(Some(l))).color(Color32::WHITE))
                });
        }
    });
    egui::ScrollArea::vertical()
        .id_salt("rag-ask")
        .show(ui, |ui| {
            ui.columns(2, |cols| {
                cols[0].label(RichText::new("Retriever order (dense, cosine)").strong());
                for (rank, p) in asked.passages.iter().enumerate() {
                    passage_card(
                        &mut cols[0],
                        rank + 1,
                        p,
                        p.retriever_score,
                        asked.reranked.is_empty() || rank < panel.k,
                    );
                }
                cols[1].label(RichText::new("Reranker order (DPA-RAG)").strong());
                if asked.reranked.is_empty() {
                    cols[1].label("No reranker yet (its weights are built here, not shipped).");
                    if panel.reranker_job_id().is_some() {
                        if job_progress(&mut cols[1], ctx.board, panel.reranker_job_id()) {
                            panel.cancel_all(ctx.board);
                        }
                    } else if cols[1]
                        .button("Train the reranker and ask again")
                        .on_hover_text(
                            "On the shipped mined preferences: about 7 minutes on 2 cores",
                        )
                        .clicked()
                    {
                        panel.build_reranker_and_ask(ctx.board);
                    }
                }
                for (rank, &i) in asked.reranked.iter().enumerate() {
                    let p = &asked.passages[i];
                    passage_card(
                        &mut cols[1],
                        rank + 1,
                        p,
                        p.reranker_score.unwrap_or(0.0),
                        rank < panel.k,
                    );
                }
            });
        });
}

fn verdict(reply: &str, gold: Option<&Vec<String>>) -> (String, Color32) {
    match gold {
        Some(g) if hit(reply, g) => ("right".into(), GOOD),
        Some(_) => ("wrong".into(), BAD),
        None => (String::new(), Color32::GRAY),
    }
}

fn answers(ui: &mut Ui, asked: &Asked) {
    let gold = asked.gold.as_ref();
    if let Some(g) = gold {
        ui.label(format!("Gold answer: {}", g.join(" or ")));
    }
    egui::Grid::new("rag-answers")
        .num_columns(3)
        .show(ui, |ui| {
            let row = |ui: &mut Ui, what: &str, reply: &str| {
                ui.label(what);
                ui.label(RichText::new(reply.trim()).strong());
                let (v, c) = verdict(reply, gold);
                ui.colored_label(c, v);
                ui.end_row();
            };
            row(ui, "Without passages", &asked.reply_without);
            row(ui, "Retriever's top k", &asked.answer_standard);
            if let Some(a) = &asked.answer_reranked {
                row(ui, "Reranker's top k", a);
            }
            if let Some(a) = &asked.answer_aligned {
                row(ui, "Reranker's top k, pre-aligned reader", a);
            }
        });
}

fn passage_card(ui: &mut Ui, rank: usize, p: &AskedPassage, score: f32, in_top_k: bool) {
    let stroke = if in_top_k {
        egui::Stroke::new(2.0, Color32::from_rgb(240, 200, 80))
    } else {
        egui::Stroke::NONE
    };
    Frame::new()
        .fill(label_color(p.label))
        .stroke(stroke)
        .inner_margin(4.0)
        .show(ui, |ui| {
            ui.set_width(ui.available_width());
            ui.label(
                RichText::new(format!("#{rank}  score {score:.3}  · {}", p.title))
                    .color(Color32::WHITE)
                    .small(),
            );
            ui.label(RichText::new(&p.text).color(Color32::WHITE));
            ui.label(
                RichText::new(format!("reader with it alone: {}", p.reply.trim()))
                    .color(Color32::from_gray(220))
                    .italics(),
            )
            .on_hover_text(label_words(p.label));
        });
    ui.add_space(2.0);
}

fn next_test_question(panel: &mut RagPanel) {
    let current = panel.question.clone();
    let Ok(kb) = panel.kb() else { return };
    let test: Vec<&str> = kb
        .questions
        .iter()
        .filter(|q| q.split == Split::Test)
        .map(|q| q.text())
        .collect();
    let at = test
        .iter()
        .position(|q| *q == current)
        .map_or(0, |i| (i + 1) % test.len().max(1));
    if let Some(q) = test.get(at) {
        panel.question = q.to_string();
    }
}

fn knowledge_tab(ui: &mut Ui, panel: &mut RagPanel) {
    ui.horizontal(|ui| {
        let text = ui.label("find entity");
        ui.add(TextEdit::singleline(&mut panel.entity_filter).desired_width(240.0))
            .labelled_by(text.id);
    });
    let filter = panel.entity_filter.to_lowercase();
    let mut chosen = panel.entity.clone();
    let kb = match panel.kb() {
        Ok(kb) => kb,
        Err(e) => {
            ui.colored_label(BAD, e.clone());
            return;
        }
    };
    ui.label(format!(
        "{} triples, {} passages, {} questions ({} test).",
        kb.graph.triples.len(),
        kb.passages.len(),
        kb.questions.len(),
        kb.questions
            .iter()
            .filter(|q| q.split == Split::Test)
            .count()
    ));
    ui.columns(2, |cols| {
        egui::ScrollArea::vertical()
            .id_salt("rag-entities")
            .max_height(420.0)
            .show(&mut cols[0], |ui| {
                for e in kb
                    .graph
                    .entities()
                    .filter(|e| e.to_lowercase().contains(&filter))
                    .take(300)
                {
                    if ui
                        .selectable_label(chosen.as_deref() == Some(e), e)
                        .clicked()
                    {
                        chosen = Some(e.to_string());
                    }
                }
            });
        let ui = &mut cols[1];
        let Some(entity) = &chosen else {
            ui.label("Pick an entity: its triples, passages and questions show here.");
            return;
        };
        egui::ScrollArea::vertical()
            .id_salt("rag-entity")
            .max_height(420.0)
            .show(ui, |ui| {
                ui.label(RichText::new(entity).heading());
                ui.label(RichText::new("Triples").strong());
                for t in kb.graph.about(entity) {
                    ui.label(t.to_string());
                }
                ui.label(RichText::new("Passages").strong());
                for p in kb.passages.iter().filter(|p| &p.title == entity) {
                    ui.label(format!("[{}] {}", p.kind.name(), p.text));
                }
                ui.label(RichText::new("Questions").strong());
                for q in kb.questions.iter().filter(|q| &q.country == entity) {
                    ui.label(format!(
                        "({}, {}) {}  answer: {}",
                        q.split.name(),
                        q.hops.name(),
                        q.text(),
                        q.answers[0]
                    ));
                }
            });
    });
    panel.entity = chosen;
}

fn training_tab(ui: &mut Ui, panel: &mut RagPanel, ctx: &mut LabCtx) {
    ui.label(RichText::new("Reranker (external alignment)").strong());
    ui.horizontal_wrapped(|ui| {
        for (i, l) in Loss::ALL.iter().enumerate() {
            ui.checkbox(&mut panel.losses[i], l.name())
                .on_hover_text(l.help());
        }
        let text = ui.label("steps");
        ui.add(DragValue::new(&mut panel.reranker_steps).range(1..=5000))
            .labelled_by(text.id);
        if panel.reranker_job_id().is_some() {
            if job_progress(ui, ctx.board, panel.reranker_job_id()) {
                panel.cancel_all(ctx.board);
            }
        } else if ui
            .add_enabled(
                panel.losses.iter().any(|&b| b),
                egui::Button::new("Train reranker"),
            )
            .on_hover_text("On the mined preferences; MGDA-UB weighs the losses every step")
            .clicked()
        {
            panel.train_reranker(ctx.board);
        }
    });
    reranker_plots(ui, panel);
    ui.separator();
    ui.label(RichText::new("Reader (internal alignment)").strong());
    ui.horizontal_wrapped(|ui| {
        let r = &mut panel.reader_request;
        let text = ui.label("judging steps");
        ui.add(DragValue::new(&mut r.judge_steps).range(0..=500))
            .labelled_by(text.id)
            .on_hover_text("Pre-aligned stage: is this passage helpful? (0 skips it)");
        let text = ui.label("answering steps");
        ui.add(DragValue::new(&mut r.sft_steps).range(1..=500))
            .labelled_by(text.id);
        if panel.reader_job_id().is_some() {
            if job_progress(ui, ctx.board, panel.reader_job_id()) {
                panel.cancel_all(ctx.board);
            }
        } else if ui
            .button("Train reader")
            .on_hover_text("Full fine-tune of SmolLM2 in two stages (about 20 s a step on 2 cores)")
            .clicked()
        {
            panel.train_reader(ctx.board);
        }
    });
    if !panel.reader_losses.is_empty() {
        Plot::new("rag-reader-loss")
            .height(150.0)
            .legend(Legend::default())
            .x_axis_label("step")
            .y_axis_label("SFT loss")
            .show(ui, |plot| {
                let mut shift = 0.0;
                for (i, stage) in ["pre-align", "sft"].into_iter().enumerate() {
                    let pts: Vec<[f64; 2]> = panel
                        .reader_losses
                        .iter()
                        .filter(|(s, _, _)| *s == stage)
                        .map(|(_, x, y)| [x + shift, *y])
                        .collect();
                    shift += pts.len() as f64;
                    if !pts.is_empty() {
                        plot.line(Line::new(stage, PlotPoints::from(pts)).color(loss_color(i)));
                    }
                }
            });
    }
}

fn reranker_plots(ui: &mut Ui, panel: &RagPanel) {
    if panel.reranker_history.is_empty() {
        ui.label("No reranker run yet.");
        return;
    }
    ui.label(format!(
        "Losses and MGDA-UB weights ({})",
        panel.reranker_history_of
    ));
    let h = &panel.reranker_history;
    ui.columns(2, |cols| {
        Plot::new("rag-reranker-losses")
            .height(170.0)
            .legend(Legend::default())
            .x_axis_label("step")
            .y_axis_label("loss")
            .show(&mut cols[0], |plot| {
                for (i, l) in Loss::ALL.iter().enumerate() {
                    let pts: Vec<[f64; 2]> = h
                        .iter()
                        .filter(|s| s.parts[i].is_finite())
                        .map(|s| [s.step as f64, s.parts[i] as f64])
                        .collect();
                    if !pts.is_empty() {
                        plot.line(Line::new(l.name(), PlotPoints::from(pts)).color(loss_color(i)));
                    }
                }
            });
        Plot::new("rag-reranker-weights")
            .height(170.0)
            .legend(Legend::default())
            .x_axis_label("step")
            .y_axis_label("weight")
            .include_y(0.0)
            .include_y(1.0)
            .show(&mut cols[1], |plot| {
                for (i, l) in Loss::ALL.iter().enumerate() {
                    let pts: Vec<[f64; 2]> = h
                        .iter()
                        .map(|s| [s.step as f64, s.weights[i] as f64])
                        .collect();
                    plot.line(Line::new(l.name(), PlotPoints::from(pts)).color(loss_color(i)));
                }
            });
    });
}

fn results_tab(ui: &mut Ui, panel: &mut RagPanel) {
    if ui
        .button("Reload")
        .on_hover_text("Read the results folder again (`alignscope rag eval` writes to it)")
        .clicked()
    {
        panel.reload_results();
    }
    let (rows, errors) = panel.results();
    for e in errors {
        ui.colored_label(BAD, e);
    }
    if rows.is_empty() {
        ui.label("No results yet: `alignscope rag eval` writes them.");
        return;
    }
    results_grid(ui, rows);
    results_chart(ui, rows);
}

/// One row per evaluated pipeline: EM, F1 and hit on single- and two-hop questions.
fn results_grid(ui: &mut Ui, rows: &[crate::rag::eval::EvalOutcome]) {
    egui::Grid::new("rag-results")
        .striped(true)
        .num_columns(10)
        .show(ui, |ui| {
            for h in [
                "pipeline",
                "condition",
                "reader",
                "single EM",
                "single F1",
                "single hit",
                "two-hop EM",
                "two-hop F1",
                "two-hop hit",
                "n",
            ] {
                ui.label(RichText::new(h).strong());
            }
            ui.end_row();
            for r in rows {
                ui.label(&r.request.label);
                ui.label(r.request.condition.name());
                ui.label(
                    r.request
                        .reader
                        .file_name()
                        .map(|f| f.to_string_lossy().to_string())
                        .unwrap_or_default(),
                );
                for hops in [Hops::Single, Hops::TwoHop] {
                    match r.score(hops) {
                        Some(s) => {
                            for v in [s.em, s.f1, s.hit] {
                                ui.label(format!("{:.1}", v * 100.0));
                            }
                        }
                        None => {
                            for _ in 0..3 {
                                ui.label("");
                            }
                        }
                    }
                }
                ui.label(r.answers.len().to_string());
                ui.end_row();
            }
        });
}

fn results_chart(ui: &mut Ui, rows: &[crate::rag::eval::EvalOutcome]) {
    let series = [Hops::Single, Hops::TwoHop]
        .into_iter()
        .enumerate()
        .map(|(j, hops)| Series {
            name: format!("{} hit", hops.name()),
            color: loss_color(j),
            values: rows
                .iter()
                .map(|r| r.score(hops).map(|s| s.hit * 100.0))
                .collect(),
        })
        .collect();
    let labels = rows.iter().map(|r| r.request.label.clone()).collect();
    grouped_bars(ui, "rag-bars", "hit (%)", labels, series);
}
