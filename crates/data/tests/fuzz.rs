//! Every reader fed damaged and lying files: truncated, bit-flipped, with header fields
//! rewritten (IDX dimensions, CIFAR labels, CSV cells), and images declaring absurd sizes.
//! Each must come back as `Ok` or a typed error naming the file, never a panic or an
//! allocation the file does not justify. Bounded: `DLCLI_FUZZ_CASES` cases per reader (default
//! 200, a few seconds); `scripts/fuzz.sh MINUTES` runs the same generators for longer.

use std::path::{Path, PathBuf};

use data::{Forecast, load_cifar10, load_digits, load_idx, load_image_folder, load_series_csv};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// How a valid file is damaged.
#[derive(Debug, Clone)]
enum Damage {
    /// Cut to this share of its length.
    Truncate(f64),
    /// These bits flipped (position as a share of the length, bit).
    Flip(Vec<(f64, u8)>),
    /// A 4-byte big-endian word at this share of the first 64 bytes set to this value (an IDX
    /// or CIFAR header field, a count that lies).
    Word(f64, u32),
    /// These bytes spliced in at this share of the length.
    Insert(f64, Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (0.0..1.0f64).prop_map(Damage::Truncate),
        prop::collection::vec((0.0..1.0f64, 0u8..8), 1..16).prop_map(Damage::Flip),
        (0.0..1.0f64, prop_oneof![Just(0u32), Just(1), Just(u32::MAX), Just(1 << 31), any::<u32>()])
            .prop_map(|(at, v)| Damage::Word(at, v)),
        (0.0..1.0f64, prop::collection::vec(any::<u8>(), 1..32)).prop_map(|(at, b)| Damage::Insert(at, b)),
    ]
}

fn apply(bytes: &[u8], damage: &Damage) -> Vec<u8> {
    let at = |share: f64, len: usize| ((share * len as f64) as usize).min(len.saturating_sub(1));
    let mut out = bytes.to_vec();
    match damage {
        Damage::Truncate(share) => out.truncate((share * bytes.len() as f64) as usize),
        Damage::Flip(bits) => {
            for &(share, bit) in bits {
                let i = at(share, out.len());
                out[i] ^= 1 << bit;
            }
        }
        Damage::Word(share, value) => {
            let i = at(*share, out.len().min(64).saturating_sub(3)) & !3;
            if out.len() >= i + 4 {
                out[i..i + 4].copy_from_slice(&value.to_be_bytes());
            }
        }
        Damage::Insert(share, extra) => {
            let i = at(*share, out.len());
            out.splice(i..i, extra.iter().copied());
        }
    }
    out
}

fn cases() -> u32 {
    std::env::var("DLCLI_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(200)
}

/// Runs `read` on `valid` damaged every way the generator draws; a panic fails the test with
/// the shrunk damage. Prints how many cases ran (what `scripts/fuzz.sh` adds up).
fn fuzz(name: &str, valid: Vec<u8>, read: impl Fn(&Path) -> Result<(), String>) {
    let dir = std::env::temp_dir().join(format!("dlcli-fuzz-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(name);
    let mut runner = TestRunner::new(Config { cases: cases(), failure_persistence: None, ..Config::default() });
    runner
        .run(&damage(), |d| {
            std::fs::write(&file, apply(&valid, &d)).unwrap();
            if let Err(message) = read(&file) {
                prop_assert!(message.contains(name), "the error does not name the file: {message}");
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    println!("fuzz {name}: {} damaged files read without a panic", cases());
    std::fs::remove_dir_all(&dir).unwrap();
}

fn idx(magic: u32, dims: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut bytes = magic.to_be_bytes().to_vec();
    dims.iter().for_each(|d| bytes.extend_from_slice(&d.to_be_bytes()));
    bytes.extend_from_slice(payload);
    bytes
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dlcli-fuzz-fixed-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn damaged_idx_files_are_errors_never_panics() {
    let images: Vec<u8> = (0..3 * 5 * 4).map(|i| (i * 37 % 256) as u8).collect();
    let labels_path = scratch("idx").join("labels.idx");
    std::fs::write(&labels_path, idx(2049, &[3], &[1, 7, 9])).unwrap();
    fuzz("images.idx", idx(2051, &[3, 5, 4], &images), |path| {
        load_idx(path, &labels_path).map(drop).map_err(|e| e.to_string())
    });
    let images_path = labels_path.with_file_name("images.idx");
    std::fs::write(&images_path, idx(2051, &[3, 5, 4], &images)).unwrap();
    fuzz("labels.idx", idx(2049, &[3], &[1, 7, 9]), |path| {
        load_idx(&images_path, path).map(drop).map_err(|e| e.to_string())
    });
}

#[test]
fn damaged_cifar_batches_are_errors_never_panics() {
    // Two records: a label byte, then 3 × 32 × 32 pixels.
    let record = |label: u8| std::iter::once(label).chain((0..3072).map(|i| (i % 251) as u8)).collect::<Vec<_>>();
    fuzz("data_batch_1.bin", [record(3), record(9)].concat(), |path| {
        load_cifar10(&[path.to_owned()]).map(drop).map_err(|e| e.to_string())
    });
}

#[test]
fn damaged_digits_and_series_csvs_are_errors_never_panics() {
    let row = |label: u32| (0..64).map(move |i| ((i * 7 + label) % 17).to_string()).chain([label.to_string()]);
    let digits: String = (0..5).map(|l| row(l).collect::<Vec<_>>().join(",") + "\n").collect();
    fuzz("digits.csv", digits.into_bytes(), |path| load_digits(path).map(drop).map_err(|e| e.to_string()));
    let series: String = "\"Month\",\"Sunspots\"\n".to_string()
        + &(0..40).map(|i| format!("\"1749-{:02}\",{}.{}\n", i % 12 + 1, 50 + i * 3 % 17, i % 10)).collect::<String>();
    fuzz("series.csv", series.into_bytes(), |path| {
        let values = load_series_csv(path, Some("Sunspots")).map_err(|e| e.to_string())?;
        // Whatever was read makes forecasting windows or a typed refusal.
        let _ = Forecast::new(&values, 12, 0.2);
        Ok(())
    });
}

/// A PNG that declares 100,000 × 100,000 pixels (40 GB as RGBA) in a few bytes is refused by
/// the pixel limit before anything is decoded, and the error names the file.
#[test]
fn an_image_declaring_absurd_dimensions_is_refused_before_decoding() {
    let dir = scratch("bomb");
    let class = dir.join("train/cat");
    std::fs::create_dir_all(&class).unwrap();
    let mut png = Vec::new();
    image::RgbImage::new(4, 4).write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
    // The IHDR chunk's width and height (bytes 16..24), and its CRC recomputed.
    png[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    png[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    std::fs::write(class.join("bomb.png"), &png).unwrap();
    let error = load_image_folder(&dir.join("train"), [3, 8, 8]).expect_err("the bomb is refused").to_string();
    assert!(error.contains("bomb.png") && error.contains("100000x100000"), "{error}");
}

/// CRC-32 (IEEE), as PNG chunks carry it.
fn crc32(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |crc, &b| {
        (0..8).fold(crc ^ b as u32, |c, _| if c & 1 == 1 { (c >> 1) ^ 0xEDB8_8320 } else { c >> 1 })
    })
}
