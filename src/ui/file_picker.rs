//! Native file dialogs behind a trait, so tests (and machines without a dialog backend) can
//! supply paths instead. Paths can always be typed or dropped on the window too.

use std::path::PathBuf;

pub trait FilePicker {
    /// A model file (GGUF) chosen by the user, or `None` if cancelled or unavailable.
    fn pick_model_file(&mut self) -> Option<PathBuf>;
    /// A Hugging Face model folder.
    fn pick_folder(&mut self) -> Option<PathBuf>;
    /// An image (PNG or JPEG).
    fn pick_image_file(&mut self) -> Option<PathBuf>;
}

/// The system dialog (xdg portal or zenity on Linux). Returns `None` where neither exists.
pub struct SystemPicker;

impl FilePicker for SystemPicker {
    fn pick_model_file(&mut self) -> Option<PathBuf> {
        rfd::FileDialog::new()
            .set_title("Open a model")
            .add_filter("GGUF model", &["gguf"])
            .pick_file()
    }

    fn pick_folder(&mut self) -> Option<PathBuf> {
        rfd::FileDialog::new()
            .set_title("Open a Hugging Face model folder")
            .pick_folder()
    }

    fn pick_image_file(&mut self) -> Option<PathBuf> {
        rfd::FileDialog::new()
            .set_title("Open an image")
            .add_filter("PNG or JPEG image", &["png", "jpg", "jpeg"])
            .pick_file()
    }
}

/// Hands out queued paths: for tests.
#[derive(Default)]
pub struct QueuedPicker(pub Vec<PathBuf>);

impl FilePicker for QueuedPicker {
    fn pick_model_file(&mut self) -> Option<PathBuf> {
        self.0.pop()
    }

    fn pick_folder(&mut self) -> Option<PathBuf> {
        self.0.pop()
    }

    fn pick_image_file(&mut self) -> Option<PathBuf> {
        self.0.pop()
    }
}
