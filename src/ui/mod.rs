//! The desktop app (eframe/egui, wgpu renderer). Panels only draw and forward clicks to the
//! engine modules; anything slow runs as a job.

pub mod app;
pub mod caption_panel;
pub mod delta_panel;
pub mod file_picker;
pub mod finetune_panel;
pub mod folder_cache;
pub mod fusion_panel;
pub mod gan_panel;
pub mod generate;
pub mod graft_panel;
pub mod jobs_panel;
pub mod lab;
pub mod model_slot;
pub mod prefs_panel;
pub mod promot_panel;
pub mod rag_panel;
pub mod rain_panel;
pub mod settings;
pub mod widgets;
pub mod zoo_panel;

pub use app::AlignApp;
pub use lab::{Lab, LabCtx};

pub fn run_app() -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("alignscope")
            .with_inner_size([1200.0, 800.0])
            .with_drag_and_drop(true),
        renderer: eframe::Renderer::Wgpu,
        ..Default::default()
    };
    eframe::run_native(
        "alignscope",
        options,
        Box::new(|cc| Ok(Box::new(AlignApp::new(cc)))),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))
}
