//! Datasets as plain Rust values: readers for the formats dlcli ships or accepts (images,
//! character-level text, time series), a seeded split, and seeded batching. No device types here; the graph crate uploads batches itself.

#![cfg_attr(not(test), warn(clippy::too_many_lines))]
#![warn(missing_docs)]

mod augment;
mod batches;
mod cifar;
mod dataset;
mod digits;
mod error;
mod idx;
mod image_folder;
mod series;
mod text;

pub use augment::Augment;
pub use batches::{Batch, Batches, PADDING_LABEL};
pub use cifar::load_cifar10;
pub use dataset::{Dataset, Inputs, SplitMix64, Targets, shuffle};
pub use digits::load_digits;
pub use error::{DataError, Result};
pub use idx::load_idx;
pub use image_folder::{MAX_PIXELS, load_image_folder, open_image};
pub use series::{Forecast, Normalisation, load_series_csv, naive_mae, persistence_rmse, season, seasonal_naive_rmse};
pub use text::{CharCorpus, encode_with};
