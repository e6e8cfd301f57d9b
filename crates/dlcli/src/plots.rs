//! The run's pictures: `curves.png` (loss and accuracy or rmse over the steps, train per logged
//! step and held out per epoch) after every epoch, and `confusion.png` from `dlcli eval`. Drawn with plotters; text uses DejaVu Sans,
//! compiled into the binary so that no system font is needed.

use std::path::Path;
use std::sync::Once;

use anyhow::{Context, Result, anyhow};
use plotters::prelude::*;

const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

pub fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is compiled in and known to parse; a failure would show as missing text.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

type Area<'b> = DrawingArea<BitMapBackend<'b>, plotters::coord::Shift>;

/// A `width` × `height` picture on white drawn by `draw`.
fn drawn(width: u32, height: u32, draw: impl FnOnce(&Area) -> Result<()>) -> Result<image::RgbImage> {
    register_font();
    let mut buffer = vec![255u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        draw(&root)?;
        root.present().map_err(err)?;
    }
    Ok(image::RgbImage::from_raw(width, height, buffer).expect("the buffer is width × height × 3"))
}

/// `image` as a PNG at `path`, written atomically: a full disk or a file-size limit leaves the
/// previous picture, never half of a new one.
pub fn save(image: &image::RgbImage, path: &Path) -> Result<()> {
    let mut png = Vec::new();
    image.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).map_err(err)?;
    graph::write_atomically(path, &png).with_context(|| format!("writing {}", path.display()))
}

/// One chart of `curves.png`: its title and its named lines of (step, value) points.
pub struct Panel {
    pub title: String,
    pub lines: Vec<(String, Vec<(f64, f64)>)>,
}

pub fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing the plot: {e}")
}

/// The panels side by side over the training steps, each line in its own colour (points
/// marked where a line has few of them: the per-epoch evaluations).
pub fn curves(path: &Path, panels: &[Panel]) -> Result<()> {
    let width = 500 * panels.len().max(1) as u32;
    save(&drawn(width, 420, |root| curves_on(root, panels))?, path)
}

fn curves_on(root: &Area, panels: &[Panel]) -> Result<()> {
    let areas = root.split_evenly((1, panels.len().max(1)));
    let all = || panels.iter().flat_map(|p| p.lines.iter().flat_map(|(_, points)| points.iter()));
    let last = all().map(|p| p.0).fold(1.0, f64::max);
    for (area, panel) in areas.iter().zip(panels) {
        let values = panel.lines.iter().flat_map(|(_, points)| points.iter().map(|p| p.1)).filter(|v| v.is_finite());
        let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let (lo, hi) = if lo > hi { (0.0, 1.0) } else { (lo, hi) };
        let pad = ((hi - lo) * 0.1).max(1e-3);
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..last * 1.02, (lo - pad)..(hi + pad))
            .map_err(err)?;
        chart.configure_mesh().x_desc("step").draw().map_err(err)?;
        for ((label, points), color) in panel.lines.iter().zip([BLUE, RED, GREEN, MAGENTA]) {
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(err)?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            if points.len() <= 50 {
                chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(err)?;
            }
        }
        chart.configure_series_labels().border_style(BLACK).background_style(WHITE).draw().map_err(err)?;
    }
    Ok(())
}

/// The confusion matrix as a grid: rows the true class, columns the predicted one, each
/// cell shaded by its share of the row and labelled with its count.
pub fn confusion(path: &Path, matrix: &[Vec<usize>]) -> Result<()> {
    let k = matrix.len();
    let cell = (560 / k.max(1)).clamp(24, 80) as i32;
    let margin = 70;
    let size = (margin + cell * k as i32 + 20) as u32;
    save(&drawn(size, size, |root| confusion_on(root, matrix, (cell, margin)))?, path)
}

fn confusion_on(root: &Area, matrix: &[Vec<usize>], (cell, margin): (i32, i32)) -> Result<()> {
    let k = matrix.len();
    let text = |s: String, x: i32, y: i32| Text::new(s, (x, y), ("sans-serif", 14).into_font().color(&BLACK));
    root.draw(&text("true class (rows) / predicted (columns)".into(), 8, 8)).map_err(err)?;
    for (r, row) in matrix.iter().enumerate() {
        let total = row.iter().sum::<usize>().max(1) as f64;
        let y = margin + r as i32 * cell;
        root.draw(&text(r.to_string(), margin - 24, y + cell / 2 - 7)).map_err(err)?;
        for (c, &n) in row.iter().enumerate() {
            let x = margin + c as i32 * cell;
            let share = n as f64 / total;
            let shade = (255.0 * (1.0 - share)) as u8;
            root.draw(&Rectangle::new([(x, y), (x + cell - 1, y + cell - 1)], RGBColor(shade, shade, 255).filled()))
                .map_err(err)?;
            let colour = if share > 0.5 { WHITE } else { BLACK };
            let label =
                Text::new(n.to_string(), (x + 4, y + cell / 2 - 7), ("sans-serif", 12).into_font().color(&colour));
            root.draw(&label).map_err(err)?;
        }
    }
    for c in 0..k {
        root.draw(&text(c.to_string(), margin + c as i32 * cell + cell / 2 - 4, margin - 22)).map_err(err)?;
    }
    Ok(())
}

/// Every head of every attention layer as a heatmap (turbo, each cell scaled to its largest
/// probability), one row of cells per layer: query positions down, key positions across.
/// `maps` pairs each layer's name with its maps.
pub fn attention_grid(path: &Path, maps: &[(String, &explain::AttentionMap)]) -> Result<()> {
    let heads = maps.iter().map(|(_, m)| m.heads).max().unwrap_or(1);
    let AttentionGrid { cell, label, gap, title, bar } = GRID;
    let width = (label + heads as i32 * (cell + gap) + bar) as u32;
    let height = (title + maps.len() as i32 * (cell + label + gap) + gap) as u32;
    save(&drawn(width, height, |root| attention_grid_on(root, maps, heads))?, path)
}

/// The attention grid's layout in pixels: a head's cell, the labels' room, the gaps, the
/// title's and the colour bar's room.
struct AttentionGrid {
    cell: i32,
    label: i32,
    gap: i32,
    title: i32,
    bar: i32,
}

const GRID: AttentionGrid = AttentionGrid { cell: 200, label: 42, gap: 28, title: 34, bar: 120 };

fn attention_grid_on(root: &Area, maps: &[(String, &explain::AttentionMap)], heads: usize) -> Result<()> {
    let AttentionGrid { cell, label, gap, title, .. } = GRID;
    let font = |size: i32| ("sans-serif", size).into_font().color(&BLACK);
    let heading =
        format!("attention: {} layer(s) × {heads} head(s), each head scaled to its largest probability", maps.len());
    root.draw(&Text::new(heading, (label, 10), font(16))).map_err(err)?;
    let bar_at = (label + heads as i32 * (cell + gap), title + gap, cell);
    colour_bar(root, bar_at, ("0".into(), "head's max".into()))?;
    for (row, (name, map)) in maps.iter().enumerate() {
        let top = title + gap + row as i32 * (cell + label + gap);
        for h in 0..map.heads {
            let left = label + h as i32 * (cell + gap);
            let probabilities = map.head(h);
            let most = probabilities.iter().fold(f32::MIN_POSITIVE, |m, &p| m.max(p));
            let (sx, sy) = (cell as f64 / map.keys as f64, cell as f64 / map.queries as f64);
            for (i, row_p) in probabilities.chunks(map.keys).enumerate() {
                for (j, &p) in row_p.iter().enumerate() {
                    let c = colorous::TURBO.eval_continuous((p / most) as f64);
                    let (x0, y0) = (left + (j as f64 * sx) as i32, top + (i as f64 * sy) as i32);
                    let (x1, y1) = (left + ((j + 1) as f64 * sx) as i32, top + ((i + 1) as f64 * sy) as i32);
                    let corner = (x1.max(x0 + 1), y1.max(y0 + 1));
                    root.draw(&Rectangle::new([(x0, y0), corner], RGBColor(c.r, c.g, c.b).filled())).map_err(err)?;
                }
            }
            let caption = format!("{name} head {h}");
            root.draw(&Text::new(caption, (left, top - 18), font(13))).map_err(err)?;
            let keys = format!("key 0..{} →", map.keys - 1);
            root.draw(&Text::new(keys, (left, top + cell + 4), font(12))).map_err(err)?;
        }
        let queries = format!("query ↓ 0..{}", map.queries - 1);
        let style = font(12).transform(FontTransform::Rotate270);
        root.draw(&Text::new(queries, (8, top + cell), style)).map_err(err)?;
    }
    Ok(())
}

/// A vertical turbo colour bar at (left, top), `height` tall, its ends labelled `lo` (bottom)
/// and `hi` (top).
fn colour_bar<DB: DrawingBackend>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    (left, top, height): (i32, i32, i32),
    (lo, hi): (String, String),
) -> Result<()> {
    for y in 0..height {
        let c = colorous::TURBO.eval_continuous(1.0 - y as f64 / (height - 1).max(1) as f64);
        let line = Rectangle::new([(left, top + y), (left + 16, top + y + 1)], RGBColor(c.r, c.g, c.b).filled());
        root.draw(&line).map_err(err)?;
    }
    let font = ("sans-serif", 12).into_font().color(&BLACK);
    root.draw(&Text::new(hi, (left + 20, top), font.clone())).map_err(err)?;
    root.draw(&Text::new(lo, (left + 20, top + height - 12), font)).map_err(err)
}

/// An attribution over a sequence's steps under `title`: one bar per step for one feature
/// (below the axis where it is negative), a heatmap (features down, steps across, turbo from
/// the smallest value to the largest) for several.
pub fn sequence_map(map: &[f32], features: usize, title: &str) -> Result<image::RgbImage> {
    let steps = map.len() / features.max(1);
    let (width, height) = (900u32, 360u32);
    drawn(width, height, |root| {
        let (lo, hi) = map.iter().fold((0f32, f32::MIN_POSITIVE), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let (lo, hi) = (lo as f64, hi as f64);
        let y = if features == 1 { lo * 1.05..hi * 1.05 } else { 0.0..features as f64 };
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .margin_right(if features == 1 { 12 } else { 100 })
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..steps as f64, y)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc(if features == 1 { "attribution" } else { "feature" })
            .draw()
            .map_err(err)?;
        if features == 1 {
            let bars = map.iter().enumerate().map(|(t, &v)| {
                let colour = if v >= 0.0 { RGBColor(214, 39, 40) } else { RGBColor(31, 119, 180) };
                Rectangle::new([(t as f64 + 0.1, 0.0), (t as f64 + 0.9, v as f64)], colour.filled())
            });
            chart.draw_series(bars).map_err(err)?;
        } else {
            let cells = map.iter().enumerate().map(|(i, &v)| {
                let (t, f) = ((i / features) as f64, (i % features) as f64);
                let c = colorous::TURBO.eval_continuous((v as f64 - lo) / (hi - lo).max(f64::MIN_POSITIVE));
                Rectangle::new([(t, f), (t + 1.0, f + 1.0)], RGBColor(c.r, c.g, c.b).filled())
            });
            chart.draw_series(cells).map_err(err)?;
            let bar = (width as i32 - 88, 48, height as i32 - 110);
            colour_bar(root, bar, (format!("{lo:.3}"), format!("{hi:.3}")))?;
        }
        Ok(())
    })
}
