//! The run's pictures: `curves.png` (loss and accuracy per epoch, train and held out) after every
//! epoch, and `confusion.png` from `dlcli eval`. Drawn with plotters; text uses DejaVu Sans,
//! compiled into the binary so that no system font is needed.

use std::path::Path;
use std::sync::Once;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is compiled in and known to parse; a failure would show as missing text.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// One epoch's line of metrics.jsonl: the training figures and those of the held-out set
/// (validation when the run has one, else test).
pub struct EpochMetrics {
    pub epoch: u64,
    pub train_loss: f64,
    pub held_out_loss: f64,
    pub train_accuracy: f64,
    pub held_out_accuracy: f64,
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing the plot: {e}")
}

/// Loss (left) and accuracy (right) per epoch, train and `held_out` ("validation" or "test").
pub fn curves(path: &Path, rows: &[EpochMetrics], held_out: &str) -> Result<()> {
    register_font();
    let root = BitMapBackend::new(path, (1000, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (left, right) = root.split_horizontally(500);
    let last = rows.last().map_or(1, |r| r.epoch) as f64;
    // (train, test) of one quantity.
    type Pick = fn(&EpochMetrics) -> (f64, f64);
    let loss: Pick = |r| (r.train_loss, r.held_out_loss);
    let accuracy: Pick = |r| (r.train_accuracy, r.held_out_accuracy);
    for (area, name, pick) in [(&left, "loss", loss), (&right, "accuracy", accuracy)] {
        let values: Vec<(f64, f64)> = rows.iter().map(pick).collect();
        let (lo, hi) =
            values.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &(a, b)| (lo.min(a).min(b), hi.max(a).max(b)));
        let pad = ((hi - lo) * 0.1).max(1e-3);
        let mut chart = ChartBuilder::on(area)
            .caption(name, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(0.5..last + 0.5, (lo - pad)..(hi + pad))
            .map_err(err)?;
        chart.configure_mesh().x_desc("epoch").draw().map_err(err)?;
        for (label, color, which) in [("train", BLUE, 0usize), (held_out, RED, 1)] {
            let points: Vec<(f64, f64)> =
                rows.iter().zip(&values).map(|(r, v)| (r.epoch as f64, if which == 0 { v.0 } else { v.1 })).collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(err)?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(err)?;
        }
        chart.configure_series_labels().border_style(BLACK).background_style(WHITE).draw().map_err(err)?;
    }
    root.present().map_err(err)
}

/// The confusion matrix as a grid: rows the true class, columns the predicted one, each
/// cell shaded by its share of the row and labelled with its count.
pub fn confusion(path: &Path, matrix: &[Vec<usize>]) -> Result<()> {
    register_font();
    let k = matrix.len();
    let cell = (560 / k.max(1)).clamp(24, 80) as i32;
    let margin = 70;
    let size = (margin + cell * k as i32 + 20) as u32;
    let root = BitMapBackend::new(path, (size, size)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
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
    root.present().map_err(err)
}
