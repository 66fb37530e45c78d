//! Procedural colour faces, the GAN lab's stand-in for FFHQ: face shape, skin tone, eyes,
//! brows, nose, mouth, hair and background vary continuously. As in FFHQ, the source domain
//! holds a minority of babies (15 %), sunglasses (15 %) and faded photos (10 %), so a source
//! generator can reach those attributes; the target domains are all babies, all sunglasses,
//! or pencil sketches (not in the source at all). A face is a pure function of (domain,
//! index, seed).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Image side in pixels.
pub const SIZE: usize = 32;
/// Sub-samples per pixel side when rendering (anti-aliasing).
const SUPER: usize = 3;

crate::named_enum! {
    "face domain";
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    pub enum Domain {
        /// Adult faces of every look, with a few babies, sunglasses and faded photos.
        Source = "source",
        /// Every face wears dark sunglasses.
        Sunglasses = "sunglasses",
        /// Baby proportions: a big round head, low big eyes, a small nose and mouth.
        Baby = "baby",
        /// Pencil-line drawings on white paper.
        Sketch = "sketch",
    }
}

impl Domain {
    /// The three adaptation targets.
    pub const TARGETS: [Domain; 3] = [Domain::Sunglasses, Domain::Baby, Domain::Sketch];

    fn stream(self) -> u64 {
        match self {
            Domain::Source => 0xFACE_0000,
            Domain::Sunglasses => 0x5C1A_0000,
            Domain::Baby => 0xBABE_0000,
            Domain::Sketch => 0x5E7C_0000,
        }
    }
}

/// Every drawn attribute of one face, in units of the image side.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Face {
    /// 0 adult … 1 baby: head roundness and size, feature height and size.
    pub babyness: f32,
    pub sunglasses: bool,
    /// 0 colour … 1 grey (faded photo).
    pub fade: f32,
    pub sketch: bool,
    pub centre: [f32; 2],
    pub half_width: f32,
    pub half_height: f32,
    pub skin: [f32; 3],
    pub hair: [f32; 3],
    /// Where the hair ends on the forehead (fraction of the face height from its top).
    pub hairline: f32,
    /// Hair below the ears.
    pub long_hair: bool,
    pub background: [f32; 3],
    /// Vertical light gradient of the background.
    pub light: f32,
    pub eye_gap: f32,
    pub eye_size: f32,
    pub iris: [f32; 3],
    pub brow_tilt: f32,
    pub nose_length: f32,
    pub mouth_width: f32,
    /// Positive smiles, negative frowns.
    pub smile: f32,
    pub lips: [f32; 3],
}

fn mix(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [0, 1, 2].map(|i| a[i] + (b[i] - a[i]) * t)
}

fn hsv(h: f32, s: f32, v: f32) -> [f32; 3] {
    let h = h.rem_euclid(1.0) * 6.0;
    let c = v * s;
    let x = c * (1.0 - ((h % 2.0) - 1.0).abs());
    let (r, g, b) = match h as usize {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [r + m, g + m, b + m]
}

impl Face {
    /// Face `index` of `domain`; `seed` picks another set of the same domain.
    pub fn sample(domain: Domain, index: u64, seed: u64) -> Face {
        let mut rng = StdRng::seed_from_u64(domain.stream() ^ seed.rotate_left(32) ^ index);
        let r = |rng: &mut StdRng, lo: f32, hi: f32| rng.random_range(lo..hi);
        // FFHQ-like rarity of the target attributes in the source.
        let babyness = match domain {
            Domain::Baby => r(&mut rng, 0.8, 1.0),
            _ if rng.random::<f32>() < 0.15 => r(&mut rng, 0.6, 1.0),
            _ => r(&mut rng, 0.0, 0.3),
        };
        let sunglasses = match domain {
            Domain::Sunglasses => true,
            Domain::Source => rng.random::<f32>() < 0.15,
            _ => false,
        };
        let fade = if domain == Domain::Source && rng.random::<f32>() < 0.1 {
            r(&mut rng, 0.7, 1.0)
        } else {
            r(&mut rng, 0.0, 0.15)
        };
        let tone = r(&mut rng, 0.0, 1.0);
        let skin = mix([0.96, 0.82, 0.7], [0.42, 0.27, 0.17], tone);
        let skin = mix(skin, [1.0, 0.86, 0.82], babyness * 0.4);
        let hair = match rng.random_range(0..5) {
            0 => [0.08, 0.06, 0.05],
            1 => [0.35, 0.2, 0.1],
            2 => [0.85, 0.7, 0.35],
            3 => [0.6, 0.25, 0.1],
            _ => hsv(r(&mut rng, 0.0, 1.0), 0.15, r(&mut rng, 0.3, 0.8)),
        };
        let background = hsv(
            r(&mut rng, 0.0, 1.0),
            r(&mut rng, 0.1, 0.6),
            r(&mut rng, 0.35, 0.95),
        );
        let size = 1.0 + babyness * 0.18;
        Face {
            babyness,
            sunglasses,
            fade,
            sketch: domain == Domain::Sketch,
            centre: [r(&mut rng, 0.45, 0.55), r(&mut rng, 0.5, 0.58)],
            half_width: r(&mut rng, 0.24, 0.31) * size * (1.0 + babyness * 0.12),
            half_height: r(&mut rng, 0.32, 0.38) * size * (1.0 - babyness * 0.08),
            skin,
            hair,
            hairline: r(&mut rng, 0.2, 0.38) * (1.0 - babyness * 0.7),
            long_hair: babyness < 0.5 && rng.random::<f32>() < 0.45,
            background,
            light: r(&mut rng, -0.15, 0.15),
            eye_gap: r(&mut rng, 0.32, 0.42),
            eye_size: r(&mut rng, 0.065, 0.085) * (1.0 + babyness * 0.45),
            iris: match rng.random_range(0..3) {
                0 => [0.25, 0.15, 0.08],
                1 => [0.2, 0.4, 0.7],
                _ => [0.25, 0.5, 0.3],
            },
            brow_tilt: r(&mut rng, -0.25, 0.25),
            nose_length: r(&mut rng, 0.14, 0.22) * (1.0 - babyness * 0.45),
            mouth_width: r(&mut rng, 0.26, 0.4) * (1.0 - babyness * 0.35),
            smile: r(&mut rng, -0.3, 1.0),
            lips: mix([0.75, 0.3, 0.3], [0.55, 0.2, 0.25], r(&mut rng, 0.0, 1.0)),
        }
    }

    /// The colour at `(u, v)` in the unit square, painter's order from the back.
    fn shade(&self, u: f32, v: f32) -> [f32; 3] {
        let [cx, cy] = self.centre;
        // Face coordinates: the head ellipse is the unit disc.
        let fx = (u - cx) / self.half_width;
        let fy = (v - cy) / self.half_height;
        let head = fx * fx + fy * fy;
        let mut c = mix(self.background, [1.0; 3], (v - 0.5) * self.light);
        let hair_back = (fx / 1.15).powi(2) + ((fy + 0.08) / 1.12).powi(2);
        if hair_back < 1.0 && (self.long_hair || fy < 0.1) {
            c = mix(self.hair, [0.0; 3], 0.15);
        }
        if self.long_hair && fx.abs() < 1.2 && fy > 0.0 && fy < 1.3 && fx.abs() > 0.75 {
            c = mix(self.hair, [0.0; 3], 0.15);
        }
        // Neck.
        if fx.abs() < 0.42 && fy > 0.7 && v < 1.0 {
            c = mix(self.skin, [0.0; 3], 0.15);
        }
        if head < 1.0 {
            c = self.skin;
            // Hair on the top of the head, down to the hairline.
            let top = -1.0 + 2.0 * self.hairline;
            if fy < top + 0.12 * fx * fx && head > 0.02 {
                c = self.hair;
            }
            // Features lie lower and closer on a baby.
            let eye_y = -0.1 + 0.25 * self.babyness;
            let eye_r = self.eye_size / self.half_width;
            for side in [-1.0f32, 1.0] {
                let ex = fx - side * self.eye_gap / self.half_width * 0.5;
                let ey = (fy - eye_y) * self.half_height / self.half_width;
                // Brow above the eye.
                let by = ey + 1.9 * eye_r + side * self.brow_tilt * ex;
                if self.babyness < 0.6 && ex.abs() < eye_r * 1.4 && by.abs() < eye_r * 0.35 {
                    c = mix(self.hair, [0.0; 3], 0.3);
                }
                let d = (ex / 1.3).powi(2) + ey * ey;
                if d < eye_r * eye_r {
                    c = [0.96, 0.96, 0.94];
                    if ex * ex + ey * ey < (eye_r * 0.62).powi(2) {
                        c = self.iris;
                    }
                    if ex * ex + ey * ey < (eye_r * 0.3).powi(2) {
                        c = [0.03; 3];
                    }
                }
                if self.sunglasses {
                    let lens = (ex / 1.45).powi(4) + (ey / 1.05).powi(4);
                    if lens < (eye_r * 1.25).powi(4) {
                        c = [0.04, 0.04, 0.06];
                    }
                }
            }
            if self.sunglasses {
                let bridge_y = (fy - eye_y) * self.half_height / self.half_width;
                if fx.abs() < 0.2 && bridge_y.abs() < 0.05 {
                    c = [0.04, 0.04, 0.06];
                }
            }
            // Nose: a darker wedge below the eyes.
            let nose_top = eye_y + 0.1;
            let nose_len = self.nose_length / self.half_height;
            let t = (fy - nose_top) / nose_len;
            if (0.0..1.0).contains(&t) && fx.abs() < 0.05 + 0.12 * t {
                c = mix(self.skin, [0.2, 0.1, 0.05], 0.25 + 0.2 * t);
            }
            // Mouth: an arc whose bend is the smile.
            let mouth_y = nose_top + nose_len + 0.14 - 0.04 * self.babyness;
            let mw = self.mouth_width / self.half_width;
            let mx = fx / mw;
            let arc = fy - mouth_y - self.smile * 0.12 * (1.0 - 4.0 * mx * mx);
            if mx.abs() < 0.5 && arc.abs() < 0.05 + 0.03 * (1.0 - 4.0 * mx * mx) {
                c = self.lips;
            }
        }
        let grey = 0.3 * c[0] + 0.59 * c[1] + 0.11 * c[2];
        mix(c, [grey; 3], self.fade)
    }

    /// RGB bytes, `SIZE × SIZE × 3`, row-major.
    pub fn render(&self) -> Vec<u8> {
        let side = SIZE * SUPER;
        let mut fine = vec![[0f32; 3]; side * side];
        for y in 0..side {
            for x in 0..side {
                let u = (x as f32 + 0.5) / side as f32;
                let v = (y as f32 + 0.5) / side as f32;
                fine[y * side + x] = self.shade(u, v);
            }
        }
        if self.sketch {
            fine = pencil(&fine, side);
        }
        let mut rgb = Vec::with_capacity(SIZE * SIZE * 3);
        for y in 0..SIZE {
            for x in 0..SIZE {
                let mut sum = [0f32; 3];
                for sy in 0..SUPER {
                    for sx in 0..SUPER {
                        let p = fine[(y * SUPER + sy) * side + x * SUPER + sx];
                        for i in 0..3 {
                            sum[i] += p[i];
                        }
                    }
                }
                let n = (SUPER * SUPER) as f32;
                rgb.extend(sum.map(|s| ((s / n).clamp(0.0, 1.0) * 255.0).round() as u8));
            }
        }
        rgb
    }
}

/// A pencil drawing of a colour image: dark strokes where the luminance changes (Sobel),
/// a light wash for dark regions, on warm white paper.
fn pencil(image: &[[f32; 3]], side: usize) -> Vec<[f32; 3]> {
    let lum: Vec<f32> = image
        .iter()
        .map(|c| 0.3 * c[0] + 0.59 * c[1] + 0.11 * c[2])
        .collect();
    let at = |x: isize, y: isize| {
        let x = x.clamp(0, side as isize - 1) as usize;
        let y = y.clamp(0, side as isize - 1) as usize;
        lum[y * side + x]
    };
    let paper = [0.97, 0.96, 0.92];
    let mut out = vec![paper; side * side];
    for y in 0..side as isize {
        for x in 0..side as isize {
            let gx = at(x + 1, y - 1) + 2.0 * at(x + 1, y) + at(x + 1, y + 1)
                - at(x - 1, y - 1)
                - 2.0 * at(x - 1, y)
                - at(x - 1, y + 1);
            let gy = at(x - 1, y + 1) + 2.0 * at(x, y + 1) + at(x + 1, y + 1)
                - at(x - 1, y - 1)
                - 2.0 * at(x, y - 1)
                - at(x + 1, y - 1);
            let stroke = ((gx * gx + gy * gy).sqrt() * 1.6).min(1.0);
            let wash = (1.0 - at(x, y)) * 0.25;
            let ink = (stroke + wash).min(1.0);
            out[y as usize * side + x as usize] = mix(paper, [0.18, 0.18, 0.2], ink);
        }
    }
    out
}

/// Images `0..count` of a domain as RGB bytes.
pub fn render_many(domain: Domain, start: u64, count: usize, seed: u64) -> Vec<Vec<u8>> {
    use rayon::prelude::*;
    (start..start + count as u64)
        .into_par_iter()
        .map(|i| Face::sample(domain, i, seed).render())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean_channel_spread(rgb: &[u8]) -> f32 {
        rgb.chunks(3)
            .map(|p| {
                let max = *p.iter().max().unwrap() as f32;
                let min = *p.iter().min().unwrap() as f32;
                max - min
            })
            .sum::<f32>()
            / (rgb.len() / 3) as f32
    }

    #[test]
    fn faces_are_deterministic_and_vary() {
        let a = Face::sample(Domain::Source, 3, 0).render();
        assert_eq!(a, Face::sample(Domain::Source, 3, 0).render());
        assert_ne!(a, Face::sample(Domain::Source, 4, 0).render());
        assert_ne!(a, Face::sample(Domain::Source, 3, 1).render());
        assert_eq!(a.len(), SIZE * SIZE * 3);
    }

    #[test]
    fn domains_draw_their_attribute() {
        let n = 200;
        let count =
            |d: Domain, f: fn(&Face) -> bool| (0..n).filter(|&i| f(&Face::sample(d, i, 0))).count();
        assert_eq!(count(Domain::Sunglasses, |f| f.sunglasses), n as usize);
        let rare = count(Domain::Source, |f| f.sunglasses);
        assert!((10..60).contains(&rare), "{rare} sunglasses in the source");
        assert_eq!(count(Domain::Baby, |f| f.babyness > 0.6), n as usize);
        // Sketches are nearly grey; source faces are in colour.
        let sketch = mean_channel_spread(&Face::sample(Domain::Sketch, 0, 0).render());
        let colour = mean_channel_spread(&Face::sample(Domain::Source, 0, 0).render());
        assert!(sketch < 12.0 && colour > 20.0, "{sketch} vs {colour}");
    }
}
