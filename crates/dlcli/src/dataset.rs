//! A config's data as training reads it: what trains each epoch and the test set. Each task
//! (`task/`) reads its data kinds into one.

use std::borrow::Cow;

use anyhow::{Result, bail};
use data::{CharCorpus, Dataset};

/// What trains each epoch, and the test set.
pub struct Data {
    pub train: TrainSet,
    pub test: Dataset,
}

/// What trains: the same samples every epoch (reshuffled), or text windows drawn anew.
pub enum TrainSet {
    Fixed(Dataset),
    Text { corpus: CharCorpus, context: usize, windows: usize },
}

impl Data {
    /// The training samples of `epoch` (new random windows each epoch for text).
    pub fn epoch(&self, seed: u64, epoch: u64) -> Cow<'_, Dataset> {
        match &self.train {
            TrainSet::Fixed(set) => Cow::Borrowed(set),
            &TrainSet::Text { ref corpus, context, windows } => {
                Cow::Owned(corpus.random_windows(context, windows, seed, epoch))
            }
        }
    }

    /// Samples per epoch.
    pub fn train_len(&self) -> usize {
        match &self.train {
            TrainSet::Fixed(set) => set.len(),
            TrainSet::Text { windows, .. } => *windows,
        }
    }

    /// Splits `fraction` of the training samples off for validation.
    pub fn split_validation(&mut self, fraction: f64, seed: u64) -> Result<Dataset> {
        let TrainSet::Fixed(set) = &self.train else {
            bail!("[data] validation_fraction: text trains on random windows; its held-out part is the test set")
        };
        let (train, validation) = set.split(fraction, seed);
        self.train = TrainSet::Fixed(train);
        Ok(validation)
    }
}
