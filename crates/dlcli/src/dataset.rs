//! The config's datasets, loaded and normalised.

use anyhow::{Context, Result};
use data::{Dataset, load_cifar10, load_digits, load_idx, load_image_folder};

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
        DataSource::Cifar10 { train_files, test_files } => (
            load_cifar10(train_files).context("loading [data] train_files")?,
            load_cifar10(test_files).context("loading [data] test_files")?,
        ),
        DataSource::ImageFolder { train_dir, test_dir, channels, height, width } => {
            let shape = [*channels, *height, *width];
            let (train, names) = load_image_folder(train_dir, shape).context("loading [data] train_dir")?;
            let (test, test_names) = load_image_folder(test_dir, shape).context("loading [data] test_dir")?;
            if names != test_names {
                anyhow::bail!("[data] train_dir has classes {names:?} but test_dir has {test_names:?}");
            }
            (train, test)
        }
    };
    for set in [&mut train, &mut test] {
        normalise(set, config);
    }
    Ok((train, test))
}

/// The test set alone (what eval, predict and explain read), normalised as [`load`]'s.
pub fn load_test(config: &DataConfig, seed: u64) -> Result<Dataset> {
    let mut test = match &config.source {
        DataSource::Idx { test_images, test_labels, .. } => {
            load_idx(test_images, test_labels).context("loading the test set ([data] test_images/labels)")?
        }
        // The digits' test set is a split of the one file.
        DataSource::Digits { path, test_fraction } => {
            load_digits(path).context("loading [data] path")?.split(*test_fraction, seed).1
        }
        DataSource::Cifar10 { test_files, .. } => load_cifar10(test_files).context("loading [data] test_files")?,
        DataSource::ImageFolder { test_dir, channels, height, width, .. } => {
            load_image_folder(test_dir, [*channels, *height, *width]).context("loading [data] test_dir")?.0
        }
    };
    normalise(&mut test, config);
    Ok(test)
}

/// Every pixel as (x - mean) / std.
fn normalise(set: &mut Dataset, config: &DataConfig) {
    set.samples.iter_mut().for_each(|x| *x = (*x - config.mean) / config.std);
}
