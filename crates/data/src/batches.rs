//! Fixed-size batches, because a built graph has a fixed batch size.

use crate::dataset::{Dataset, Targets, shuffle};

/// Label of a row that only pads a batch (the graph crate's loss and metrics skip it).
pub const PADDING_LABEL: u32 = u32::MAX;

/// One batch: `batch` samples and their targets. When the dataset runs out, the tail is
/// padded with copies of the first sample, its labels [`PADDING_LABEL`]; `valid` says how
/// many rows are real.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The batch's samples, row after row (padding rows repeat the first).
    pub samples: Vec<f32>,
    /// Class labels (of a classification set), `per_sample` per row.
    pub labels: Vec<u32>,
    /// Real targets (of a regression set), `per_sample` per row.
    pub values: Vec<f32>,
    /// How many rows are real; the rest pad the batch.
    pub valid: usize,
}

/// Batches over a dataset in a seeded order.
pub struct Batches<'d> {
    data: &'d Dataset,
    order: Vec<usize>,
    batch: usize,
    next: usize,
    keep_partial: bool,
}

impl<'d> Batches<'d> {
    /// Training order: shuffled by (`seed`, `epoch`), full batches only (the few samples left
    /// over land in other batches in other epochs).
    pub fn shuffled(data: &'d Dataset, batch: usize, seed: u64, epoch: u64) -> Self {
        let mut order: Vec<usize> = (0..data.len()).collect();
        shuffle(&mut order, seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ epoch);
        Batches { data, order, batch, next: 0, keep_partial: false }
    }

    /// Evaluation order: every sample once, in order, the last batch padded.
    pub fn in_order(data: &'d Dataset, batch: usize) -> Self {
        Batches { data, order: (0..data.len()).collect(), batch, next: 0, keep_partial: true }
    }
}

impl Iterator for Batches<'_> {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        let left = self.order.len() - self.next;
        if left == 0 || (left < self.batch && !self.keep_partial) || self.batch == 0 {
            return None;
        }
        let valid = left.min(self.batch);
        let mut rows: Vec<usize> = self.order[self.next..self.next + valid].to_vec();
        rows.resize(self.batch, rows[0]);
        self.next += valid;
        let part = self.data.subset(&rows);
        let (labels, values) = match part.targets {
            Targets::Classes { mut labels, per_sample, .. } => {
                labels[valid * per_sample..].fill(PADDING_LABEL);
                (labels, Vec::new())
            }
            Targets::Values { values, .. } => (Vec::new(), values),
        };
        Some(Batch { samples: part.samples, labels, values, valid })
    }
}
