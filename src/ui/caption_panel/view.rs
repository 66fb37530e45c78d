//! Drawing of the Caption page; state and jobs are in `mod.rs`.

use egui::{Color32, DragValue, Grid, RichText, ScrollArea, Stroke, Ui, Vec2};
use egui_plot::{Legend, Line, Plot, PlotPoints};

use super::{CaptionPanel, CaptionTab};
use crate::caption::gallery::CANDIDATES;
use crate::caption::scenes::Domain;
use crate::ui::lab::LabCtx;
use crate::ui::widgets::grouped_bars::{grouped_bars, Series};
use crate::ui::widgets::job_progress::job_progress;
use crate::ui::widgets::named_combo::named_combo;
use crate::ui::widgets::outcome::BAD;
use crate::ui::widgets::tab_bar::tab_bar;

const GOOD: Color32 = Color32::from_rgb(60, 170, 90);
const PICK: Color32 = Color32::from_rgb(235, 150, 40);
const GUESS: Color32 = Color32::from_rgb(80, 150, 240);
/// Scene magnification on the page.
const ZOOM: f32 = 3.0;

/// A captioner's colour and display name.
fn captioner_style(name: &str) -> (Color32, &'static str) {
    match name {
        "discritune" => (GOOD, "DiscriTune"),
        _ => (Color32::GRAY, "base"),
    }
}

pub fn ui(ui: &mut Ui, panel: &mut CaptionPanel, ctx: &mut LabCtx) {
    tab_bar(
        ui,
        &mut panel.tab,
        &CaptionTab::ALL,
        CaptionTab::label,
        panel.error.as_ref(),
    );
    if panel.error.is_some() && !crate::caption::build::Part::RetrieverA.dir().is_dir() {
        ui.label("`alignscope caption build` trains the lab's models.");
    }
    match panel.tab {
        CaptionTab::Gallery => gallery_tab(ui, panel),
        CaptionTab::Game => game_tab(ui, panel, ctx),
        CaptionTab::Tune => tune_tab(ui, panel, ctx),
        CaptionTab::Results => results_tab(ui, panel),
    }
}

/// Domain and decoding pickers; true when either changed.
fn pickers(ui: &mut Ui, panel: &mut CaptionPanel) -> bool {
    ui.horizontal(|ui| {
        let domain = named_combo(ui, "domain", &mut panel.domain);
        named_combo(ui, "decoding", &mut panel.decoding) || domain
    })
    .inner
}

fn scene_image(ui: &mut Ui, panel: &mut CaptionPanel, index: u64, rgb: &[u8]) -> egui::Response {
    let id = panel.texture(ui.ctx(), index, rgb);
    let side = crate::caption::scenes::SIZE as f32 * ZOOM;
    ui.add(egui::Image::new((id, Vec2::splat(side))))
}

fn gallery_tab(ui: &mut Ui, panel: &mut CaptionPanel) {
    if pickers(ui, panel) {
        panel.gallery = None;
    }
    ui.horizontal(|ui| {
        if ui.button("Next scenes").clicked() {
            panel.first += super::GALLERY_SIZE as u64;
            panel.gallery = None;
        }
        if panel.busy() {
            ui.spinner();
            ui.label("captioning…");
        }
    });
    let Some(g) = panel.gallery.clone() else {
        return;
    };
    if g.items.first().is_some_and(|i| i.captions.len() < 2) {
        ui.label("Only the base captioner so far: run DiscriTune (its tab) to compare.");
    }
    ScrollArea::vertical().show(ui, |ui| {
        Grid::new("caption-gallery")
            .spacing([14.0, 14.0])
            .show(ui, |ui| {
                for (k, item) in g.items.iter().enumerate() {
                    ui.vertical(|ui| {
                        ui.set_width(crate::caption::scenes::SIZE as f32 * ZOOM + 30.0);
                        scene_image(ui, panel, item.index, &item.rgb)
                            .on_hover_text(&item.description);
                        for (name, caption) in &item.captions {
                            let (colour, label) = captioner_style(name);
                            ui.label(RichText::new(format!("{label}: {caption}")).color(colour));
                        }
                    });
                    if k % 4 == 3 {
                        ui.end_row();
                    }
                }
            });
    });
}

fn game_tab(ui: &mut Ui, panel: &mut CaptionPanel, ctx: &mut LabCtx) {
    if pickers(ui, panel) {
        panel.game.round = None;
    }
    ui.horizontal(|ui| {
        if ui.button("Next round").clicked() {
            panel.deal(ctx.board, panel.game.number + 1);
        }
        if panel.busy() {
            ui.spinner();
        }
    });
    let Some(round) = panel.game.round.clone() else {
        return;
    };
    ui.horizontal(|ui| {
        ui.label(format!("Round {} · caption by", round.number + 1));
        for (k, g) in round.guesses.iter().enumerate() {
            let (_, label) = captioner_style(&g.captioner);
            ui.selectable_value(&mut panel.game.shown, k, label);
        }
    });
    let shown = panel.game.shown.min(round.guesses.len().saturating_sub(1));
    let Some(guess) = round.guesses.get(shown) else {
        return;
    };
    ui.label(
        RichText::new(format!("“{}”", guess.caption))
            .size(20.0)
            .strong(),
    );
    ui.horizontal(|ui| {
        match panel.game.guess {
            Some(g) => ui.label(format!("Your guess: #{}", g + 1)),
            None => ui.label("Which scene is it? Click its number, then reveal."),
        };
        if ui.button("Reveal").clicked() {
            panel.game.revealed = true;
        }
    });
    if panel.game.revealed {
        let found = guess.choice == round.target;
        ui.horizontal(|ui| {
            ui.colored_label(GOOD, format!("Target: #{}", round.target + 1));
            ui.colored_label(
                PICK,
                format!(
                    "The retriever picked #{}: {}",
                    guess.choice + 1,
                    if found { "found" } else { "wrong" }
                ),
            );
            if let Some(g) = panel.game.guess {
                let verdict = if g == round.target { "right" } else { "wrong" };
                ui.colored_label(GUESS, format!("You: {verdict}"));
            }
        });
    }
    Grid::new("caption-game")
        .spacing([8.0, 8.0])
        .show(ui, |ui| {
            for k in 0..CANDIDATES {
                ui.vertical(|ui| {
                    let response = scene_image(ui, panel, round.candidates[k], &round.rgb[k]);
                    let mut frames = Vec::new();
                    if panel.game.revealed && k == round.target {
                        frames.push(GOOD);
                    }
                    if panel.game.revealed && k == guess.choice {
                        frames.push(PICK);
                    }
                    if panel.game.guess == Some(k) {
                        frames.push(GUESS);
                    }
                    for (i, c) in frames.iter().enumerate() {
                        let rect = response.rect.expand(1.0 + 3.0 * i as f32);
                        ui.painter().rect_stroke(
                            rect,
                            2.0,
                            Stroke::new(3.0, *c),
                            egui::StrokeKind::Outside,
                        );
                    }
                    let mut label = format!("#{}", k + 1);
                    if panel.game.revealed {
                        label = format!("{label} · {:.1}", guess.scores[k]);
                    }
                    if ui
                        .selectable_label(panel.game.guess == Some(k), label)
                        .clicked()
                    {
                        panel.game.guess = Some(k);
                    }
                });
                if k % 8 == 7 {
                    ui.end_row();
                }
            }
        });
}

fn tune_tab(ui: &mut Ui, panel: &mut CaptionPanel, ctx: &mut LabCtx) {
    pickers(ui, panel);
    let running = panel.tune_job_id().is_some();
    ui.horizontal(|ui| {
        let r = &mut panel.request;
        let l = ui.label("steps");
        ui.add(DragValue::new(&mut r.steps).range(1..=5000))
            .labelled_by(l.id);
        let l = ui.label("batch");
        ui.add(DragValue::new(&mut r.batch).range(2..=200))
            .labelled_by(l.id);
        let l = ui.label("learning rate");
        ui.add(
            DragValue::new(&mut r.lr)
                .range(1e-7..=1e-2)
                .speed(1e-5)
                .max_decimals(7),
        )
        .labelled_by(l.id);
        let l = ui.label("measure every");
        ui.add(DragValue::new(&mut r.eval_every).range(1..=1000))
            .labelled_by(l.id);
    });
    ui.horizontal(|ui| {
        if running {
            if job_progress(ui, ctx.board, panel.tune_job_id()) {
                panel.cancel_tune();
            }
        } else if ui.button("Run DiscriTune").clicked() {
            panel.tune(ctx.board);
        }
    });
    ui.label(
        "Reward: log P(target image | caption) among the batch by retriever A; \
         P@1 on held-out scenes by A and by the held-out retriever B (greedy captions).",
    );
    let measured: Vec<(f64, f64, f64)> = panel
        .history
        .iter()
        .filter_map(|s| {
            s.measure
                .as_ref()
                .map(|m| (s.step as f64, m.p_at_1, m.p_at_1_judge))
        })
        .collect();
    ui.columns(2, |cols| {
        Plot::new("caption-p-at-1")
            .height(220.0)
            .legend(Legend::default())
            .x_axis_label("step")
            .y_axis_label("P@1 (%)")
            .show(&mut cols[0], |plot| {
                let a: PlotPoints = measured.iter().map(|m| [m.0, m.1]).collect();
                let b: PlotPoints = measured.iter().map(|m| [m.0, m.2]).collect();
                plot.line(Line::new("retriever A (reward)", a).color(GOOD));
                plot.line(Line::new("retriever B (held out)", b).color(GUESS));
            });
        Plot::new("caption-reward")
            .height(220.0)
            .legend(Legend::default())
            .x_axis_label("step")
            .show(&mut cols[1], |plot| {
                let r: PlotPoints = panel
                    .history
                    .iter()
                    .map(|s| [s.step as f64, s.reward as f64])
                    .collect();
                let b: PlotPoints = panel
                    .history
                    .iter()
                    .map(|s| [s.step as f64, s.baseline as f64])
                    .collect();
                plot.line(Line::new("mean reward", r).color(PICK));
                plot.line(Line::new("baseline", b).color(Color32::GRAY));
            });
    });
    let latest = panel.history.iter().rev().find_map(|s| s.measure.as_ref());
    if let Some(m) = latest {
        ui.label(RichText::new("Held-out captions at the last measurement").strong());
        for c in &m.samples {
            ui.label(c);
        }
    }
}

fn results_tab(ui: &mut Ui, panel: &mut CaptionPanel) {
    let (rows, errors) = panel.results().clone();
    for e in &errors {
        ui.colored_label(BAD, e);
    }
    if rows.is_empty() {
        ui.label("No results yet: `alignscope caption eval` writes them.");
        return;
    }
    let mut rows = rows;
    rows.sort_by_key(|r| (r.domain as usize, r.label.clone()));
    Grid::new("caption-results")
        .striped(true)
        .num_columns(9)
        .show(ui, |ui| {
            for h in [
                "captioner",
                "domain",
                "decoding",
                "P@1 A",
                "P@1 B (held out)",
                "BLEU-4",
                "CIDEr-D",
                "words",
                "vocabulary",
            ] {
                ui.label(RichText::new(h).strong());
            }
            ui.end_row();
            for r in &rows {
                ui.label(&r.label);
                ui.label(r.domain.name());
                ui.label(r.decoding.name());
                ui.label(format!("{:.1}", r.p_at_1));
                ui.label(format!("{:.1}", r.p_at_1_judge));
                ui.label(format!("{:.1}", r.bleu4));
                ui.label(format!("{:.3}", r.cider_d));
                ui.label(format!("{:.1}", r.length));
                ui.label(r.vocabulary.to_string());
                ui.end_row();
            }
        });
    let mut labels: Vec<String> = rows.iter().map(|r| r.label.clone()).collect();
    labels.sort();
    labels.dedup();
    let groups: Vec<String> = Domain::ALL.iter().map(|d| d.name().to_string()).collect();
    let colours = [Color32::GRAY, GOOD, GUESS, PICK];
    let series: Vec<Series> = labels
        .iter()
        .enumerate()
        .map(|(k, label)| Series {
            name: label.clone(),
            color: colours[k % colours.len()],
            values: Domain::ALL
                .iter()
                .map(|d| {
                    rows.iter()
                        .find(|r| &r.label == label && r.domain == *d)
                        .map(|r| r.p_at_1_judge)
                })
                .collect(),
        })
        .collect();
    ui.label(RichText::new("P@1 by the held-out retriever, per domain").strong());
    grouped_bars(ui, "caption-bars", "P@1 (%)", groups, series);
}
