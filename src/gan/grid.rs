//! Sample grids: square RGB images tiled with a gap, written as PNG.

use std::path::Path;

use anyhow::Result;

const GAP: usize = 2;

/// `images` (each `side × side × 3` bytes) in rows of `columns`, magnified `zoom` times, on
/// white: `(width, height, rgb)`.
pub fn tile(
    images: &[Vec<u8>],
    side: usize,
    columns: usize,
    zoom: usize,
) -> (usize, usize, Vec<u8>) {
    let columns = columns.clamp(1, images.len().max(1));
    let rows = images.len().div_ceil(columns);
    let cell = side * zoom;
    let width = GAP + columns * (cell + GAP);
    let height = GAP + rows * (cell + GAP);
    let mut pixels = vec![255u8; 3 * width * height];
    for (i, image) in images.iter().enumerate() {
        let x0 = GAP + (i % columns) * (cell + GAP);
        let y0 = GAP + (i / columns) * (cell + GAP);
        for y in 0..cell {
            for x in 0..cell {
                let from = 3 * ((y / zoom) * side + x / zoom);
                let to = 3 * ((y0 + y) * width + x0 + x);
                if let Some(p) = image.get(from..from + 3) {
                    pixels[to..to + 3].copy_from_slice(p);
                }
            }
        }
    }
    (width, height, pixels)
}

/// [`tile`] written as a PNG (atomically).
pub fn write_png(
    path: &Path,
    images: &[Vec<u8>],
    side: usize,
    columns: usize,
    zoom: usize,
) -> Result<()> {
    let (w, h, pixels) = tile(images, side, columns, zoom);
    crate::fs::write_png(path, w, h, pixels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_land_in_their_cells() {
        let red = [200u8, 0, 0].repeat(4);
        let blue = [0u8, 0, 200].repeat(4);
        let (w, h, px) = tile(&[red, blue.clone(), blue], 2, 2, 3);
        assert_eq!((w, h), (GAP + 2 * (6 + GAP), GAP + 2 * (6 + GAP)));
        let at = |x: usize, y: usize| &px[3 * (y * w + x)..3 * (y * w + x) + 3];
        assert_eq!(at(GAP, GAP), [200, 0, 0]);
        assert_eq!(at(GAP + 8, GAP), [0, 0, 200]);
        assert_eq!(at(GAP + 8, GAP + 8), [255, 255, 255], "no fourth image");
    }
}
