//! Procedurally generated scenes for the vision family: one shape of some colour, size and
//! position on a noisy background, with its class label and a caption. A scene is a pure
//! function of (split, index), so datasets need no files.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub const IMAGE_SIZE: usize = 32;
pub const SHAPES: [&str; 3] = ["circle", "square", "triangle"];
pub const COLOURS: [(&str, [f32; 3]); 4] = [
    ("red", [0.9, 0.15, 0.15]),
    ("green", [0.15, 0.8, 0.2]),
    ("blue", [0.2, 0.3, 0.95]),
    ("yellow", [0.95, 0.85, 0.1]),
];
const ROWS: [&str; 3] = ["top", "middle", "bottom"];
const COLS: [&str; 3] = ["left", "centre", "right"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Eval,
}

#[derive(Debug, Clone)]
pub struct Scene {
    pub shape: usize,
    pub colour: usize,
    pub large: bool,
    pub row: usize,
    pub col: usize,
    /// `[3, IMAGE_SIZE, IMAGE_SIZE]` channel-major, values in 0..=1.
    pub pixels: Vec<f32>,
}

impl Scene {
    /// The classification label: shape × colour (12 classes).
    pub fn label(&self) -> usize {
        self.shape * COLOURS.len() + self.colour
    }

    pub fn caption(&self) -> String {
        let place = if self.row == 1 && self.col == 1 {
            "in the centre".to_string()
        } else if self.row == 1 {
            format!("on the {}", COLS[self.col])
        } else if self.col == 1 {
            format!("at the {}", ROWS[self.row])
        } else {
            format!("at the {} {}", ROWS[self.row], COLS[self.col])
        };
        format!(
            "a {} {} {} {place}",
            if self.large { "large" } else { "small" },
            COLOURS[self.colour].0,
            SHAPES[self.shape]
        )
    }

    /// RGB bytes, row-major, for PNG export and display.
    pub fn rgb8(&self) -> Vec<u8> {
        let n = IMAGE_SIZE * IMAGE_SIZE;
        (0..n)
            .flat_map(|p| (0..3).map(move |c| (c, p)))
            .map(|(c, p)| (self.pixels[c * n + p] * 255.0).round().clamp(0.0, 255.0) as u8)
            .collect()
    }
}

/// Class names in label order ("red circle", …).
pub fn label_names() -> Vec<String> {
    SHAPES
        .iter()
        .flat_map(|s| COLOURS.iter().map(move |(c, _)| format!("{c} {s}")))
        .collect()
}

pub fn scene(split: Split, index: u64) -> Scene {
    let stream = match split {
        Split::Train => 0x5EED_0000_0000,
        Split::Eval => 0xE7A1_0000_0000,
    };
    let mut rng = StdRng::seed_from_u64(stream + index);
    let shape = rng.random_range(0..SHAPES.len());
    let colour = rng.random_range(0..COLOURS.len());
    let large = rng.random_bool(0.5);
    let (row, col) = (rng.random_range(0..3), rng.random_range(0..3));
    let cell = IMAGE_SIZE as f32 / 3.0;
    let cx = cell * (col as f32 + 0.5) + rng.random_range(-2.0..2.0);
    let cy = cell * (row as f32 + 0.5) + rng.random_range(-2.0..2.0);
    let r = if large { 6.5 } else { 3.5 } + rng.random_range(-0.8..0.8);
    let tint: [f32; 3] = std::array::from_fn(|c| {
        (COLOURS[colour].1[c] + rng.random_range(-0.08..0.08)).clamp(0.0, 1.0)
    });
    let background = rng.random_range(0.05..0.3);
    let n = IMAGE_SIZE * IMAGE_SIZE;
    let mut pixels = vec![0f32; 3 * n];
    for y in 0..IMAGE_SIZE {
        for x in 0..IMAGE_SIZE {
            // 2×2 supersampling for soft edges.
            let mut cover = 0.0;
            for (sx, sy) in [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)] {
                if inside(shape, x as f32 + sx - cx, y as f32 + sy - cy, r) {
                    cover += 0.25;
                }
            }
            for c in 0..3 {
                let noise = rng.random_range(-0.04..0.04);
                let v = background * (1.0 - cover) + tint[c] * cover + noise;
                pixels[c * n + y * IMAGE_SIZE + x] = v.clamp(0.0, 1.0);
            }
        }
    }
    Scene {
        shape,
        colour,
        large,
        row,
        col,
        pixels,
    }
}

fn inside(shape: usize, dx: f32, dy: f32, r: f32) -> bool {
    match shape {
        0 => dx * dx + dy * dy <= r * r,
        1 => dx.abs() <= 0.85 * r && dy.abs() <= 0.85 * r,
        // Upward triangle: apex at the top, base at the bottom.
        _ => dy.abs() <= r && dx.abs() <= 0.5 * (dy + r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenes_are_deterministic_and_labelled() {
        let a = scene(Split::Eval, 5);
        let b = scene(Split::Eval, 5);
        assert_eq!(a.pixels, b.pixels);
        assert_ne!(scene(Split::Train, 5).pixels, a.pixels, "splits differ");
        assert_eq!(
            label_names()[a.label()],
            format!("{} {}", COLOURS[a.colour].0, SHAPES[a.shape])
        );
        assert!(a.caption().contains(SHAPES[a.shape]) && a.caption().contains(COLOURS[a.colour].0));
        // The shape's colour dominates somewhere: the brightest pixel has the tint's strongest channel.
        let n = IMAGE_SIZE * IMAGE_SIZE;
        let strongest = (0..3)
            .max_by(|&x, &y| COLOURS[a.colour].1[x].total_cmp(&COLOURS[a.colour].1[y]))
            .unwrap();
        let peak = (0..n)
            .max_by(|&p, &q| a.pixels[strongest * n + p].total_cmp(&a.pixels[strongest * n + q]))
            .unwrap();
        assert!(a.pixels[strongest * n + peak] > 0.6);
        assert_eq!(a.rgb8().len(), 3 * n);
        let counts = (0..600).fold([0usize; 12], |mut c, i| {
            c[scene(Split::Eval, i).label()] += 1;
            c
        });
        assert!(
            counts.iter().all(|&c| c > 20),
            "every class appears: {counts:?}"
        );
    }
}
