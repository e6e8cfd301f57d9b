//! The config's datasets, loaded and normalised.

use anyhow::{Context, Result};
use data::{Dataset, load_digits, load_idx};

use crate::config::{DataConfig, DataSource};

/// (train, test), every pixel normalised as (x - mean) / std.
pub fn load(config: &DataConfig, seed: u64) -> Result<(Dataset, Dataset)> {
    let (mut train, mut test) = match &config.source {
        DataSource::Idx { train_images, train_labels, test_images, test_labels } => (
            load_idx(train_images, train_labels).context("loading the training set ([data] train_images/labels)")?,
            load_idx(test_images, test_labels).context("loading the test set ([data] test_images/labels)")?,
        ),
        DataSource::Digits { path, test_fraction } => {
            load_digits(path).context("loading [data] path")?.split(*test_fraction, seed)
        }
    };
    for set in [&mut train, &mut test] {
        set.samples.iter_mut().for_each(|x| *x = (*x - config.mean) / config.std);
    }
    Ok((train, test))
}
