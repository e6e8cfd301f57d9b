//! IDX files (the MNIST format): an images file (magic 2051: u8 [N, rows, cols]) and a labels
//! file (magic 2049: u8 [N]), each gzip-compressed or raw.

use std::io::Read;
use std::path::Path;

use flate2::read::GzDecoder;

use crate::dataset::Dataset;
use crate::error::{DataError, Result};

/// Reads an images/labels pair as images [1, rows, cols] scaled to [0, 1].
pub fn load_idx(images: &Path, labels: &Path) -> Result<Dataset> {
    let (image_dims, pixels) = read_idx(images, 2051, 3)?;
    let (label_dims, labels_raw) = read_idx(labels, 2049, 1)?;
    if image_dims[0] != label_dims[0] {
        return Err(DataError::Format {
            path: labels.to_owned(),
            line: 0,
            detail: format!("{} labels for {} images in {}", label_dims[0], image_dims[0], images.display()),
        });
    }
    let classes = labels_raw.iter().map(|&l| l as usize + 1).max().unwrap_or(0).max(10);
    Ok(Dataset::classified(
        pixels.iter().map(|&p| p as f32 / 255.0).collect(),
        vec![1, image_dims[1], image_dims[2]],
        labels_raw.iter().map(|&l| l as u32).collect(),
        classes,
    ))
}

/// The dimensions and u8 payload of an IDX file with the given magic number and rank.
fn read_idx(path: &Path, magic: u32, rank: usize) -> Result<(Vec<usize>, Vec<u8>)> {
    let io = |error| DataError::Io { path: path.to_owned(), error };
    let bad = |detail: String| DataError::Format { path: path.to_owned(), line: 0, detail };
    let raw = std::fs::read(path).map_err(io)?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(raw.as_slice()).read_to_end(&mut out).map_err(|e| bad(format!("broken gzip stream: {e}")))?;
        out
    } else {
        raw
    };
    let word = |i: usize| bytes.get(4 * i..4 * i + 4).map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    let what = if rank == 3 { "an IDX images file (magic 2051)" } else { "an IDX labels file (magic 2049)" };
    if word(0) != Some(magic) {
        return Err(bad(format!("not {what}: the file starts with {:?}", word(0))));
    }
    let dims: Vec<usize> = (1..=rank)
        .map(|i| word(i).map(|d| d as usize))
        .collect::<Option<_>>()
        .ok_or_else(|| bad("header cut short".into()))?;
    let payload = &bytes[4 * (rank + 1)..];
    // Checked: a lying header's dimensions can multiply past usize.
    let want = dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
    if want != Some(payload.len()) {
        let want = want.map_or("more than fits in memory".to_string(), |w| w.to_string());
        return Err(bad(format!(
            "{} data bytes, the header {dims:?} says {want}; the file is truncated or corrupt",
            payload.len()
        )));
    }
    Ok((dims, payload.to_vec()))
}
