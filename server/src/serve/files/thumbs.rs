//! Thumbs in PocketBase's sizes, made with the `image` crate:
//!
//! | size    | result                                              |
//! |---------|-----------------------------------------------------|
//! | `WxH`   | resized to cover W×H, then cropped to it (centre)   |
//! | `WxHt`  | the same, cropped from the top                      |
//! | `WxHb`  | the same, cropped from the bottom                   |
//! | `WxHf`  | fitted inside W×H, never enlarged                   |
//! | `0xH`   | H high, the width keeping the aspect ratio          |
//! | `Wx0`   | W wide, the height keeping the aspect ratio         |
//!
//! A thumb is encoded in its image's own format (PNG, JPEG, GIF, WebP).

use image::imageops::FilterType;
use image::{DynamicImage, ImageFormat};
use std::io::Cursor;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Cover the box, crop around the centre.
    Center,
    Top,
    Bottom,
    /// Fit inside the box.
    Fit,
    /// One side given (the other is 0).
    Scale,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thumb {
    pub width: u32,
    pub height: u32,
    pub mode: Mode,
}

/// The size every file field allows besides its own `thumbs`.
pub const DEFAULT: &str = "100x100";

/// The most pixels a side of a thumb may have.
const MAX_SIDE: u32 = 4096;

impl Thumb {
    /// `100x100`, `100x100t`, `0x50`, ... (`None` if it is none of them).
    pub fn parse(s: &str) -> Option<Thumb> {
        let (w, rest) = s.split_once('x')?;
        let (h, mode) = match rest.as_bytes().last()? {
            b't' => (&rest[..rest.len() - 1], Mode::Top),
            b'b' => (&rest[..rest.len() - 1], Mode::Bottom),
            b'f' => (&rest[..rest.len() - 1], Mode::Fit),
            _ => (rest, Mode::Center),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(w) || !digits(h) {
            return None;
        }
        let (width, height): (u32, u32) = (w.parse().ok()?, h.parse().ok()?);
        if width > MAX_SIDE || height > MAX_SIDE || (width == 0 && height == 0) {
            return None;
        }
        // One side 0: scaled to the other, whatever the suffix (as
        // PocketBase's resize does).
        let mode = if width == 0 || height == 0 {
            Mode::Scale
        } else {
            mode
        };
        Some(Thumb {
            width,
            height,
            mode,
        })
    }

    /// The thumb of an image's bytes, in the image's format; `None` if the
    /// bytes are not an image this can read.
    pub fn render(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let format = image::guess_format(bytes).ok()?;
        if !matches!(
            format,
            ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Gif | ImageFormat::WebP
        ) {
            return None;
        }
        let img = image::load_from_memory_with_format(bytes, format).ok()?;
        let out = self.apply(img);
        let mut buf = Cursor::new(Vec::new());
        out.write_to(&mut buf, format).ok()?;
        Some(buf.into_inner())
    }

    fn apply(&self, img: DynamicImage) -> DynamicImage {
        let (w, h) = (self.width, self.height);
        let (sw, sh) = (img.width().max(1), img.height().max(1));
        let filter = FilterType::Lanczos3;
        match self.mode {
            Mode::Scale => {
                let (tw, th) = if w == 0 {
                    (scaled(sw, h, sh), h)
                } else {
                    (w, scaled(sh, w, sw))
                };
                img.resize_exact(tw, th, filter)
            }
            Mode::Fit => {
                if sw <= w && sh <= h {
                    img
                } else {
                    img.resize(w, h, filter)
                }
            }
            Mode::Center | Mode::Top | Mode::Bottom => {
                // Cover the box, then cut it out.
                let scale = f64::max(w as f64 / sw as f64, h as f64 / sh as f64);
                let cw = ((sw as f64 * scale).round() as u32).max(w);
                let ch = ((sh as f64 * scale).round() as u32).max(h);
                let covered = img.resize_exact(cw, ch, filter);
                let x = (cw - w) / 2;
                let y = match self.mode {
                    Mode::Top => 0,
                    Mode::Bottom => ch - h,
                    _ => (ch - h) / 2,
                };
                covered.crop_imm(x, y, w, h)
            }
        }
    }
}

/// `side * want / of`, rounded, at least 1.
fn scaled(side: u32, want: u32, of: u32) -> u32 {
    ((side as f64 * want as f64 / of as f64).round() as u32).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 128]));
        let mut buf = Cursor::new(Vec::new());
        DynamicImage::ImageRgb8(img)
            .write_to(&mut buf, ImageFormat::Png)
            .unwrap();
        buf.into_inner()
    }

    fn size_of(bytes: &[u8]) -> (u32, u32) {
        let img = image::load_from_memory(bytes).unwrap();
        (img.width(), img.height())
    }

    #[test]
    fn sizes_parse_as_pocketbase_writes_them() {
        let t = |w, h, mode| {
            Some(Thumb {
                width: w,
                height: h,
                mode,
            })
        };
        assert_eq!(Thumb::parse("100x100"), t(100, 100, Mode::Center));
        assert_eq!(Thumb::parse("100x50t"), t(100, 50, Mode::Top));
        assert_eq!(Thumb::parse("100x50b"), t(100, 50, Mode::Bottom));
        assert_eq!(Thumb::parse("100x50f"), t(100, 50, Mode::Fit));
        assert_eq!(Thumb::parse("0x50"), t(0, 50, Mode::Scale));
        assert_eq!(Thumb::parse("50x0"), t(50, 0, Mode::Scale));
        assert_eq!(Thumb::parse("0x50t"), t(0, 50, Mode::Scale));
        for bad in [
            "", "x", "100", "0x0", "ax1", "1xb", "10x10z", "0x0f", "-1x5", "100X100", "99999x1",
            "1x1x1",
        ] {
            assert_eq!(Thumb::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn thumbs_have_the_asked_dimensions() {
        let src = png(300, 200);
        let dims = |s: &str| size_of(&Thumb::parse(s).unwrap().render(&src).unwrap());
        assert_eq!(dims("100x100"), (100, 100));
        assert_eq!(dims("100x50t"), (100, 50));
        assert_eq!(dims("50x100b"), (50, 100));
        assert_eq!(dims("100x100f"), (100, 67));
        assert_eq!(dims("600x600f"), (300, 200), "fit never enlarges");
        assert_eq!(dims("0x50"), (75, 50));
        assert_eq!(dims("60x0"), (60, 40));
        assert_eq!(Thumb::parse("10x10").unwrap().render(b"plain text"), None);
    }

    #[test]
    fn thumbs_keep_their_format() {
        let img = DynamicImage::ImageRgb8(image::RgbImage::from_fn(40, 30, |x, _| {
            image::Rgb([x as u8, 0, 0])
        }));
        for format in [
            ImageFormat::Png,
            ImageFormat::Jpeg,
            ImageFormat::Gif,
            ImageFormat::WebP,
        ] {
            let mut buf = Cursor::new(Vec::new());
            img.write_to(&mut buf, format).unwrap();
            let out = Thumb::parse("10x10")
                .unwrap()
                .render(buf.get_ref())
                .unwrap();
            assert_eq!(image::guess_format(&out).unwrap(), format);
            assert_eq!(size_of(&out), (10, 10));
        }
    }

    #[test]
    fn top_and_bottom_crops_keep_their_edge() {
        // A 100x300 image, red on top, blue at the bottom.
        let img = image::RgbImage::from_fn(100, 300, |_, y| {
            if y < 150 {
                image::Rgb([255, 0, 0])
            } else {
                image::Rgb([0, 0, 255])
            }
        });
        let mut buf = Cursor::new(Vec::new());
        DynamicImage::ImageRgb8(img)
            .write_to(&mut buf, ImageFormat::Png)
            .unwrap();
        let src = buf.into_inner();
        let pixel = |s: &str| {
            let out = Thumb::parse(s).unwrap().render(&src).unwrap();
            image::load_from_memory(&out)
                .unwrap()
                .to_rgb8()
                .get_pixel(5, 5)
                .0
        };
        assert_eq!(pixel("100x100t"), [255, 0, 0]);
        assert_eq!(pixel("100x100b"), [0, 0, 255]);
    }
}
