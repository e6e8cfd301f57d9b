//! Datasets as plain Rust values: readers for the formats dlcli ships or accepts, a seeded
//! split, and seeded batching. No device types here; the graph crate uploads batches itself.

mod augment;
mod batches;
mod dataset;
mod digits;
mod error;
mod idx;

pub use augment::Augment;
pub use batches::{Batch, Batches, PADDING_LABEL};
pub use dataset::Dataset;
pub use digits::load_digits;
pub use error::{DataError, Result};
pub use idx::load_idx;
