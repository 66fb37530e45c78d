//! Any image as the one-shot target: PNG or JPEG, centre-cropped to a square and resized to
//! the GAN's side. Conversions are stated, not silent: grey images become RGB, transparency
//! is laid on white. Unreadable or tiny files are errors that name the file.

use std::path::Path;

use anyhow::{bail, Context, Result};
use image::imageops::FilterType;
use image::{DynamicImage, GenericImageView};

use super::faces::SIZE;

/// The smallest side accepted: below it there is nothing to crop a face from.
pub const MIN_SIDE: u32 = SIZE as u32;

#[derive(Debug)]
pub struct Reference {
    /// `SIZE × SIZE × 3` bytes.
    pub rgb: Vec<u8>,
    /// What was done to the file beyond cropping and resizing, for the user to read.
    pub conversions: Vec<String>,
    /// The file's own size.
    pub original: (u32, u32),
}

pub fn load_reference(path: &Path) -> Result<Reference> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    decode_reference(&bytes).with_context(|| format!("{}", path.display()))
}

/// [`load_reference`] on the file's bytes (a dropped file's, too).
pub fn decode_reference(bytes: &[u8]) -> Result<Reference> {
    let format =
        image::guess_format(bytes).map_err(|_| anyhow::anyhow!("not a PNG or JPEG image"))?;
    if !matches!(format, image::ImageFormat::Png | image::ImageFormat::Jpeg) {
        bail!("a {format:?} image; open a PNG or JPEG");
    }
    let decoded = image::load_from_memory_with_format(bytes, format)
        .map_err(|e| anyhow::anyhow!("not a readable {format:?} image ({e})"))?;
    let (w, h) = decoded.dimensions();
    if w < MIN_SIDE || h < MIN_SIDE {
        bail!("{w}×{h} pixels is too small; the target needs at least {MIN_SIDE}×{MIN_SIDE}");
    }
    let mut conversions = Vec::new();
    let colour = decoded.color();
    if !colour.has_color() {
        conversions.push("grey image converted to RGB (the GAN draws colour)".to_string());
    }
    let rgb = if colour.has_alpha() {
        conversions.push("transparency laid on white".to_string());
        on_white(&decoded)
    } else {
        decoded.to_rgb8()
    };
    let side = w.min(h);
    let cropped =
        image::imageops::crop_imm(&rgb, (w - side) / 2, (h - side) / 2, side, side).to_image();
    if w != h {
        conversions.push(format!("centre-cropped from {w}×{h} to {side}×{side}"));
    }
    let small = image::imageops::resize(&cropped, SIZE as u32, SIZE as u32, FilterType::Triangle);
    Ok(Reference {
        rgb: small.into_raw(),
        conversions,
        original: (w, h),
    })
}

fn on_white(image: &DynamicImage) -> image::RgbImage {
    let rgba = image.to_rgba8();
    image::RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let p = rgba.get_pixel(x, y).0;
        let a = p[3] as f32 / 255.0;
        image::Rgb([0, 1, 2].map(|i| (p[i] as f32 * a + 255.0 * (1.0 - a)).round() as u8))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(image: DynamicImage, format: image::ImageFormat) -> Vec<u8> {
        let mut bytes = Vec::new();
        image
            .write_to(&mut std::io::Cursor::new(&mut bytes), format)
            .unwrap();
        bytes
    }

    #[test]
    fn a_wide_colour_png_is_cropped_to_its_centre() {
        // Left third red, middle blue, right third red: the crop keeps blue.
        let img = image::RgbImage::from_fn(96, 32, |x, _| {
            if (32..64).contains(&x) {
                image::Rgb([0, 0, 255])
            } else {
                image::Rgb([255, 0, 0])
            }
        });
        let r = decode_reference(&encode(img.into(), image::ImageFormat::Png)).unwrap();
        assert_eq!(r.rgb.len(), SIZE * SIZE * 3);
        assert!(r.rgb.chunks(3).all(|p| p[2] > 200 && p[0] < 50));
        assert_eq!(r.conversions.len(), 1, "{:?}", r.conversions);
    }

    #[test]
    fn grey_and_transparent_images_say_how_they_were_converted() {
        let grey = image::GrayImage::from_pixel(40, 40, image::Luma([90]));
        let r = decode_reference(&encode(grey.into(), image::ImageFormat::Png)).unwrap();
        assert!(r.conversions[0].contains("grey"));
        assert!(r.rgb.chunks(3).all(|p| p == [90, 90, 90]));
        let clear = image::RgbaImage::from_pixel(40, 40, image::Rgba([0, 0, 0, 0]));
        let r = decode_reference(&encode(clear.into(), image::ImageFormat::Png)).unwrap();
        assert!(r.conversions.iter().any(|c| c.contains("white")));
        assert!(r.rgb.iter().all(|&v| v == 255));
    }

    #[test]
    fn jpeg_tiny_and_broken_files() {
        let img = image::RgbImage::from_pixel(64, 48, image::Rgb([10, 200, 30]));
        let r = decode_reference(&encode(img.into(), image::ImageFormat::Jpeg)).unwrap();
        assert_eq!(r.original, (64, 48));
        let tiny = image::RgbImage::from_pixel(20, 20, image::Rgb([1, 2, 3]));
        let e = decode_reference(&encode(tiny.into(), image::ImageFormat::Png)).unwrap_err();
        assert!(e.to_string().contains("too small"), "{e}");
        let e = decode_reference(b"not an image at all").unwrap_err();
        assert!(e.to_string().contains("not a PNG or JPEG"), "{e}");
        let mut png = encode(
            image::RgbImage::from_pixel(40, 40, image::Rgb([0, 0, 0])).into(),
            image::ImageFormat::Png,
        );
        png.truncate(60);
        let e = decode_reference(&png).unwrap_err();
        assert!(e.to_string().contains("not a readable"), "{e}");
    }
}
