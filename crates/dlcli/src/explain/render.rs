//! How an attribution is drawn: an image's map over the input with a title and a colour
//! bar, a text's characters highlighted by their weights (orange for, blue against).

use std::path::{Path, PathBuf};

use anyhow::Result;
use plotters::prelude::*;

/// How an image's attribution is laid out: the map over the input, or input | map | overlay
/// side by side (pytorch-grad-cam's users' habit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    Overlay,
    Panel,
}

/// An image's attribution to draw.
pub struct Picture<'a> {
    /// The model's input, channel-major.
    pub input: &'a [f32],
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// One value per pixel.
    pub map: &'a [f32],
    /// A signed map is drawn blue (against) - white - red (for), symmetric about 0; an
    /// unsigned one in turbo from its smallest to its largest value.
    pub signed: bool,
    pub title: String,
}

impl Picture<'_> {
    /// The map's value at pixel `i` as a colour, and the values at the colour bar's ends.
    fn heat(&self, i: usize) -> [u8; 3] {
        self.colour(self.map[i])
    }

    fn range(&self) -> (f32, f32) {
        let (lo, hi) = self.map.iter().fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let most = lo.abs().max(hi.abs());
        if self.signed { (-most, most) } else { (lo, hi) }
    }

    fn colour(&self, v: f32) -> [u8; 3] {
        let (lo, hi) = self.range();
        let t = if hi > lo { ((v - lo) / (hi - lo)) as f64 } else { 0.5 };
        let c = match self.signed {
            true => colorous::RED_BLUE.eval_continuous(1.0 - t),
            false => colorous::TURBO.eval_continuous(t),
        };
        [c.r, c.g, c.b]
    }

    /// The input at pixel `i`: grey, or its three channels, scaled to the image's range.
    fn pixel(&self, i: usize, scaled: &[f32]) -> [u8; 3] {
        let at = |c: usize| (scaled[c * self.height * self.width + i] * 255.0).round() as u8;
        if self.channels >= 3 { [at(0), at(1), at(2)] } else { [at(0); 3] }
    }
}

/// The title's font size, in pixels.
const TITLE_SIZE: u32 = 17;

/// `picture` drawn: a title, the panels scaled up by a whole factor to at least 224 pixels a
/// side, and a colour bar with the map's values.
pub fn picture(picture: &Picture, layout: Layout) -> Result<image::RgbImage> {
    crate::plots::register_font();
    let (h, w) = (picture.height, picture.width);
    let scale = 224usize.div_ceil(h.max(w)).max(1);
    let (pw, ph) = (w * scale, h * scale);
    let kinds: &[&str] = match layout {
        Layout::Overlay => &["overlay"],
        Layout::Panel => &["input", "map", "overlay"],
    };
    let title = if picture.title.is_empty() { 8 } else { 36 };
    let (gap, label, bar) = (12, if kinds.len() > 1 { 20 } else { 0 }, 86);
    // Wide enough for the title, whose text may run past the panels.
    let title_width = ("sans-serif", TITLE_SIZE).into_font().box_size(&picture.title).map_or(0, |(w, _)| w as usize);
    let width = (gap + kinds.len() * (pw + gap) + bar).max(gap + title_width + gap);
    let height = title + label + ph + gap;
    let scaled = normalise(picture.input);
    let mut buffer = vec![255u8; width * height * 3];
    let mut put = |x: usize, y: usize, c: [u8; 3]| buffer[(y * width + x) * 3..][..3].copy_from_slice(&c);
    for (k, kind) in kinds.iter().enumerate() {
        let left = gap + k * (pw + gap);
        for y in 0..ph {
            for x in 0..pw {
                let i = (y / scale) * w + x / scale;
                let c = match *kind {
                    "input" => picture.pixel(i, &scaled),
                    "map" => picture.heat(i),
                    _ => {
                        let (g, c) = (picture.pixel(i, &scaled), picture.heat(i));
                        std::array::from_fn(|j| ((g[j] as u16 + c[j] as u16) / 2) as u8)
                    }
                };
                put(left + x, title + label + y, c);
            }
        }
    }
    let bar_left = gap + kinds.len() * (pw + gap);
    let (lo, hi) = picture.range();
    for y in 0..ph {
        let v = hi - (hi - lo) * y as f32 / (ph - 1).max(1) as f32;
        for x in 0..16 {
            put(bar_left + x, title + label + y, picture.colour(v));
        }
    }
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width as u32, height as u32)).into_drawing_area();
        let font = |size: i32| ("sans-serif", size).into_font().color(&BLACK);
        let text =
            |t: String, at: (usize, usize), size| root.draw(&Text::new(t, (at.0 as i32, at.1 as i32), font(size)));
        text(picture.title.clone(), (gap, 9), TITLE_SIZE as i32).map_err(crate::plots::err)?;
        if kinds.len() > 1 {
            for (k, kind) in kinds.iter().enumerate() {
                text(kind.to_string(), (gap + k * (pw + gap), title), 13).map_err(crate::plots::err)?;
            }
        }
        let top = title + label;
        for (v, y) in [(hi, top), ((lo + hi) / 2.0, top + ph / 2 - 6), (lo, top + ph - 12)] {
            text(format!("{v:.3}"), (bar_left + 20, y), 12).map_err(crate::plots::err)?;
        }
        root.present().map_err(crate::plots::err)?;
    }
    Ok(image::RgbImage::from_raw(width as u32, height as u32, buffer).expect("the buffer is width × height × 3"))
}

/// The input alone, scaled up as [`picture`] scales it.
pub fn input(values: &[f32], channels: usize, height: usize, width: usize) -> image::RgbImage {
    let shown = Picture { input: values, channels, height, width, map: &[], signed: false, title: String::new() };
    let scaled = normalise(values);
    let scale = 224usize.div_ceil(height.max(width)).max(1);
    image::RgbImage::from_fn((width * scale) as u32, (height * scale) as u32, |x, y| {
        image::Rgb(shown.pixel((y as usize / scale) * width + x as usize / scale, &scaled))
    })
}

/// Values scaled to [0, 1] (all zeros when constant).
fn normalise(v: &[f32]) -> Vec<f32> {
    let (lo, hi) = v.iter().fold((f32::MAX, f32::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    v.iter().map(|&x| if hi > lo { (x - lo) / (hi - lo) } else { 0.0 }).collect()
}

/// `path` with `suffix` added to its stem and extension `extension`.
pub fn beside(path: &Path, suffix: &str, extension: &str) -> PathBuf {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!("{stem}{suffix}.{extension}"))
}

/// Each weight's share of the largest magnitude, in [-1, 1].
fn shares(weights: &[f64]) -> Vec<f64> {
    let most = weights.iter().fold(f64::MIN_POSITIVE, |m, &w| m.max(w.abs()));
    weights.iter().map(|w| w / most).collect()
}

/// The highlight of a share: orange for positive, blue for negative.
fn highlight(share: f64) -> (u8, u8, u8) {
    if share >= 0.0 { (255, 96, 0) } else { (0, 112, 255) }
}

/// The characters of a text as HTML spans, each one's background as strong as its weight.
pub fn highlighted_spans(chars: &[char], weights: &[f64]) -> String {
    let mut body = String::new();
    for (&c, share) in chars.iter().zip(shares(weights)) {
        let shown = match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            '\n' => "↵\n".to_string(),
            c => c.to_string(),
        };
        let (r, g, b) = highlight(share);
        let alpha = share.abs();
        body += &format!("<span style=\"background:rgba({r},{g},{b},{alpha:.3})\" title=\"{share:.4}\">{shown}</span>");
    }
    body
}

/// An HTML page of the text highlighted by its weights, under a line saying `what` they are.
pub fn highlighted_html(chars: &[char], weights: &[f64], what: &str) -> String {
    format!(
        "<!doctype html>\n<meta charset=\"utf-8\">\n<title>dlcli explain</title>\n\
         <p>{what}</p>\n<pre style=\"font-size:18px\">{}</pre>\n",
        highlighted_spans(chars, weights)
    )
}

/// The text with 24-bit ANSI backgrounds, white to orange (or blue) by weight.
pub fn highlighted_ansi(chars: &[char], weights: &[f64]) -> String {
    let blend = |share: f64, to: u8| (255.0 + share.abs() * (to as f64 - 255.0)).round() as u8;
    chars
        .iter()
        .zip(shares(weights))
        .map(|(&c, s)| {
            let c = if c == '\n' { '↵' } else { c };
            let (r, g, b) = highlight(s);
            format!("\x1b[48;2;{};{};{}m\x1b[30m{c}\x1b[0m", blend(s, r), blend(s, g), blend(s, b))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A picture is wide enough for its title: the text ends before the right edge, where a
    /// title longer than the panels was cut off.
    #[test]
    fn a_long_title_fits_the_picture() {
        let (input, map) = (vec![0.5f32; 64], (0..64).map(|i| i as f32).collect::<Vec<_>>());
        let title = "integrated_gradients of class 0 (probability 100.00%) and then some more words".to_string();
        let picture = Picture { input: &input, channels: 1, height: 8, width: 8, map: &map, signed: true, title };
        let image = super::picture(&picture, Layout::Overlay).unwrap();
        let inked = |x: u32| (0..36).any(|y| image.get_pixel(x, y).0 != [255, 255, 255]);
        let last = (0..image.width()).rev().find(|&x| inked(x)).unwrap();
        assert!(image.width() > 224 + 12 + 86 + 12, "{} pixels wide", image.width());
        assert!(last + 8 < image.width(), "the title reaches column {last} of {}", image.width());
        assert!(last > 224 + 12 + 86, "the title's end is drawn (column {last})");
    }
}
