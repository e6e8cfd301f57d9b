//! CIFAR-10's binary batches (`data_batch_1.bin` ... `test_batch.bin`): records of one label
//! byte and 3,072 pixel bytes (red, green, blue planes of 32×32).

use std::path::PathBuf;

use crate::dataset::Dataset;
use crate::error::{DataError, Result};

const RECORD: usize = 1 + 3 * 32 * 32;

/// Reads and concatenates batch files as images [3, 32, 32] scaled to [0, 1].
pub fn load_cifar10(files: &[PathBuf]) -> Result<Dataset> {
    let (mut samples, mut labels) = (Vec::new(), Vec::new());
    for path in files {
        let bad = |detail: String| DataError::Format { path: path.clone(), line: 0, detail };
        let bytes = std::fs::read(path).map_err(|error| DataError::Io { path: path.clone(), error })?;
        if bytes.is_empty() || bytes.len() % RECORD != 0 {
            return Err(bad(format!("{} bytes is not a whole number of {RECORD}-byte CIFAR-10 records", bytes.len())));
        }
        for (i, record) in bytes.chunks_exact(RECORD).enumerate() {
            if record[0] >= 10 {
                return Err(bad(format!("record {i} has label {}, CIFAR-10 has 10 classes", record[0])));
            }
            labels.push(record[0] as u32);
            samples.extend(record[1..].iter().map(|&p| p as f32 / 255.0));
        }
    }
    Ok(Dataset::classified(samples, vec![3, 32, 32], labels, 10))
}
