//! A page's tab row, with the page's error (if any) under it and a separator.

use egui::Ui;

use super::outcome::BAD;

pub fn tab_bar<T: Copy + PartialEq>(
    ui: &mut Ui,
    current: &mut T,
    tabs: &[T],
    label: fn(T) -> &'static str,
    error: Option<&String>,
) {
    ui.horizontal(|ui| {
        for &tab in tabs {
            ui.selectable_value(current, tab, label(tab));
        }
    });
    if let Some(e) = error {
        ui.colored_label(BAD, e);
    }
    ui.separator();
}
