//! Tokens of an answer as coloured chips: colour by probability, hover for the top
//! alternatives, click to pick one and branch from there.

use egui::{Color32, RichText, Sense, Ui};

use crate::lm::generate::{Alternative, GeneratedToken};

/// Background for a token of probability `p`: transparent when the model was sure, warmer as
/// the choice gets less likely.
pub fn probability_color(p: f32, dark: bool) -> Color32 {
    let unsure = (1.0 - p).clamp(0.0, 1.0);
    let alpha = (unsure * 150.0) as u8;
    if dark {
        Color32::from_rgba_unmultiplied(230, 120, 40, alpha)
    } else {
        Color32::from_rgba_unmultiplied(255, 150, 60, alpha)
    }
}

/// A token as its chip shows it: line breaks are left out (the chips after it start a new
/// row), and a token with nothing else visible keeps a narrow chip to hover and click.
pub fn chip_text(text: &str) -> String {
    let shown = text.replace(['\n', '\r'], "");
    if shown.is_empty() {
        " ".to_string()
    } else {
        shown
    }
}

/// Shows `tokens`; returns `(token index, alternative)` when the user picked an alternative.
pub fn token_view(
    ui: &mut Ui,
    id_salt: impl std::hash::Hash + std::fmt::Debug,
    tokens: &[GeneratedToken],
) -> Option<(usize, Alternative)> {
    let dark = ui.visuals().dark_mode;
    let mut picked = None;
    ui.push_id(id_salt, |ui| {
        ui.horizontal_wrapped(|ui| {
            ui.spacing_mut().item_spacing.x = 0.0;
            for (i, token) in tokens.iter().enumerate() {
                let p = token.logprob.exp();
                let chip = RichText::new(chip_text(&token.text))
                    .background_color(probability_color(p, dark));
                let response = ui.add(egui::Label::new(chip).sense(Sense::click()));
                if token.text.contains('\n') && response.hovered() {
                    // The break itself is the line below; its marker shows only on hover.
                    ui.painter().text(
                        response.rect.left_center(),
                        egui::Align2::LEFT_CENTER,
                        "¶",
                        egui::FontId::proportional(11.0),
                        ui.visuals().weak_text_color(),
                    );
                }
                let response = response.on_hover_ui(|ui| {
                    ui.label(format!(
                        "{:?}  p = {:.3}  (log p = {:.2})",
                        token.text, p, token.logprob
                    ));
                    ui.separator();
                    for alt in &token.alternatives {
                        ui.label(format!("{:>6.3}  {:?}", alt.logprob.exp(), alt.text));
                    }
                    ui.weak("click to branch from here");
                });
                egui::Popup::menu(&response).show(|ui| {
                    ui.label(RichText::new("Continue with…").strong());
                    for alt in &token.alternatives {
                        let label = format!("{:?}  ({:.3})", alt.text, alt.logprob.exp());
                        if ui.button(label).clicked() {
                            picked = Some((i, alt.clone()));
                        }
                    }
                });
                for _ in token.text.matches('\n') {
                    ui.end_row();
                }
            }
        });
    });
    picked
}

#[cfg(test)]
mod tests {
    use super::chip_text;

    #[test]
    fn line_breaks_are_not_printed() {
        assert_eq!(chip_text("liters.\n"), "liters.");
        assert_eq!(chip_text("\n\n"), " ");
        assert_eq!(chip_text(" Paris"), " Paris");
    }
}
