//! Scenes for the caption lab: several objects, each with a shape, colour, size, texture and
//! place, on a coloured background. A scene has a full description (every attribute of every
//! object, for the retrievers) and reference captions in a human style: short, about one or
//! two salient objects, varied wording — like COCO captions, which rarely say what singles the
//! image out. Three domains: the source and two shifted ones (another light and palette; more
//! and smaller objects). A scene is a pure function of (domain, split, index).

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

pub const SIZE: usize = 48;
pub const SHAPES: [&str; 4] = ["circle", "square", "triangle", "diamond"];
pub const COLOURS: [(&str, [f32; 3]); 6] = [
    ("red", [0.88, 0.14, 0.12]),
    ("green", [0.15, 0.72, 0.2]),
    ("blue", [0.18, 0.32, 0.95]),
    ("yellow", [0.95, 0.85, 0.1]),
    ("purple", [0.6, 0.2, 0.75]),
    ("orange", [0.98, 0.52, 0.08]),
];
pub const TEXTURES: [&str; 3] = ["plain", "striped", "dotted"];
pub const BACKGROUNDS: [(&str, [f32; 3]); 4] = [
    ("grey", [0.55, 0.55, 0.55]),
    ("sand", [0.82, 0.74, 0.55]),
    ("dark", [0.1, 0.1, 0.12]),
    ("navy", [0.08, 0.12, 0.35]),
];
const ROWS: [&str; 3] = ["top", "middle", "bottom"];
const COLS: [&str; 3] = ["left", "centre", "right"];
pub const COUNTS: [&str; 7] = ["zero", "one", "two", "three", "four", "five", "six"];

crate::named_enum! {
    "domain";
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum Domain {
        /// Two or three objects on grey or sand: the captioner's training domain.
        Source = "source",
        /// Another light: dark and navy backgrounds, dimmer colours, more noise.
        Dusk = "dusk",
        /// Four to six smaller objects on any background.
        Crowded = "crowded",
    }
}

impl Domain {
    fn stream(self) -> u64 {
        match self {
            Domain::Source => 0x0CA7_0000_0000,
            Domain::Dusk => 0x0DD5_0000_0000,
            Domain::Crowded => 0x0C40_0000_0000,
        }
    }

    fn objects(self) -> std::ops::RangeInclusive<usize> {
        match self {
            Domain::Crowded => 4..=6,
            _ => 2..=3,
        }
    }

    fn backgrounds(self) -> &'static [usize] {
        match self {
            Domain::Source => &[0, 1],
            Domain::Dusk => &[2, 3],
            Domain::Crowded => &[0, 1, 2, 3],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Split {
    Train,
    Test,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Object {
    pub shape: usize,
    pub colour: usize,
    pub large: bool,
    pub texture: usize,
    pub row: usize,
    pub col: usize,
}

impl Object {
    fn place(&self) -> String {
        match (self.row, self.col) {
            (1, 1) => "in the centre".into(),
            (1, c) => format!("on the {}", COLS[c]),
            (r, 1) => format!("at the {}", ROWS[r]),
            (r, c) => format!("at the {} {}", ROWS[r], COLS[c]),
        }
    }

    fn size(&self) -> &'static str {
        if self.large {
            "large"
        } else {
            "small"
        }
    }

    /// "a large red striped circle at the top left", with the attributes `keep` names.
    fn phrase(&self, keep: [bool; 4]) -> String {
        let [size, colour, texture, place] = keep;
        let mut words = vec!["a"];
        if size {
            words.push(self.size());
        }
        if colour {
            words.push(COLOURS[self.colour].0);
        }
        if texture {
            words.push(TEXTURES[self.texture]);
        }
        words.push(SHAPES[self.shape]);
        let mut s = words.join(" ");
        if place {
            s = format!("{s} {}", self.place());
        }
        s
    }
}

#[derive(Debug, Clone)]
pub struct Scene {
    pub domain: Domain,
    pub objects: Vec<Object>,
    pub background: usize,
    /// `[3, SIZE, SIZE]` channel-major, values in 0..=1.
    pub pixels: Vec<f32>,
}

impl Scene {
    /// Every attribute of every object, in reading order, and the background.
    pub fn description(&self) -> String {
        let all = [true; 4];
        let objects: Vec<String> = self.objects.iter().map(|o| o.phrase(all)).collect();
        format!(
            "{} on a {} background",
            objects.join(" and "),
            BACKGROUNDS[self.background].0
        )
    }

    /// A description at a random level of detail: some objects, some of their attributes,
    /// maybe the background (the retrievers learn to score partial text too).
    pub fn partial_description(&self, rng: &mut StdRng) -> String {
        let mut picked: Vec<&Object> = self
            .objects
            .iter()
            .filter(|_| rng.random_bool(0.6))
            .collect();
        if picked.is_empty() {
            picked.push(&self.objects[rng.random_range(0..self.objects.len())]);
        }
        let phrases: Vec<String> = picked
            .iter()
            .map(|o| o.phrase(std::array::from_fn(|_| rng.random_bool(0.6))))
            .collect();
        let mut s = phrases.join(" and ");
        if rng.random_bool(0.3) {
            s = format!("{s} on a {} background", BACKGROUNDS[self.background].0);
        }
        s
    }

    /// Objects by salience: large before small, then nearer the centre.
    fn salient(&self) -> Vec<&Object> {
        let mut v: Vec<&Object> = self.objects.iter().collect();
        let off = |o: &Object| o.row.abs_diff(1) + o.col.abs_diff(1);
        v.sort_by_key(|o| (!o.large, off(o)));
        v
    }

    /// Five reference captions in a human style (deterministic per scene).
    pub fn references(&self, seed: u64) -> Vec<String> {
        let mut rng = StdRng::seed_from_u64(seed);
        let s = self.salient();
        let (a, b) = (s[0], s[1]);
        let colour = |o: &Object| COLOURS[o.colour].0;
        let shape = |o: &Object| SHAPES[o.shape];
        let mut pool = vec![
            format!("a {} {}", colour(a), shape(a)),
            format!("a {} {} and a {}", colour(a), shape(a), shape(b)),
            format!(
                "a {} {} next to a {} {}",
                colour(a),
                shape(a),
                colour(b),
                shape(b)
            ),
            format!("a picture of a {} {}", a.size(), shape(a)),
            format!("there is a {} {} in the picture", colour(a), shape(a)),
            format!(
                "{} shapes one of them {}",
                COUNTS[self.objects.len()],
                colour(a)
            ),
            format!(
                "some shapes on a {} background",
                BACKGROUNDS[self.background].0
            ),
            format!("a {} {} and other shapes", a.size(), shape(a)),
        ];
        if TEXTURES[a.texture] != "plain" {
            let t = if a.texture == 1 { "stripes" } else { "dots" };
            pool.push(format!("a {} with {t}", shape(a)));
        }
        if rng.random_bool(0.3) {
            pool.push(format!("a {} {} {}", colour(a), shape(a), a.place()));
        }
        pool.shuffle(&mut rng);
        pool.truncate(5);
        pool
    }

    /// RGB bytes, row-major, for PNG export and display.
    pub fn rgb8(&self) -> Vec<u8> {
        rgb8(&self.pixels)
    }
}

/// Channel-major `[3, SIZE, SIZE]` values in 0..=1 → row-major RGB bytes.
pub fn rgb8(pixels: &[f32]) -> Vec<u8> {
    let n = SIZE * SIZE;
    (0..n)
        .flat_map(|p| (0..3).map(move |c| (c, p)))
        .map(|(c, p)| (pixels[c * n + p] * 255.0).round().clamp(0.0, 255.0) as u8)
        .collect()
}

pub fn scene(domain: Domain, split: Split, index: u64) -> Scene {
    let split_stream = match split {
        Split::Train => 0,
        Split::Test => 0x8000_0000,
    };
    let mut rng = StdRng::seed_from_u64(domain.stream() + split_stream + index);
    let count = rng.random_range(domain.objects());
    let mut cells: Vec<usize> = (0..9).collect();
    cells.shuffle(&mut rng);
    let mut cells: Vec<usize> = cells.into_iter().take(count).collect();
    cells.sort_unstable();
    let crowded = domain == Domain::Crowded;
    let objects: Vec<Object> = cells
        .iter()
        .map(|&cell| Object {
            shape: rng.random_range(0..SHAPES.len()),
            colour: rng.random_range(0..COLOURS.len()),
            large: rng.random_bool(if crowded { 0.3 } else { 0.5 }),
            texture: rng.random_range(0..TEXTURES.len()),
            row: cell / 3,
            col: cell % 3,
        })
        .collect();
    let backgrounds = domain.backgrounds();
    let background = backgrounds[rng.random_range(0..backgrounds.len())];
    let pixels = render(domain, &objects, background, &mut rng);
    Scene {
        domain,
        objects,
        background,
        pixels,
    }
}

fn render(domain: Domain, objects: &[Object], background: usize, rng: &mut StdRng) -> Vec<f32> {
    let n = SIZE * SIZE;
    let (light, noise) = match domain {
        Domain::Dusk => (0.7, 0.07),
        _ => (1.0, 0.035),
    };
    let bg = BACKGROUNDS[background].1;
    let mut pixels = vec![0f32; 3 * n];
    for c in 0..3 {
        pixels[c * n..(c + 1) * n].fill(bg[c]);
    }
    let cell = SIZE as f32 / 3.0;
    for o in objects {
        let cx = cell * (o.col as f32 + 0.5) + rng.random_range(-2.0..2.0);
        let cy = cell * (o.row as f32 + 0.5) + rng.random_range(-2.0..2.0);
        let r = if o.large { 7.0 } else { 4.2 } + rng.random_range(-0.6..0.6);
        let tint: [f32; 3] = std::array::from_fn(|c| {
            ((COLOURS[o.colour].1[c] + rng.random_range(-0.06..0.06)) * light).clamp(0.0, 1.0)
        });
        for y in 0..SIZE {
            for x in 0..SIZE {
                let mut cover = 0.0;
                for (sx, sy) in [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)] {
                    if inside(o.shape, x as f32 + sx - cx, y as f32 + sy - cy, r) {
                        cover += 0.25;
                    }
                }
                if cover == 0.0 {
                    continue;
                }
                let shade = texture_shade(o.texture, x as f32 - cx, y as f32 - cy);
                for c in 0..3 {
                    let p = &mut pixels[c * n + y * SIZE + x];
                    *p = *p * (1.0 - cover) + tint[c] * shade * cover;
                }
            }
        }
    }
    for p in &mut pixels {
        *p = (*p + rng.random_range(-noise..noise)).clamp(0.0, 1.0);
    }
    pixels
}

/// Brightness of a textured object at offset (dx, dy) from its centre: stripes are diagonal
/// dark bands, dots a dark grid of spots.
fn texture_shade(texture: usize, dx: f32, dy: f32) -> f32 {
    match texture {
        1 if (dx + dy + 100.0).rem_euclid(4.0) < 1.6 => 0.35,
        2 if (dx + 100.0).rem_euclid(3.5) < 1.5 && (dy + 100.0).rem_euclid(3.5) < 1.5 => 0.35,
        _ => 1.0,
    }
}

fn inside(shape: usize, dx: f32, dy: f32, r: f32) -> bool {
    match shape {
        0 => dx * dx + dy * dy <= r * r,
        1 => dx.abs() <= 0.85 * r && dy.abs() <= 0.85 * r,
        // Upward triangle: apex at the top, base at the bottom.
        2 => dy.abs() <= r && dx.abs() <= 0.55 * (dy + r),
        _ => dx.abs() + dy.abs() <= 1.1 * r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenes_are_deterministic_and_described() {
        for &domain in Domain::ALL {
            let a = scene(domain, Split::Test, 3);
            assert_eq!(a.pixels, scene(domain, Split::Test, 3).pixels);
            assert_ne!(a.pixels, scene(domain, Split::Train, 3).pixels);
            assert!(domain.objects().contains(&a.objects.len()));
            let d = a.description();
            for o in &a.objects {
                assert!(d.contains(&o.phrase([true; 4])), "{d}");
            }
            assert!(d.ends_with(&format!("on a {} background", BACKGROUNDS[a.background].0)));
            let refs = a.references(7);
            assert_eq!(refs.len(), 5);
            assert_eq!(refs, a.references(7));
            // Human-style captions are shorter than the description.
            assert!(refs.iter().all(|r| r.len() < d.len()), "{refs:?} vs {d}");
        }
    }

    #[test]
    fn the_salient_object_is_drawn_in_its_colour() {
        // A large plain object's centre has its colour's strongest channel lit.
        let mut checked = 0;
        for i in 0..40 {
            let s = scene(Domain::Source, Split::Train, i);
            for o in s.objects.iter().filter(|o| o.large && o.texture == 0) {
                let cell = SIZE / 3;
                let (x, y) = (cell * o.col + cell / 2, cell * o.row + cell / 2);
                let tint = COLOURS[o.colour].1;
                let c = (0..3)
                    .max_by(|&a, &b| tint[a].total_cmp(&tint[b]))
                    .unwrap_or(0);
                assert!(s.pixels[c * SIZE * SIZE + y * SIZE + x] > 0.6, "scene {i}");
                checked += 1;
            }
        }
        assert!(checked > 5);
    }
}
