//! The eframe application: navigation, the current page, a status bar with running jobs.

use egui::{RichText, Ui};

use super::delta_panel::{self, DeltaPanel};
use super::file_picker::{FilePicker, SystemPicker};
use super::fusion_panel::{self, FusionPanel};
use super::generate::{self, GeneratePanel};
use super::jobs_panel::{self, JobsPanel};
use super::model_slot::ModelSlot;
use super::rain_panel::{self, RainPanel};
use super::settings::{Page, Settings};
use super::zoo_panel::{self, ZooPanel};
use super::LabCtx;
use crate::jobs::{record::default_runs_dir, JobBoard};

pub struct AlignApp {
    pub settings: Settings,
    pub board: JobBoard,
    pub model: ModelSlot,
    pub generate: GeneratePanel,
    pub rain: RainPanel,
    pub zoo: ZooPanel,
    pub delta: DeltaPanel,
    pub fusion: FusionPanel,
    pub jobs: JobsPanel,
    picker: Box<dyn FilePicker>,
}

impl AlignApp {
    /// The app as started by `alignscope`: settings restored, the model loading.
    pub fn new(cc: &eframe::CreationContext<'_>) -> Self {
        let settings: Settings = cc
            .storage
            .and_then(|s| eframe::get_value(s, eframe::APP_KEY))
            .unwrap_or_default();
        Self::with_parts(
            &cc.egui_ctx,
            settings,
            JobBoard::new(Some(default_runs_dir())),
            Box::new(SystemPicker),
        )
    }

    pub fn with_parts(
        ctx: &egui::Context,
        settings: Settings,
        board: JobBoard,
        picker: Box<dyn FilePicker>,
    ) -> Self {
        // Jobs report often (every token); ten redraws a second are plenty to watch them and
        // leave the cores to the model (a software-rendered frame costs as much as a token).
        let repaint = ctx.clone();
        board.set_notify(move || {
            repaint.request_repaint_after(std::time::Duration::from_millis(100))
        });
        let mut app = Self {
            settings,
            board,
            model: ModelSlot::default(),
            generate: GeneratePanel::default(),
            rain: RainPanel::default(),
            zoo: ZooPanel::default(),
            delta: DeltaPanel::default(),
            fusion: FusionPanel::default(),
            jobs: JobsPanel::default(),
            picker,
        };
        let start = app
            .settings
            .model
            .clone()
            .filter(|p| p.exists())
            .unwrap_or_else(crate::assets::default_model);
        app.model.load(&app.board, start);
        app
    }

    fn nav(&mut self, ui: &mut Ui) {
        ui.add_space(4.0);
        ui.label(RichText::new("alignscope").heading().strong());
        ui.separator();
        ui.label(RichText::new("Labs").weak());
        ui.selectable_value(&mut self.settings.page, Page::Generate, "Generate");
        ui.selectable_value(&mut self.settings.page, Page::Rain, "RAIN");
        ui.selectable_value(&mut self.settings.page, Page::Zoo, "Model zoo");
        ui.selectable_value(&mut self.settings.page, Page::Delta, "Delta");
        ui.selectable_value(&mut self.settings.page, Page::Fusion, "Fusion");
        ui.separator();
        let running = self.board.running();
        let jobs = if running > 0 {
            format!("Jobs ({running} running)")
        } else {
            "Jobs".to_string()
        };
        ui.selectable_value(&mut self.settings.page, Page::Jobs, jobs);
    }

    fn status_bar(&mut self, ui: &mut Ui) {
        ui.horizontal(|ui| {
            let theme = if self.settings.dark {
                "Light theme"
            } else {
                "Dark theme"
            };
            if ui.button(theme).clicked() {
                self.settings.dark = !self.settings.dark;
            }
            ui.separator();
            match &self.model.model {
                Some(m) => ui.label(format!(
                    "{} · {:.0}M params · {}",
                    m.info.name,
                    m.info.parameters as f64 / 1e6,
                    m.info.format
                )),
                None => ui.label("no model"),
            };
            ui.separator();
            // Static text, not a spinner: an animation would redraw the window every frame.
            for job in self
                .board
                .snapshot()
                .iter()
                .filter(|j| !j.state.is_finished())
            {
                let p = job
                    .progress
                    .map(|p| format!(" {:.0}%", p * 100.0))
                    .unwrap_or_default();
                ui.label(format!("running: {}{p}", job.title));
            }
        });
    }

    /// Paths dropped on the window load as models.
    fn take_dropped(&mut self, ctx: &egui::Context) {
        let dropped: Vec<_> = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .filter(|p| !p.as_os_str().is_empty())
                .collect()
        });
        if let Some(path) = dropped.into_iter().next() {
            self.model.load(&self.board, path);
        }
    }
}

impl eframe::App for AlignApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        if let Some(path) = self.model.poll() {
            self.settings.remember_model(path);
        }
        self.generate.poll();
        self.rain.poll();
        self.zoo.poll();
        self.delta.poll(&self.board);
        self.fusion.poll();
        self.take_dropped(ctx);
        ctx.set_theme(if self.settings.dark {
            egui::Theme::Dark
        } else {
            egui::Theme::Light
        });
    }

    fn ui(&mut self, ui: &mut Ui, _frame: &mut eframe::Frame) {
        egui::Panel::bottom("status").show(ui, |ui| self.status_bar(ui));
        egui::Panel::left("nav")
            .resizable(false)
            .exact_size(150.0)
            .show(ui, |ui| self.nav(ui));
        egui::CentralPanel::default().show(ui, |ui| match self.settings.page {
            Page::Generate | Page::Rain => {
                let mut ctx = LabCtx {
                    settings: &mut self.settings,
                    model: &mut self.model,
                    board: &self.board,
                    picker: self.picker.as_mut(),
                };
                if ctx.settings.page == Page::Generate {
                    generate::ui(ui, &mut self.generate, &mut ctx)
                } else {
                    rain_panel::ui(ui, &mut self.rain, &mut ctx)
                }
            }
            Page::Zoo => zoo_panel::ui(ui, &mut self.zoo, &self.board),
            Page::Delta => delta_panel::ui(ui, &mut self.delta, &self.board, self.picker.as_mut()),
            Page::Fusion => {
                fusion_panel::ui(ui, &mut self.fusion, &self.board, self.picker.as_mut())
            }
            Page::Jobs => jobs_panel::ui(ui, &mut self.jobs, &self.board),
        });
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, eframe::APP_KEY, &self.settings);
    }
}
