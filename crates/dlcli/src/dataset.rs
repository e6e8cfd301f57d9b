//! The config's datasets, loaded and prepared: images normalised by the config's mean and std,
//! text as character windows, a series as normalised windows.

use std::borrow::Cow;

use anyhow::{Context, Result, bail};
use data::{
    CharCorpus, Dataset, Forecast, Normalisation, load_cifar10, load_digits, load_idx, load_image_folder,
    load_series_csv, persistence_rmse,
};

use crate::config::{DataConfig, DataSource};

/// A config's data: what trains each epoch, the test set, and what preparing them learnt.
pub struct Data {
    train: TrainSet,
    pub test: Dataset,
    pub prepared: Prepared,
}

/// What trains: the same samples every epoch (reshuffled), or text windows drawn anew.
enum TrainSet {
    Fixed(Dataset),
    Text { corpus: CharCorpus, context: usize, windows: usize },
}

/// What the data's preparation learnt from the training data and a prediction needs; each
/// checkpoint keeps it (as JSON) so that a trained model works without its dataset.
#[derive(Debug, Clone, PartialEq)]
pub enum Prepared {
    /// Images: their normalisation is the config's.
    Images,
    /// Character ids: a character's id is its index here.
    Text { vocabulary: Vec<char> },
    /// A series' normalisation, and the error of forecasting the last value again on the test
    /// set, in the data's units (the baseline a forecaster must beat).
    Series { normalisation: Normalisation, persistence_rmse: f64 },
}

impl Prepared {
    pub fn to_json(&self) -> String {
        match self {
            Prepared::Images => String::new(),
            Prepared::Text { vocabulary } => {
                serde_json::json!({ "vocabulary": vocabulary.iter().collect::<String>() }).to_string()
            }
            Prepared::Series { normalisation, persistence_rmse } => serde_json::json!({
                "mean": normalisation.mean, "std": normalisation.std, "persistence_rmse": persistence_rmse,
            })
            .to_string(),
        }
    }

    /// What [`Prepared::to_json`] wrote (a checkpoint's "data" metadata).
    pub fn from_json(text: &str) -> Result<Self> {
        if text.is_empty() {
            return Ok(Prepared::Images);
        }
        let v: serde_json::Value = serde_json::from_str(text).context("the checkpoint's data metadata")?;
        if let Some(chars) = v["vocabulary"].as_str() {
            return Ok(Prepared::Text { vocabulary: chars.chars().collect() });
        }
        match (v["mean"].as_f64(), v["std"].as_f64(), v["persistence_rmse"].as_f64()) {
            (Some(mean), Some(std), Some(persistence_rmse)) => {
                Ok(Prepared::Series { normalisation: Normalisation { mean, std }, persistence_rmse })
            }
            _ => bail!("the checkpoint's data metadata is neither a vocabulary nor a normalisation: {text}"),
        }
    }
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

/// The config's data: training samples, test set and what was learnt preparing them.
pub fn load(config: &DataConfig, seed: u64) -> Result<Data> {
    let images = |(mut train, mut test): (Dataset, Dataset)| {
        for set in [&mut train, &mut test] {
            normalise(set, config);
        }
        Data { train: TrainSet::Fixed(train), test, prepared: Prepared::Images }
    };
    Ok(match &config.source {
        DataSource::Idx { train_images, train_labels, test_images, test_labels } => images((
            load_idx(train_images, train_labels).context("loading the training set ([data] train_images/labels)")?,
            load_idx(test_images, test_labels).context("loading the test set ([data] test_images/labels)")?,
        )),
        DataSource::Digits { path, test_fraction } => {
            images(load_digits(path).context("loading [data] path")?.split(*test_fraction, seed))
        }
        DataSource::Cifar10 { train_files, test_files } => images((
            load_cifar10(train_files).context("loading [data] train_files")?,
            load_cifar10(test_files).context("loading [data] test_files")?,
        )),
        DataSource::ImageFolder { train_dir, test_dir, channels, height, width } => {
            let shape = [*channels, *height, *width];
            let (train, names) = load_image_folder(train_dir, shape).context("loading [data] train_dir")?;
            let (test, test_names) = load_image_folder(test_dir, shape).context("loading [data] test_dir")?;
            if names != test_names {
                bail!("[data] train_dir has classes {names:?} but test_dir has {test_names:?}");
            }
            images((train, test))
        }
        &DataSource::Text { ref path, context, held_out, windows } => {
            let corpus = CharCorpus::load(path, held_out).context("loading [data] path")?;
            let (train_chars, held_out_chars) = corpus.parts();
            if held_out_chars <= context || train_chars <= context {
                bail!(
                    "[data] context = {context}: the text's training part has {train_chars} characters and its \
                     held-out part {held_out_chars}; both need more than one window (lower context or held_out)"
                );
            }
            let windows = if windows == 0 { train_chars / context } else { windows };
            let test = corpus.held_out_windows(context);
            let prepared = Prepared::Text { vocabulary: corpus.vocabulary.clone() };
            Data { train: TrainSet::Text { corpus, context, windows }, test, prepared }
        }
        DataSource::Series { path, column, window, test_fraction } => {
            let values = load_series_csv(path, column.as_deref()).context("loading [data] path")?;
            let forecast = Forecast::new(&values, *window, *test_fraction)
                .map_err(|e| anyhow::anyhow!("{}: [data] window / test_fraction: {e}", path.display()))?;
            let persistence_rmse = persistence_rmse(&forecast.test, &forecast.normalisation);
            let prepared = Prepared::Series { normalisation: forecast.normalisation, persistence_rmse };
            Data { train: TrainSet::Fixed(forecast.train), test: forecast.test, prepared }
        }
    })
}

/// The test set alone and what preparing the data learnt (what eval, predict and explain
/// read): image files' training sets are not read.
pub fn load_test(config: &DataConfig, seed: u64) -> Result<(Dataset, Prepared)> {
    let mut test = match &config.source {
        DataSource::Idx { test_images, test_labels, .. } => {
            load_idx(test_images, test_labels).context("loading the test set ([data] test_images/labels)")?
        }
        DataSource::Cifar10 { test_files, .. } => load_cifar10(test_files).context("loading [data] test_files")?,
        DataSource::ImageFolder { test_dir, channels, height, width, .. } => {
            load_image_folder(test_dir, [*channels, *height, *width]).context("loading [data] test_dir")?.0
        }
        // A split of one file, or prepared from the training part.
        DataSource::Digits { .. } | DataSource::Text { .. } | DataSource::Series { .. } => {
            let data = load(config, seed)?;
            return Ok((data.test, data.prepared));
        }
    };
    normalise(&mut test, config);
    Ok((test, Prepared::Images))
}

/// Every pixel as (x - mean) / std.
fn normalise(set: &mut Dataset, config: &DataConfig) {
    set.samples.iter_mut().for_each(|x| *x = (*x - config.mean) / config.std);
}
