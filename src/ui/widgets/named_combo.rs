//! A labelled combo box over every value of a [`Named`] enum, each with its help on hover.

use egui::{ComboBox, Ui};

use crate::names::Named;

/// True when the user picked another value.
pub fn named_combo<T: Named + Copy + PartialEq>(ui: &mut Ui, label: &str, value: &mut T) -> bool {
    let before = *value;
    let text = ui.label(label);
    ComboBox::from_id_salt(("named-combo", label))
        .selected_text(value.name())
        .show_ui(ui, |ui| {
            for &v in T::all() {
                ui.selectable_value(value, v, v.name())
                    .on_hover_text(v.help());
            }
        })
        .response
        .labelled_by(text.id);
    *value != before
}
