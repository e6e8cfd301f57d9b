//! An image folder: one sub-folder per class (sorted by name; the class index is the
//! position), PNG or JPEG files inside, each converted to the configured shape.

use std::path::{Path, PathBuf};

use crate::dataset::Dataset;
use crate::error::{DataError, Result};

/// Images are refused past this many pixels, read from the header before any decoding: a
/// decompression bomb (a small file declaring a huge image) costs nothing. 100 megapixels is
/// beyond any camera a dataset comes from.
pub const MAX_PIXELS: u64 = 100_000_000;

/// The image at `path` (PNG or JPEG), its size checked against [`MAX_PIXELS`] before decoding.
pub fn open_image(path: &Path) -> Result<image::DynamicImage> {
    let bad = |detail: String| DataError::Format { path: path.to_owned(), line: 0, detail };
    let unreadable = |e: &dyn std::fmt::Display| bad(format!("not a readable PNG or JPEG image ({e})"));
    let reader = || image::ImageReader::open(path).map_err(|e| DataError::Io { path: path.to_owned(), error: e });
    let (w, h) =
        reader()?.with_guessed_format().map_err(|e| unreadable(&e))?.into_dimensions().map_err(|e| unreadable(&e))?;
    if w as u64 * h as u64 > MAX_PIXELS {
        return Err(bad(format!("declares {w}x{h} pixels, more than the {MAX_PIXELS} read here; resize it first")));
    }
    reader()?.with_guessed_format().map_err(|e| unreadable(&e))?.decode().map_err(|e| unreadable(&e))
}

/// Reads `root`'s images as [channels, height, width] (channels 1: grey, 3: RGB) scaled to
/// [0, 1], and the class names in index order.
pub fn load_image_folder(root: &Path, shape: [usize; 3]) -> Result<(Dataset, Vec<String>)> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |error| DataError::Io { path, error }
    };
    let bad = |path: &Path, detail: String| DataError::Format { path: path.to_owned(), line: 0, detail };
    let [channels, height, width] = shape;
    if channels != 1 && channels != 3 {
        return Err(bad(root, format!("images become 1 (grey) or 3 (RGB) channels, not {channels}")));
    }
    let mut classes: Vec<PathBuf> = std::fs::read_dir(root)
        .map_err(io(root))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    classes.sort();
    if classes.is_empty() {
        return Err(bad(root, "no class sub-folders (expected ROOT/<class>/<image>.png)".into()));
    }
    let (mut samples, mut labels) = (Vec::new(), Vec::new());
    for (label, dir) in classes.iter().enumerate() {
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(dir).map_err(io(dir))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.retain(|p| {
            p.extension()
                .is_some_and(|e| ["png", "jpg", "jpeg"].contains(&e.to_ascii_lowercase().to_str().unwrap_or("")))
        });
        files.sort();
        for file in files {
            let img =
                open_image(&file)?.resize_exact(width as u32, height as u32, image::imageops::FilterType::Triangle);
            if channels == 1 {
                samples.extend(img.to_luma8().pixels().map(|p| p.0[0] as f32 / 255.0));
            } else {
                let rgb = img.to_rgb8();
                for c in 0..3 {
                    samples.extend(rgb.pixels().map(|p| p.0[c] as f32 / 255.0));
                }
            }
            labels.push(label as u32);
        }
    }
    if labels.is_empty() {
        return Err(bad(root, "the class folders hold no PNG or JPEG files".into()));
    }
    let names = classes.iter().map(|c| c.file_name().unwrap_or_default().to_string_lossy().into_owned()).collect();
    Ok((Dataset::classified(samples, shape.to_vec(), labels, classes.len()), names))
}
