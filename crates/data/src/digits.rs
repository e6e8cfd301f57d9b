//! The UCI digits set as scikit-learn ships it (`datasets/digits/digits.csv.gz`): per line 64
//! pixel values 0..=16 of an 8×8 image, then the label 0..=9.

use std::io::{BufRead, BufReader};
use std::path::Path;

use flate2::read::GzDecoder;

use crate::dataset::Dataset;
use crate::error::{DataError, Result};

const PIXELS_SIDE: usize = 8;
const PIXELS: usize = PIXELS_SIDE * PIXELS_SIDE;

/// Reads the digits as images [1, 8, 8] scaled to [0, 1].
pub fn load_digits(path: &Path) -> Result<Dataset> {
    let io = |error| DataError::Io { path: path.to_owned(), error };
    let file = std::fs::File::open(path).map_err(io)?;
    let (mut samples, mut labels) = (Vec::new(), Vec::new());
    for (i, line) in BufReader::new(GzDecoder::new(file)).lines().enumerate() {
        let line = line.map_err(io)?;
        let bad = |detail: String| DataError::Format { path: path.to_owned(), line: i + 1, detail };
        let values: Vec<u32> = line
            .split(',')
            .map(|v| v.trim().parse::<u32>())
            .collect::<Result<_, _>>()
            .map_err(|e| bad(format!("{e} (expected 65 integers: 64 pixels 0..=16, then a label 0..=9)")))?;
        match values.as_slice() {
            [pixels @ .., label] if pixels.len() == PIXELS && pixels.iter().all(|&p| p <= 16) && *label < 10 => {
                samples.extend(pixels.iter().map(|&p| p as f32 / 16.0));
                labels.push(*label);
            }
            _ => return Err(bad(format!("{} values; expected 64 pixels 0..=16, then a label 0..=9", values.len()))),
        }
    }
    if labels.is_empty() {
        return Err(DataError::Format { path: path.to_owned(), line: 0, detail: "no samples".into() });
    }
    Ok(Dataset::classified(samples, vec![1, PIXELS_SIDE, PIXELS_SIDE], labels, 10))
}
