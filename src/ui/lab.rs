//! The one shape of a page. Every page implements [`Lab`] over the shared [`LabCtx`]; the app
//! holds them in one list ([`all`]), which gives each page its navigation entry, its heading,
//! persistence of its settings and the GUI test that opens and snapshots every page.
//! Adding a lab = one module implementing [`Lab`] + one line in [`all`].

use std::any::Any;

use egui::Ui;

use super::file_picker::FilePicker;
use super::model_slot::ModelSlot;
use super::settings::Settings;
use crate::jobs::JobBoard;

/// What every page may use besides its own state.
pub struct LabCtx<'a> {
    pub settings: &'a mut Settings,
    /// The loaded language model (shared by the pages that generate).
    pub model: &'a mut ModelSlot,
    pub board: &'a JobBoard,
    pub picker: &'a mut dyn FilePicker,
}

/// A page of the app. State lives in the implementing struct; `ui` only draws it and starts
/// jobs (the engine's `spawn_*` functions); `poll` takes their results.
pub trait Lab: Any {
    /// Stable key: navigation, persisted state and snapshot names.
    fn id(&self) -> &'static str;
    /// The navigation entry.
    fn name(&self) -> &'static str;
    /// The page's heading.
    fn title(&self) -> &'static str;
    /// One or two sentences under the heading: what the page shows and what it builds on.
    fn description(&self) -> &'static str;
    /// Pages that are not labs (Jobs) sit apart in the navigation.
    fn is_lab(&self) -> bool {
        true
    }
    /// The navigation entry's text (Jobs counts the running ones).
    fn nav_label(&self, _board: &JobBoard) -> String {
        self.name().to_string()
    }
    /// Called every frame for every page, shown or not, before anything is drawn: drains the
    /// page's jobs.
    fn poll(&mut self, ctx: &mut LabCtx);
    /// Draws the page below its heading.
    fn ui(&mut self, ui: &mut Ui, ctx: &mut LabCtx);
    /// A file dropped on the window while this page is shown; true if the page took it
    /// (otherwise it is opened as a language model).
    fn dropped(&mut self, _path: &std::path::Path, _ctx: &mut LabCtx) -> bool {
        false
    }
    /// Settings to keep between starts (`None`: nothing to keep).
    fn save(&self) -> Option<serde_json::Value> {
        None
    }
    /// Takes back what [`Lab::save`] returned at the last exit; unreadable state is ignored.
    fn restore(&mut self, _saved: serde_json::Value) {}
}

/// Every page, in navigation order.
pub fn all() -> Vec<Box<dyn Lab>> {
    vec![
        Box::new(super::generate::GeneratePanel::default()),
        Box::new(super::rain_panel::RainPanel::default()),
        Box::new(super::zoo_panel::ZooPanel::default()),
        Box::new(super::delta_panel::DeltaPanel::default()),
        Box::new(super::fusion_panel::FusionPanel::default()),
        Box::new(super::graft_panel::GraftPanel::default()),
        Box::new(super::finetune_panel::FinetunePanel::default()),
        Box::new(super::promot_panel::PromotPanel::default()),
        Box::new(super::rag_panel::RagPanel::default()),
        Box::new(super::prefs_panel::PrefsPanel::default()),
        Box::new(super::caption_panel::CaptionPanel::default()),
        Box::new(super::gan_panel::GanPanel::default()),
        Box::new(super::jobs_panel::JobsPanel::default()),
    ]
}
