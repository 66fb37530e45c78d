//! A bar chart in groups: one group per row of a results table (its name under the group), one
//! bar per series in each group.

use egui::{Color32, Ui};
use egui_plot::{Bar, BarChart, Legend, Plot};

/// A series: its name, colour and value per group (none: no bar).
pub struct Series {
    pub name: String,
    pub color: Color32,
    pub values: Vec<Option<f64>>,
}

pub fn grouped_bars(
    ui: &mut Ui,
    id: &str,
    y_label: &str,
    groups: Vec<String>,
    series: Vec<Series>,
) {
    let k = series.len();
    let stride = k as f64 + 1.0;
    let middle = (k as f64 - 1.0) / 2.0;
    let charts: Vec<BarChart> = series
        .into_iter()
        .enumerate()
        .map(|(j, s)| {
            let bars = s
                .values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| {
                    let name = groups.get(i).cloned().unwrap_or_default();
                    v.map(|v| {
                        Bar::new(i as f64 * stride + j as f64, v)
                            .width(0.9)
                            .name(name)
                    })
                })
                .collect();
            BarChart::new(s.name, bars).color(s.color)
        })
        .collect();
    Plot::new(id)
        .height(220.0)
        .legend(Legend::default())
        .y_axis_label(y_label)
        .x_axis_formatter(move |mark, _| {
            let i = (mark.value / stride).round();
            if (mark.value - i * stride - middle).abs() < 0.6 && i >= 0.0 {
                groups.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .show(ui, |plot| {
            for c in charts {
                plot.bar_chart(c);
            }
        });
}
