//! PNG contact sheets of scenes with their captions, drawn with a built-in 5×7 pixel font
//! (captions are lower-case words, so a small glyph set covers them without a font file).

use std::path::Path;

use anyhow::Result;

use super::scenes::SIZE;

const GLYPH_W: usize = 5;
const GLYPH_H: usize = 7;
/// Image magnification in a cell.
const ZOOM: usize = 3;
const CELL_W: usize = SIZE * ZOOM;
const PAD: usize = 6;
const LINE_H: usize = GLYPH_H + 3;
const CHARS_PER_LINE: usize = CELL_W / (GLYPH_W + 1);

/// One cell: a scene's RGB bytes and captions, each in its colour.
pub struct Cell {
    pub rgb: Vec<u8>,
    pub captions: Vec<(String, [u8; 3])>,
}

fn glyph(c: char) -> [&'static str; GLYPH_H] {
    match c.to_ascii_lowercase() {
        'a' => [
            ".....", ".....", ".###.", "....#", ".####", "#...#", ".####",
        ],
        'b' => [
            "#....", "#....", "####.", "#...#", "#...#", "#...#", "####.",
        ],
        'c' => [
            ".....", ".....", ".####", "#....", "#....", "#....", ".####",
        ],
        'd' => [
            "....#", "....#", ".####", "#...#", "#...#", "#...#", ".####",
        ],
        'e' => [
            ".....", ".....", ".###.", "#...#", "#####", "#....", ".###.",
        ],
        'f' => [
            "..##.", ".#...", "####.", ".#...", ".#...", ".#...", ".#...",
        ],
        'g' => [
            ".....", ".####", "#...#", "#...#", ".####", "....#", ".###.",
        ],
        'h' => [
            "#....", "#....", "####.", "#...#", "#...#", "#...#", "#...#",
        ],
        'i' => [
            "..#..", ".....", ".##..", "..#..", "..#..", "..#..", ".###.",
        ],
        'j' => [
            "...#.", ".....", "..##.", "...#.", "...#.", "#..#.", ".##..",
        ],
        'k' => [
            "#....", "#....", "#..#.", "#.#..", "##...", "#.#..", "#..#.",
        ],
        'l' => [
            ".##..", "..#..", "..#..", "..#..", "..#..", "..#..", ".###.",
        ],
        'm' => [
            ".....", ".....", "##.#.", "#.#.#", "#.#.#", "#.#.#", "#.#.#",
        ],
        'n' => [
            ".....", ".....", "####.", "#...#", "#...#", "#...#", "#...#",
        ],
        'o' => [
            ".....", ".....", ".###.", "#...#", "#...#", "#...#", ".###.",
        ],
        'p' => [
            ".....", "####.", "#...#", "#...#", "####.", "#....", "#....",
        ],
        'q' => [
            ".....", ".####", "#...#", "#...#", ".####", "....#", "....#",
        ],
        'r' => [
            ".....", ".....", "#.##.", "##..#", "#....", "#....", "#....",
        ],
        's' => [
            ".....", ".....", ".####", "#....", ".###.", "....#", "####.",
        ],
        't' => [
            ".#...", ".#...", "####.", ".#...", ".#...", ".#..#", "..##.",
        ],
        'u' => [
            ".....", ".....", "#...#", "#...#", "#...#", "#..##", ".##.#",
        ],
        'v' => [
            ".....", ".....", "#...#", "#...#", "#...#", ".#.#.", "..#..",
        ],
        'w' => [
            ".....", ".....", "#...#", "#...#", "#.#.#", "#.#.#", ".#.#.",
        ],
        'x' => [
            ".....", ".....", "#...#", ".#.#.", "..#..", ".#.#.", "#...#",
        ],
        'y' => [
            ".....", "#...#", "#...#", "#...#", ".####", "....#", ".###.",
        ],
        'z' => [
            ".....", ".....", "#####", "...#.", "..#..", ".#...", "#####",
        ],
        '0' => [
            ".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###.",
        ],
        '1' => [
            "..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###.",
        ],
        '2' => [
            ".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####",
        ],
        '3' => [
            "####.", "....#", "....#", ".###.", "....#", "....#", "####.",
        ],
        '4' => [
            "...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#.",
        ],
        '5' => [
            "#####", "#....", "####.", "....#", "....#", "#...#", ".###.",
        ],
        '6' => [
            ".###.", "#....", "#....", "####.", "#...#", "#...#", ".###.",
        ],
        '7' => [
            "#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#...",
        ],
        '8' => [
            ".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###.",
        ],
        '9' => [
            ".###.", "#...#", "#...#", ".####", "....#", "....#", ".###.",
        ],
        '.' => [
            ".....", ".....", ".....", ".....", ".....", ".##..", ".##..",
        ],
        ':' => [
            ".....", ".##..", ".##..", ".....", ".##..", ".##..", ".....",
        ],
        '-' => [
            ".....", ".....", ".....", "#####", ".....", ".....", ".....",
        ],
        '@' => [
            ".###.", "#...#", "#.###", "#.#.#", "#.###", "#....", ".###.",
        ],
        '%' => [
            "##...", "##..#", "...#.", "..#..", ".#...", "#..##", "...##",
        ],
        '(' => [
            "...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#.",
        ],
        ')' => [
            ".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#...",
        ],
        '/' => [
            ".....", "....#", "...#.", "..#..", ".#...", "#....", ".....",
        ],
        ' ' => ["....."; GLYPH_H],
        _ => [
            "#####", "#...#", "#...#", "#...#", "#...#", "#...#", "#####",
        ],
    }
}

/// Words wrapped to `width` characters.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match lines.last_mut() {
            Some(line) if line.len() + 1 + word.len() <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    lines
}

struct Canvas {
    width: usize,
    pixels: Vec<u8>,
}

impl Canvas {
    fn put(&mut self, x: usize, y: usize, rgb: [u8; 3]) {
        let at = 3 * (y * self.width + x);
        if let Some(p) = self.pixels.get_mut(at..at + 3) {
            p.copy_from_slice(&rgb);
        }
    }

    fn text(&mut self, x: usize, y: usize, line: &str, rgb: [u8; 3]) {
        for (k, c) in line.chars().enumerate() {
            for (row, bits) in glyph(c).iter().enumerate() {
                for (col, b) in bits.bytes().enumerate() {
                    if b == b'#' {
                        self.put(x + k * (GLYPH_W + 1) + col, y + row, rgb);
                    }
                }
            }
        }
    }
}

/// Cells in rows of `columns`, each the magnified image with its captions wrapped below.
pub fn render(cells: &[Cell], columns: usize) -> (usize, usize, Vec<u8>) {
    let columns = columns.clamp(1, cells.len().max(1));
    let lines = |c: &Cell| -> usize {
        c.captions
            .iter()
            .map(|(t, _)| wrap(t, CHARS_PER_LINE).len().max(1))
            .sum()
    };
    let text_h = cells.iter().map(lines).max().unwrap_or(0) * LINE_H;
    let cell_h = CELL_W + PAD + text_h;
    let rows = cells.len().div_ceil(columns);
    let width = PAD + columns * (CELL_W + PAD);
    let height = PAD + rows * (cell_h + PAD);
    let mut canvas = Canvas {
        width,
        pixels: vec![255; 3 * width * height],
    };
    for (i, cell) in cells.iter().enumerate() {
        let x0 = PAD + (i % columns) * (CELL_W + PAD);
        let y0 = PAD + (i / columns) * (cell_h + PAD);
        for y in 0..CELL_W {
            for x in 0..CELL_W {
                let at = 3 * ((y / ZOOM) * SIZE + x / ZOOM);
                if let Some(p) = cell.rgb.get(at..at + 3) {
                    canvas.put(x0 + x, y0 + y, [p[0], p[1], p[2]]);
                }
            }
        }
        let mut y = y0 + CELL_W + PAD;
        for (caption, rgb) in &cell.captions {
            for line in wrap(caption, CHARS_PER_LINE) {
                canvas.text(x0, y, &line, *rgb);
                y += LINE_H;
            }
        }
    }
    (width, height, canvas.pixels)
}

/// [`render`] written as a PNG (atomically).
pub fn write_png(path: &Path, cells: &[Cell], columns: usize) -> Result<()> {
    let (w, h, pixels) = render(cells, columns);
    crate::fs::write_png(path, w, h, pixels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captions_wrap_and_draw_in_their_colour() {
        assert_eq!(
            wrap("a red circle next to a blue square", 12),
            ["a red circle", "next to a", "blue square"]
        );
        let cell = Cell {
            rgb: vec![10; 3 * SIZE * SIZE],
            captions: vec![("a red circle".into(), [200, 0, 0])],
        };
        let (w, h, px) = render(&[cell], 4);
        assert_eq!(w, CELL_W + 2 * PAD);
        assert_eq!(px.len(), 3 * w * h);
        assert!(px.chunks(3).any(|p| p == [200, 0, 0]), "text drawn");
        assert!(px.chunks(3).any(|p| p == [10, 10, 10]), "image drawn");
    }
}
