//! A matrix drawn as coloured cells (one mesh), with the hovered cell's value in a tooltip.

use egui::{Color32, Mesh, Rect, Response, Sense, Ui, Vec2};

/// A row-major matrix to draw; `title` names it for screen readers and tests.
pub struct Heatmap<'a> {
    pub title: &'a str,
    pub rows: usize,
    pub cols: usize,
    pub values: &'a [f64],
    /// What a hovered cell shows, e.g. "A neuron 3 to B neuron 7".
    pub cell_label: &'a dyn Fn(usize, usize) -> String,
}

/// A perceptual dark-blue → teal → yellow ramp (viridis-like), `t` in 0..=1.
pub fn ramp(t: f64) -> Color32 {
    const STOPS: [(f64, [u8; 3]); 5] = [
        (0.0, [68, 1, 84]),
        (0.25, [59, 82, 139]),
        (0.5, [33, 145, 140]),
        (0.75, [94, 201, 98]),
        (1.0, [253, 231, 37]),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let k = STOPS
        .windows(2)
        .position(|w| t <= w[1].0)
        .unwrap_or(STOPS.len() - 2);
    let ((t0, c0), (t1, c1)) = (STOPS[k], STOPS[k + 1]);
    let f = (t - t0) / (t1 - t0);
    let mix = |i: usize| (c0[i] as f64 + f * (c1[i] as f64 - c0[i] as f64)).round() as u8;
    Color32::from_rgb(mix(0), mix(1), mix(2))
}

impl Heatmap<'_> {
    /// Draws the matrix into a square of side `side`, values scaled by their maximum.
    pub fn show(&self, ui: &mut Ui, side: f32) -> Response {
        let (rect, response) = ui.allocate_exact_size(Vec2::splat(side), Sense::hover());
        let title = format!("{} ({}×{})", self.title, self.rows, self.cols);
        response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Image, true, &title));
        if self.rows == 0 || self.cols == 0 || self.values.len() != self.rows * self.cols {
            return response;
        }
        let max = self.values.iter().cloned().fold(0.0, f64::max);
        let scale = if max > 0.0 { 1.0 / max } else { 0.0 };
        let cell = Vec2::new(
            rect.width() / self.cols as f32,
            rect.height() / self.rows as f32,
        );
        let mut mesh = Mesh::default();
        for (k, v) in self.values.iter().enumerate() {
            let (i, j) = (k / self.cols, k % self.cols);
            let min = rect.min + Vec2::new(j as f32 * cell.x, i as f32 * cell.y);
            mesh.add_colored_rect(Rect::from_min_size(min, cell), ramp(v * scale));
        }
        ui.painter().add(mesh);
        if let Some(pos) = response.hover_pos() {
            let j = (((pos.x - rect.min.x) / cell.x) as usize).min(self.cols - 1);
            let i = (((pos.y - rect.min.y) / cell.y) as usize).min(self.rows - 1);
            let value = self.values[i * self.cols + j];
            return response.on_hover_text(format!("{}: {value:.4}", (self.cell_label)(i, j)));
        }
        response
    }
}
