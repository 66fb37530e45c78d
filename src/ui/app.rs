//! The eframe application: the list of pages with their navigation, the page shown under its
//! heading, a status bar with running jobs, and persistence.

use egui::{RichText, Ui};

use super::file_picker::{FilePicker, SystemPicker};
use super::lab::{self, Lab, LabCtx};
use super::model_slot::ModelSlot;
use super::settings::Settings;
use crate::jobs::{record::default_runs_dir, JobBoard};

pub struct AlignApp {
    pub settings: Settings,
    pub board: JobBoard,
    pub model: ModelSlot,
    labs: Vec<Box<dyn Lab>>,
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
        let mut labs = lab::all();
        for lab in &mut labs {
            if let Some(saved) = settings.labs.get(lab.id()) {
                lab.restore(saved.clone());
            }
        }
        let mut app = Self {
            settings,
            board,
            model: ModelSlot::default(),
            labs,
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

    /// The pages, in navigation order.
    pub fn labs(&self) -> impl Iterator<Item = &dyn Lab> {
        self.labs.iter().map(|l| l.as_ref())
    }

    /// The page of type `T`.
    pub fn lab<T: Lab>(&self) -> Option<&T> {
        self.labs
            .iter()
            .find_map(|l| (l.as_ref() as &dyn std::any::Any).downcast_ref::<T>())
    }

    pub fn lab_mut<T: Lab>(&mut self) -> Option<&mut T> {
        self.labs
            .iter_mut()
            .find_map(|l| (l.as_mut() as &mut dyn std::any::Any).downcast_mut::<T>())
    }

    /// The index of the page shown (the first when the setting names none).
    fn current(&self) -> usize {
        self.labs
            .iter()
            .position(|l| l.id() == self.settings.lab)
            .unwrap_or(0)
    }

    fn nav(&mut self, ui: &mut Ui) {
        ui.add_space(4.0);
        ui.label(RichText::new("alignscope").heading().strong());
        ui.separator();
        ui.label(RichText::new("Labs").weak());
        let current = self.current();
        let mut chosen = None;
        for (i, lab) in self.labs.iter().enumerate() {
            if !lab.is_lab() && self.labs[..i].iter().all(|l| l.is_lab()) {
                ui.separator();
            }
            let entry = ui
                .selectable_label(i == current, lab.nav_label(&self.board))
                .on_hover_text(lab.description());
            if entry.clicked() {
                chosen = Some(lab.id());
            }
        }
        if let Some(id) = chosen {
            self.settings.lab = id.to_string();
        }
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

    /// A path dropped on the window goes to the page shown, or else loads as a model.
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
            let current = self.current();
            let mut lab_ctx = LabCtx {
                settings: &mut self.settings,
                model: &mut self.model,
                board: &self.board,
                picker: self.picker.as_mut(),
            };
            if !self.labs[current].dropped(&path, &mut lab_ctx) {
                self.model.load(&self.board, path);
            }
        }
    }
}

impl eframe::App for AlignApp {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        if let Some(path) = self.model.poll() {
            self.settings.remember_model(path);
        }
        let mut lab_ctx = LabCtx {
            settings: &mut self.settings,
            model: &mut self.model,
            board: &self.board,
            picker: self.picker.as_mut(),
        };
        for lab in &mut self.labs {
            lab.poll(&mut lab_ctx);
        }
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
        let current = self.current();
        let lab = &mut self.labs[current];
        let mut ctx = LabCtx {
            settings: &mut self.settings,
            model: &mut self.model,
            board: &self.board,
            picker: self.picker.as_mut(),
        };
        egui::CentralPanel::default().show(ui, |ui| {
            ui.heading(lab.title());
            ui.label(RichText::new(lab.description()).weak());
            ui.add_space(2.0);
            lab.ui(ui, &mut ctx);
        });
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        for lab in &self.labs {
            if let Some(state) = lab.save() {
                self.settings.labs.insert(lab.id().to_string(), state);
            }
        }
        eframe::set_value(storage, eframe::APP_KEY, &self.settings);
    }
}
