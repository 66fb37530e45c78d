//! Drawing of the GAN page; state and jobs are in `mod.rs`.

use egui::{Color32, DragValue, RichText, ScrollArea, Slider, Ui, Vec2};
use egui_plot::{Legend, Line, Plot, PlotPoints};

use super::{AdaptedFrom, GanPanel, GanTab, Grid};
use crate::gan::adapt::Method;
use crate::gan::faces::{Domain, SIZE};
use crate::ui::lab::LabCtx;
use crate::ui::widgets::grouped_bars::{grouped_bars, Series};
use crate::ui::widgets::job_progress::job_progress;
use crate::ui::widgets::named_combo::named_combo;
use crate::ui::widgets::tab_bar::tab_bar;

/// Sample magnification in the live grids.
const ZOOM: f32 = 3.0;
const COLUMNS: usize = 4;
const GENDA: Color32 = Color32::from_rgb(60, 170, 90);

pub fn ui(ui: &mut Ui, panel: &mut GanPanel, ctx: &mut LabCtx) {
    tab_bar(
        ui,
        &mut panel.tab,
        &GanTab::ALL,
        GanTab::label,
        panel.error.as_ref(),
    );
    if panel.source.is_none() {
        ui.label("`alignscope gan pretrain` trains the source GAN.");
        return;
    }
    match panel.tab {
        GanTab::Adapt => adapt_tab(ui, panel, ctx),
        GanTab::Compare => compare_tab(ui, panel),
    }
}

/// A grid's texture at `zoom`, under a caption.
fn grid_image(ui: &mut Ui, grid: &mut Grid, name: &str, caption: &str, zoom: f32) {
    ui.vertical(|ui| {
        ui.label(RichText::new(caption).strong());
        match grid.texture(ui.ctx(), name, COLUMNS) {
            Some(t) => {
                let size = t.size_vec2() * zoom;
                ui.add(egui::Image::new((t.id(), size)));
            }
            None => {
                let side = (SIZE * COLUMNS) as f32 * zoom;
                ui.allocate_space(Vec2::new(side, 20.0));
            }
        }
    });
}

fn adapted_caption(panel: &GanPanel) -> String {
    if panel.running() {
        return format!(
            "{} adapting… step {}",
            model_label(panel.request.method.name()),
            panel.history.last().map_or(0, |s| s.step)
        );
    }
    match &panel.adapted {
        Some((AdaptedFrom::Shipped(d), _)) => format!("GenDA to {d} (shipped)"),
        Some((
            AdaptedFrom::Run {
                method,
                target,
                steps,
            },
            _,
        )) => {
            format!("{} to {target} ({steps} steps)", model_label(method.name()))
        }
        None => "adapted: run an adaptation".into(),
    }
}

fn target_controls(ui: &mut Ui, panel: &mut GanPanel, ctx: &mut LabCtx) {
    ui.horizontal(|ui| {
        let mut domain = panel.domain;
        let mut index = panel.reference_index;
        let changed = named_combo(ui, "target domain", &mut domain);
        let label = ui.label("reference face");
        let moved = ui
            .add(DragValue::new(&mut index).range(0..=9999))
            .labelled_by(label.id)
            .changed();
        if changed || moved || (panel.image.is_some() && ui.button("Use the domain").clicked()) {
            panel.set_target(crate::gan::adapt::Target::Domain { domain, index });
        }
        if ui.button("Open image…").clicked() {
            if let Some(path) = ctx.picker.pick_image_file() {
                panel.open_image(&path);
            }
        }
    });
    match &panel.image {
        Some(path) => {
            ui.label(format!("target image: {}", path.display()));
            for note in &panel.image_notes {
                ui.label(RichText::new(note).weak());
            }
        }
        None => {
            ui.label(RichText::new("or drop a PNG/JPEG on the window").weak());
        }
    }
}

fn method_controls(ui: &mut Ui, panel: &mut GanPanel, ctx: &mut LabCtx) {
    ui.horizontal(|ui| {
        let mut method = panel.request.method;
        if named_combo(ui, "method", &mut method) {
            let keep = (panel.request.steps, panel.request.truncation);
            panel.request = crate::gan::adapt::AdaptRequest::new(method, panel.target());
            (panel.request.steps, panel.request.truncation) = keep;
        }
        let label = ui.label("steps");
        ui.add(DragValue::new(&mut panel.request.steps).range(1..=5000))
            .labelled_by(label.id);
        let label = ui.label("lr");
        ui.add(
            DragValue::new(&mut panel.request.lr)
                .range(1e-5..=1e-1)
                .speed(1e-4),
        )
        .labelled_by(label.id);
        if panel.request.method == Method::Genda {
            ui.add(
                Slider::new(&mut panel.request.truncation, 0.1..=1.0).text("training truncation β"),
            );
        }
    });
    ui.horizontal(|ui| {
        let running = panel.running();
        if ui
            .add_enabled(!running, egui::Button::new("Adapt"))
            .clicked()
        {
            panel.adapt(ctx.board);
        }
        if running && job_progress(ui, ctx.board, panel.job_id()) {
            panel.cancel();
        }
    });
}

fn sliders(ui: &mut Ui, panel: &mut GanPanel) {
    ui.horizontal(|ui| {
        let psi = ui
            .add(Slider::new(&mut panel.psi, 0.0..=1.0).text("truncation ψ"))
            .changed();
        let blend = ui
            .add(Slider::new(&mut panel.blend, 0.0..=1.0).text("latent interpolation"))
            .changed();
        if psi || blend {
            panel.touch();
        }
    });
}

fn loss_plot(ui: &mut Ui, panel: &GanPanel) {
    if panel.history.is_empty() {
        return;
    }
    let (g_name, d_name) = match panel.request.method {
        Method::Genda => ("adaptor L_A", "classifier L_φ"),
        _ => ("generator", "discriminator"),
    };
    Plot::new("gan-losses")
        .height(150.0)
        .legend(Legend::default())
        .x_axis_label("step")
        .show(ui, |plot| {
            let g: PlotPoints = panel
                .history
                .iter()
                .map(|s| [s.step as f64, s.generator_loss as f64])
                .collect();
            let d: PlotPoints = panel
                .history
                .iter()
                .map(|s| [s.step as f64, s.critic_loss as f64])
                .collect();
            plot.line(Line::new(g_name, g).color(GENDA));
            plot.line(Line::new(d_name, d).color(Color32::GRAY));
        });
}

fn adapt_tab(ui: &mut Ui, panel: &mut GanPanel, ctx: &mut LabCtx) {
    target_controls(ui, panel, ctx);
    method_controls(ui, panel, ctx);
    sliders(ui, panel);
    ui.separator();
    ScrollArea::vertical().show(ui, |ui| {
        ui.horizontal_top(|ui| {
            grid_image(ui, &mut panel.source_grid, "gan-source", "source", ZOOM);
            ui.add_space(8.0);
            grid_image(
                ui,
                &mut panel.reference,
                "gan-reference",
                "the one reference",
                4.0,
            );
            ui.add_space(8.0);
            let caption = adapted_caption(panel);
            grid_image(ui, &mut panel.adapted_grid, "gan-adapted", &caption, ZOOM);
        });
        loss_plot(ui, panel);
    });
}

fn compare_tab(ui: &mut Ui, panel: &mut GanPanel) {
    let Some(results) = panel.results().cloned() else {
        ui.label("No evaluation yet: `alignscope gan eval` writes it.");
        return;
    };
    ui.label(format!(
        "The same 16 latents for every model; {} adaptation steps per method. FD and \
         precision/recall over {} samples in our feature network's space: not comparable to \
         the paper's FID values, ratios between methods are.",
        results.steps, results.samples
    ));
    ScrollArea::vertical().show(ui, |ui| {
        for domain in Domain::TARGETS {
            ui.horizontal_top(|ui| {
                let reference = panel.compare_reference(domain);
                grid_image(
                    ui,
                    reference,
                    &format!("gan-ref-{domain}"),
                    &format!("{domain}: the one reference"),
                    2.0,
                );
                for model in ["source", "genda", "finetune", "freezed"] {
                    let grid = panel.compare_grid(domain, model);
                    grid_image(
                        ui,
                        grid,
                        &format!("gan-compare-{domain}-{model}"),
                        model_label(model),
                        1.0,
                    );
                }
            });
        }
        results_table(ui, &results);
        let groups: Vec<String> = Domain::TARGETS
            .iter()
            .map(|d| d.name().to_string())
            .collect();
        let series = |value: fn(&crate::gan::eval::EvalRow) -> f64| -> Vec<Series> {
            MODELS
                .iter()
                .zip(COLOURS)
                .map(|(model, color)| Series {
                    name: model_label(model).to_string(),
                    color,
                    values: Domain::TARGETS
                        .iter()
                        .map(|d| {
                            results
                                .rows
                                .iter()
                                .find(|r| r.target == *d && r.model == *model)
                                .map(value)
                        })
                        .collect(),
                })
                .collect()
        };
        ui.horizontal_top(|ui| {
            ui.vertical(|ui| {
                ui.set_width(520.0);
                grouped_bars(
                    ui,
                    "gan-fd-bars",
                    "FD in our features (lower is better)",
                    groups.clone(),
                    series(|r| r.fd),
                );
            });
            ui.vertical(|ui| {
                ui.set_width(520.0);
                grouped_bars(
                    ui,
                    "gan-recall-bars",
                    "recall, diversity (higher is better)",
                    groups,
                    series(|r| r.recall),
                );
            });
        });
    });
}

const MODELS: [&str; 4] = ["source", "genda", "finetune", "freezed"];
const COLOURS: [Color32; 4] = [
    Color32::GRAY,
    GENDA,
    Color32::from_rgb(220, 120, 60),
    Color32::from_rgb(80, 140, 230),
];

fn results_table(ui: &mut Ui, results: &crate::gan::eval::GanEvalOutcome) {
    egui::Grid::new("gan-results")
        .striped(true)
        .spacing([16.0, 4.0])
        .show(ui, |ui| {
            for h in [
                "target",
                "model",
                "FD (lower is better)",
                "precision",
                "recall",
                "looks like the target",
                "seconds",
            ] {
                ui.label(RichText::new(h).strong());
            }
            ui.end_row();
            for row in &results.rows {
                let best = results
                    .rows
                    .iter()
                    .filter(|r| r.target == row.target && r.model != "source")
                    .map(|r| r.fd)
                    .fold(f64::INFINITY, f64::min);
                let fd = RichText::new(format!("{:.2}", row.fd));
                ui.label(row.target.name());
                ui.label(model_label(&row.model));
                ui.label(if row.fd == best {
                    fd.color(GENDA).strong()
                } else {
                    fd
                });
                ui.label(format!("{:.3}", row.precision));
                ui.label(format!("{:.3}", row.recall));
                ui.label(format!("{:.0}%", 100.0 * row.target_share));
                ui.label(format!("{:.0}", row.seconds));
                ui.end_row();
            }
        });
}

fn model_label(model: &str) -> &str {
    match model {
        "genda" => "GenDA",
        "finetune" => "fine-tune",
        "freezed" => "FreezeD",
        _ => "source (unadapted)",
    }
}
