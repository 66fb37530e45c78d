//! Drawing of the Preferences page; state and jobs are in `mod.rs`.

use egui::{Color32, ComboBox, DragValue, Grid, RichText, ScrollArea, TextEdit, Ui};
use egui_plot::{Legend, Line, Plot, PlotPoints};

use super::{PrefsPanel, PrefsTab};
use crate::knowledge::Split;
use crate::names::Named;
use crate::prefs::eval::{PrefEvalOutcome, Ranking};
use crate::prefs::loss::margin_weights;
use crate::prefs::sets::{PrefQuestion, SetKind, Source};
use crate::prefs::train::PrefMethod;
use crate::ui::lab::LabCtx;
use crate::ui::widgets::grouped_bars::{grouped_bars, Series};
use crate::ui::widgets::job_progress::job_progress;
use crate::ui::widgets::outcome::BAD;
use crate::ui::widgets::tab_bar::tab_bar;

const GOOD: Color32 = Color32::from_rgb(60, 170, 90);

fn series_color(i: usize) -> Color32 {
    [
        Color32::from_rgb(90, 160, 230),
        Color32::from_rgb(230, 150, 60),
        Color32::from_rgb(170, 110, 220),
        Color32::from_rgb(80, 190, 150),
    ][i % 4]
}

fn source_words(s: Source) -> &'static str {
    match s {
        Source::Gold => "gold (domain style)",
        Source::Knowledge => "SmolLM2, top triples",
        Source::NoKnowledge => "SmolLM2, no triples",
        Source::Misleading => "SmolLM2, misleading triples",
        Source::TinyQa => "tiny-kgqa (1.1M)",
        Source::TinyBase => "tiny-base (1.1M)",
    }
}

pub fn ui(ui: &mut Ui, panel: &mut PrefsPanel, ctx: &mut LabCtx) {
    tab_bar(
        ui,
        &mut panel.tab,
        &PrefsTab::ALL,
        PrefsTab::label,
        panel.error.as_ref(),
    );
    match panel.tab {
        PrefsTab::Sets => sets_tab(ui, panel),
        PrefsTab::Compare => compare_tab(ui, panel),
        PrefsTab::Training => training_tab(ui, panel, ctx),
        PrefsTab::Results => results_tab(ui, panel),
    }
}

/// The question list (filterable) beside `body`, which draws the selected question.
fn with_question_list(
    ui: &mut Ui,
    panel: &mut PrefsPanel,
    body: impl FnOnce(&mut Ui, &mut PrefsPanel, &PrefQuestion),
) {
    let selected = panel.selected_id();
    let sets = match panel.sets() {
        Ok(s) => s.to_vec(),
        Err(e) => {
            ui.colored_label(BAD, e);
            ui.label("`alignscope prefs build` writes the preference sets.");
            return;
        }
    };
    let mut picked = None;
    ui.horizontal_top(|ui| {
        ui.vertical(|ui| {
            ui.set_width(230.0);
            let text = ui.label("filter");
            ui.add(TextEdit::singleline(&mut panel.filter).desired_width(210.0))
                .labelled_by(text.id);
            let filter = panel.filter.to_lowercase();
            ScrollArea::vertical()
                .id_salt("prefs-questions")
                .max_height(520.0)
                .show(ui, |ui| {
                    // Test questions first: the results answer and rank them.
                    let listed = sets
                        .iter()
                        .filter(|q| q.split == Split::Test)
                        .chain(sets.iter().filter(|q| q.split != Split::Test));
                    for q in listed.filter(|q| q.question.to_lowercase().contains(&filter)) {
                        let on = selected.as_deref() == Some(q.id.as_str());
                        let text = format!("[{}] {}", q.split.name(), q.question);
                        if ui.selectable_label(on, text).clicked() {
                            picked = Some(q.id.clone());
                        }
                    }
                });
        });
        ui.separator();
        ScrollArea::vertical()
            .id_salt("prefs-question")
            .show(ui, |ui| {
                ui.vertical(
                    |ui| match sets.iter().find(|q| Some(&q.id) == selected.as_ref()) {
                        Some(q) => body(ui, panel, q),
                        None => {
                            ui.label("Pick a question.");
                        }
                    },
                );
            });
    });
    if picked.is_some() {
        panel.selected = picked;
    }
}

/// An answer in a grid cell, wrapped at a readable width.
fn answer_cell(ui: &mut Ui, text: &str) {
    ui.scope(|ui| {
        ui.set_width(ANSWER_WIDTH);
        ui.add(egui::Label::new(text).wrap());
    });
}

const ANSWER_WIDTH: f32 = 320.0;

fn triples_list(ui: &mut Ui, heading: &str, q: &PrefQuestion, misleading: bool) {
    let triples = if misleading {
        &q.misleading
    } else {
        &q.knowledge
    };
    ui.label(RichText::new(heading).strong());
    for t in triples {
        let answering = q.gold_triples.contains(t);
        let text = t.to_string();
        match answering {
            true => ui.colored_label(GOOD, format!("{text}  (answers the question)")),
            false => ui.label(text),
        };
    }
}

fn sets_tab(ui: &mut Ui, panel: &mut PrefsPanel) {
    let results = panel.results().0.clone();
    let base = results.iter().find(|r| r.method.is_none()).cloned();
    let mut after = panel.after;
    with_question_list(ui, panel, |ui, _, q| {
        ui.label(RichText::new(&q.question).heading());
        ui.label(format!(
            "gold fact: {} · {} · {}",
            q.facts.join(" / "),
            q.hops.name(),
            q.split.name()
        ));
        triples_list(ui, "Knowledge in the prompt (top triples)", q, false);
        triples_list(
            ui,
            "Misleading triples (the knowledge set's worst answer)",
            q,
            true,
        );
        ui.horizontal(|ui| {
            let text = ui.label("after training with");
            ComboBox::from_id_salt("prefs-after")
                .selected_text(after.name())
                .show_ui(ui, |ui| {
                    for &m in PrefMethod::ALL {
                        ui.selectable_value(&mut after, m, m.name())
                            .on_hover_text(m.help());
                    }
                })
                .response
                .labelled_by(text.id);
        });
        // By label: a method can have several rows (other λ), its default run is named after it.
        let trained = results.iter().find(|r| r.label == after.name());
        let rank_of = |r: Option<&PrefEvalOutcome>| -> Option<Ranking> {
            r?.rankings.iter().find(|x| x.id == q.id).cloned()
        };
        let (before, later) = (rank_of(base.as_ref()), rank_of(trained));
        ui.label("S: the model's mean log-probability per answer token. w = (S − S_min)/(S_max − S_min): the answer's weight in the alignment loss. rank: the order the scores give, green where it is the preferred place.");
        if before.is_none() {
            ui.label(
                "No model scores for this question: the results rank the first test questions.",
            );
        }
        for set in SetKind::ALL {
            ui.add_space(6.0);
            ui.label(RichText::new(format!("{} set, best first", set.name())).strong())
                .on_hover_text(set.help());
            set_grid(ui, q, *set, before.as_ref(), later.as_ref(), after);
        }
    });
    panel.after = after;
}

/// A set's answers, best first, with `S_i`, the margin weight `w_i` and the rank the model's
/// scores give, before (the base) and after training.
fn set_grid(
    ui: &mut Ui,
    q: &PrefQuestion,
    set: SetKind,
    before: Option<&Ranking>,
    after: Option<&Ranking>,
    method: PrefMethod,
) {
    let order = set.order();
    let columns = |r: Option<&Ranking>| -> Option<(Vec<f32>, Vec<f32>, Vec<usize>)> {
        let s: Vec<f32> = order
            .iter()
            .map(|x| r.map(|r| r.score(*x)))
            .collect::<Option<_>>()?;
        let w = margin_weights(&s);
        let ranks = s
            .iter()
            .map(|v| 1 + s.iter().filter(|o| *o > v).count())
            .collect();
        Some((s, w, ranks))
    };
    let (b, a) = (columns(before), columns(after));
    Grid::new(format!("prefs-set-{}", set.name()))
        .striped(true)
        .num_columns(5)
        .show(ui, |ui| {
            for h in ["#", "answer by", "answer", "S · w · rank (base)"] {
                ui.label(RichText::new(h).strong());
            }
            ui.label(RichText::new(format!("S · w · rank ({})", method.name())).strong());
            ui.end_row();
            for (i, source) in order.iter().enumerate() {
                ui.label((i + 1).to_string());
                ui.label(source_words(*source));
                answer_cell(ui, q.answer(*source));
                for c in [&b, &a] {
                    match c {
                        Some((s, w, r)) => {
                            let color = if r[i] == i + 1 { GOOD } else { BAD };
                            ui.colored_label(
                                color,
                                format!("{:+.2} · {:.2} · {}", s[i], w[i], r[i]),
                            );
                        }
                        None => {
                            ui.label("—");
                        }
                    }
                }
                ui.end_row();
            }
        });
}

fn compare_tab(ui: &mut Ui, panel: &mut PrefsPanel) {
    let results = panel.results().0.clone();
    with_question_list(ui, panel, |ui, _, q| {
        ui.label(RichText::new(&q.question).heading());
        ui.label(format!("gold: {}", q.answer(Source::Gold)));
        triples_list(ui, "Triples in the prompt", q, false);
        ui.add_space(6.0);
        let answered: Vec<&PrefEvalOutcome> = results
            .iter()
            .filter(|r| r.answers.iter().any(|a| a.id == q.id))
            .collect();
        if answered.is_empty() {
            ui.label(
                "No model answered this question in the results (they answer the test split).",
            );
            return;
        }
        Grid::new("prefs-compare")
            .striped(true)
            .num_columns(5)
            .show(ui, |ui| {
                for h in ["model", "answer", "fact", "states the triple", "misled"] {
                    ui.label(RichText::new(h).strong());
                }
                ui.end_row();
                for r in answered {
                    let Some(a) = r.answers.iter().find(|a| a.id == q.id) else {
                        continue;
                    };
                    ui.label(RichText::new(&r.label).strong());
                    answer_cell(ui, &a.reply);
                    for (on, good) in [(a.fact, true), (a.uses_triple, true), (a.misled, false)] {
                        let color = if on == good { GOOD } else { BAD };
                        ui.colored_label(color, if on { "yes" } else { "no" });
                    }
                    ui.end_row();
                }
            });
    });
}

fn training_tab(ui: &mut Ui, panel: &mut PrefsPanel, ctx: &mut LabCtx) {
    ui.horizontal_wrapped(|ui| {
        let r = &mut panel.request;
        let text = ui.label("method");
        ComboBox::from_id_salt("prefs-method")
            .selected_text(r.method.name())
            .show_ui(ui, |ui| {
                for &m in PrefMethod::ALL {
                    ui.selectable_value(&mut r.method, m, m.name())
                        .on_hover_text(m.help());
                }
            })
            .response
            .labelled_by(text.id);
        let text = ui.label("λ");
        ui.add(DragValue::new(&mut r.lambda).range(0.0..=10.0).speed(0.01))
            .labelled_by(text.id)
            .on_hover_text("Weight of the alignment loss (the paper's grid: 1, 0.1, 0.01, 0.001)");
        let text = ui.label("steps");
        ui.add(DragValue::new(&mut r.steps).range(1..=2000))
            .labelled_by(text.id);
        let text = ui.label("questions per step");
        ui.add(DragValue::new(&mut r.questions).range(1..=16))
            .labelled_by(text.id);
        if panel.train_job.is_some() {
            if job_progress(ui, ctx.board, panel.train_job_id()) {
                if let Some(id) = panel.train_job_id() {
                    ctx.board.cancel(id);
                }
            }
        } else if ui
            .button("Train")
            .on_hover_text(
                "LoRA (rank 16) on SmolLM2 with this method; the result goes to models/METHOD",
            )
            .clicked()
        {
            panel.train(ctx.board);
        }
    });
    let method = panel.request.method;
    let (steps, of) = match panel.history.is_empty() {
        false => (panel.history.clone(), "this run".to_string()),
        true => (
            panel
                .results()
                .0
                .iter()
                .find(|x| x.label == method.name())
                .map(|x| x.training.clone())
                .unwrap_or_default(),
            format!("the evaluated {} run", method.name()),
        ),
    };
    if steps.is_empty() {
        ui.label("No training curve yet for this method.");
        return;
    }
    ui.label(format!("Losses of {of}: SFT (gold answer, per token) and the alignment term before λ (DPO: its loss)."));
    Plot::new("prefs-losses")
        .height(260.0)
        .legend(Legend::default())
        .x_axis_label("step")
        .show(ui, |plot| {
            for (i, (name, f)) in [
                (
                    "SFT",
                    (|s: &crate::prefs::train::PrefStep| s.sft) as fn(&_) -> f32,
                ),
                ("alignment", |s| s.align),
                ("total", |s| s.loss),
            ]
            .into_iter()
            .enumerate()
            {
                let pts: Vec<[f64; 2]> =
                    steps.iter().map(|s| [s.step as f64, f(s) as f64]).collect();
                plot.line(Line::new(name, PlotPoints::from(pts)).color(series_color(i)));
            }
        });
}

/// A bar series of the results chart: its name and value per model.
type Metric = (&'static str, fn(&PrefEvalOutcome) -> f64);

fn results_tab(ui: &mut Ui, panel: &mut PrefsPanel) {
    if ui
        .button("Reload")
        .on_hover_text("Read the results folder again (`alignscope prefs eval` writes to it)")
        .clicked()
    {
        panel.reload();
    }
    let (rows, errors) = panel.results().clone();
    for e in &errors {
        ui.colored_label(BAD, e);
    }
    if rows.is_empty() {
        ui.label("No results yet: `alignscope prefs eval` writes them.");
        return;
    }
    ui.label("Test split (countries unseen in training). Fact: the gold answer is stated. EM/F1: the first sentence against the gold statement. BLEU-4/ROUGE-L: against the gold answer. Triple: states the answering triple. Misled: states a wrong entity's fact from the prompt. Agreement: pairs of each set the model's scores order as preferred.");
    Grid::new("prefs-results")
        .striped(true)
        .num_columns(12)
        .show(ui, |ui| {
            for h in [
                "model",
                "n",
                "fact",
                "EM",
                "F1",
                "BLEU",
                "ROUGE-L",
                "triple",
                "misled",
                "style agr.",
                "knowledge agr.",
                "train s",
            ] {
                ui.label(RichText::new(h).strong());
            }
            ui.end_row();
            for r in &rows {
                let s = &r.all;
                ui.label(&r.label);
                ui.label(s.questions.to_string());
                for v in [
                    s.fact,
                    s.exact,
                    s.f1,
                    s.bleu,
                    s.rouge_l,
                    s.uses_triple,
                    s.misled,
                    r.style_agreement,
                    r.knowledge_agreement,
                ] {
                    ui.label(format!("{v:.1}"));
                }
                ui.label(
                    r.train_seconds
                        .map(|t| format!("{t:.0}"))
                        .unwrap_or_default(),
                );
                ui.end_row();
            }
        });
    let metrics: [Metric; 4] = [
        ("fact", |r| r.all.fact),
        ("ROUGE-L", |r| r.all.rouge_l),
        ("states the triple", |r| r.all.uses_triple),
        ("knowledge agreement", |r| r.knowledge_agreement),
    ];
    let series = metrics
        .iter()
        .enumerate()
        .map(|(j, (name, f))| Series {
            name: name.to_string(),
            color: series_color(j),
            values: rows.iter().map(|r| Some(f(r))).collect(),
        })
        .collect();
    let labels = rows.iter().map(|r| r.label.clone()).collect();
    grouped_bars(ui, "prefs-bars", "%", labels, series);
}
