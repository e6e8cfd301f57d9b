//! One-step forecasting of a series: each window of `window` values is a sample, the value
//! after it the target. Reads one column of a CSV (`[data] kind = "series"`), split by time,
//! normalised by the training part's mean and std. Trained by mean squared error; its figure
//! is the RMSE in the data's units, beside the baselines a forecaster must beat: persistence
//! (the next value is the last one) and the seasonal naive forecast (the value one season
//! back; the season from `[data] season`, or the autocorrelation's). `eval` adds the MAE and
//! MASE, the MAE over the training part's own seasonal naive MAE (Hyndman and Koehler).

use anyhow::{Context, Result, bail};
use data::{Batch, Dataset, Inputs, Normalisation, Targets, load_series_csv, naive_mae, persistence_rmse};
use explain::Attribution;
use graph::{Feed, Model, Supervised, TensorId};

use super::{Evaluation, Figure, Predictor, Registration, Report, Sample, SampleSource, Shapes, Sums, Task, inputs};
use crate::config::{DataConfig, DataSource, TrainConfig};
use crate::dataset::{Data, TrainSet};

pub const REGISTRATION: Registration = Registration { load, load_test, restore: None };

/// Windows of a normalised series, each predicting the value after it.
pub struct Forecast {
    shapes: Shapes,
    /// The training part's mean and std, by which every value is normalised.
    normalisation: Normalisation,
    /// The RMSE of forecasting each test window's next value as its last, in the data's units.
    persistence_rmse: f64,
    seasons: Seasons,
}

/// What the series' season gives: the seasonal naive baseline and MASE's scale.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Seasons {
    /// Values per season, and whether the autocorrelation gave it (else the config); None
    /// for a series without one.
    season: Option<(usize, bool)>,
    /// The RMSE of forecasting each test value as the one a season before it.
    seasonal_rmse: Option<f64>,
    /// The training part's own mean absolute error of that forecast (one step back without a
    /// season): MASE's divisor, in the data's units.
    naive_mae: f64,
}

impl Seasons {
    /// Of `series`, whose first `split` values are the training part; `season` as configured.
    fn of(series: &[f64], split: usize, season: Option<usize>) -> Seasons {
        let season = match season {
            Some(m) => Some((m, false)),
            None => data::season(&series[..split]).map(|m| (m, true)),
        };
        let m = season.map_or(1, |(m, _)| m);
        Seasons {
            season,
            seasonal_rmse: season.map(|(m, _)| data::seasonal_naive_rmse(series, split, m)),
            naive_mae: naive_mae(&series[..split], m),
        }
    }

    /// "season 12 (set)" or "season 127, inferred from the autocorrelation".
    fn describe(&self) -> Option<String> {
        let (m, inferred) = self.season?;
        Some(format!("season {m}{}", if inferred { ", from the autocorrelation" } else { " ([data] season)" }))
    }
}

impl Forecast {
    fn new(window: usize, normalisation: Normalisation, persistence_rmse: f64, seasons: Seasons) -> Self {
        let shapes = Shapes { sample: vec![window, 1], inputs: Inputs::Values, output: vec![1] };
        Forecast { shapes, normalisation, persistence_rmse, seasons }
    }

    fn window(&self) -> usize {
        self.shapes.sample[0]
    }

    /// A window from `--values` (the last window of them, normalised), or test window
    /// `--index` with its actual next value.
    fn query<'t>(
        &self,
        source: &SampleSource,
        test: impl FnOnce() -> Result<&'t Dataset>,
    ) -> Result<(Sample, Option<f64>)> {
        let window = self.window();
        match (&source.values, source.index, &source.input[..], &source.text) {
            (Some(values), None, [], None) => {
                let parsed: Vec<f64> = values
                    .split(',')
                    .map(|v| v.trim().parse::<f64>().map_err(|_| anyhow::anyhow!("--values: {v:?} is not a number")))
                    .collect::<Result<_>>()?;
                if parsed.len() < window {
                    bail!("--values: {} values given; this model reads windows of {window}", parsed.len());
                }
                let values = parsed[parsed.len() - window..].iter().map(|&v| self.normalisation.apply(v)).collect();
                Ok((Sample { label: "--values".into(), values, real: window }, None))
            }
            (None, Some(i), [], None) => {
                let test = test()?;
                let sample = Sample::of_test(test, i)?;
                let Targets::Values { values, .. } = &test.targets else { unreachable!("a series") };
                Ok((sample, Some(self.normalisation.invert(values[i]))))
            }
            (None, None, [_], None) => bail!("this model takes {:?} samples, not images", self.shapes.sample),
            _ => bail!("give --values V1,V2,... (the latest {window} values) or --index N (a test window)"),
        }
    }
}

impl Task for Forecast {
    fn shapes(&self) -> &Shapes {
        &self.shapes
    }

    fn advice(&self) -> String {
        format!("a linear layer of out_features = {} (the values each sample predicts)", self.shapes.width())
    }

    fn head(&self, model: Model, x: TensorId, output: TensorId, _train: &TrainConfig) -> graph::Result<Supervised> {
        Supervised::regressor(model, x, output)
    }

    /// The windows as "x", their next values as "y", and "w" weighing each row: 0 for the
    /// rows that pad the batch, so that held-out figures are exact.
    fn feed(&self, batch: &Batch, set: &Dataset) -> Feed {
        let mut feed = inputs(set.inputs, batch.samples.clone());
        let per_sample = set.targets.per_sample();
        let rows = batch.values.len() / per_sample;
        let weights = (0..rows).flat_map(|r| std::iter::repeat_n((r < batch.valid) as u8 as f32, per_sample));
        feed.inputs.insert("y".into(), batch.values.clone());
        feed.inputs.insert("w".into(), weights.collect());
        feed
    }

    fn kept(&self) -> String {
        let n = &self.normalisation;
        serde_json::json!({ "mean": n.mean, "std": n.std, "persistence_rmse": self.persistence_rmse }).to_string()
    }

    fn figure(&self) -> Figure {
        Figure { name: "rmse", higher_is_better: false }
    }

    /// The loss is the mean squared error of the normalised values; the figure its root in
    /// the data's units. The summed squared error weighs out the padding rows that the batch
    /// loss counts.
    fn score(&self, sums: Sums) -> (f64, f64) {
        let n = sums.samples.max(1) as f64;
        let mse = sums.metric / (n * self.shapes.width() as f64);
        (mse, mse.sqrt() * self.normalisation.std)
    }

    fn show(&self, figure: f64) -> String {
        format!("rmse {figure:.4}")
    }

    fn baselines(&self) -> Vec<String> {
        let persistence =
            format!("persistence baseline (next = last) on the test set: rmse {:.4}", self.persistence_rmse);
        let seasonal = match (self.seasons.describe(), self.seasons.seasonal_rmse) {
            (Some(season), Some(rmse)) => {
                format!("seasonal naive baseline (next = one season back; {season}) on the test set: rmse {rmse:.4}")
            }
            _ => "no seasonal naive baseline: the training part's autocorrelation has no season ([data] season \
                  gives one)"
                .into(),
        };
        vec![persistence, seasonal]
    }

    /// The RMSE, MAE and MASE in the data's units beside the baselines.
    fn report(&self, mut evaluation: Evaluation) -> Result<Report> {
        let (sums, predicted) = evaluation.pass(self, true)?;
        let (loss, rmse) = self.score(sums);
        let Targets::Values { values: targets, .. } = &evaluation.test.targets else { unreachable!("a series") };
        let errors = predicted.iter().zip(targets).map(|(p, t)| ((p - t) as f64 * self.normalisation.std).abs());
        let mae = errors.sum::<f64>() / targets.len().max(1) as f64;
        let mase = mae / self.seasons.naive_mae;
        let (file, samples) = (evaluation.checkpoint.display().to_string(), evaluation.test.len());
        let (persistence, seasons) = (self.persistence_rmse, &self.seasons);
        let json = serde_json::json!({
            "checkpoint": file, "samples": samples, "loss": loss, "rmse": rmse, "mae": mae, "mase": mase,
            "persistence_rmse": persistence, "seasonal_naive_rmse": seasons.seasonal_rmse,
            "season": seasons.season.map(|(m, _)| m), "season_inferred": seasons.season.is_some_and(|(_, i)| i),
        });
        let seasonal = match (seasons.describe(), seasons.seasonal_rmse) {
            (Some(season), Some(rmse)) => format!("; seasonal naive, {season}: rmse {rmse:.4}"),
            _ => "; no season".into(),
        };
        let text = format!(
            "{file}: {samples} test samples, loss {loss:.4} {}, mae {mae:.4}, mase {mase:.3} (persistence baseline: \
             rmse {persistence:.4}{seasonal})",
            self.show(rmse)
        );
        Ok(Report { json, text })
    }

    /// The next value after a window, in the data's units (and the actual one of a test
    /// window).
    fn predict(&self, source: &SampleSource, model: &mut dyn Predictor, _top_k: usize) -> Result<Report> {
        let (sample, actual) = self.query(source, || model.test())?;
        let predicted = self.normalisation.invert(model.output(sample.values)?[0]);
        let text = match actual {
            Some(actual) => format!("forecast {predicted:.4} (actual {actual:.4})"),
            None => format!("forecast {predicted:.4}"),
        };
        Ok(Report { json: serde_json::json!({ "forecast": predicted, "actual": actual }), text })
    }

    fn sample(&self, source: &SampleSource, test: &Dataset) -> Result<Sample> {
        Ok(self.query(source, || Ok(test))?.0)
    }

    fn explained(&self, attribution: &Attribution) -> String {
        format!("forecast {:.4}", self.normalisation.invert(attribution.score))
    }
}

fn load(data: &DataConfig, _seed: u64) -> Result<(Data, Box<dyn Task>)> {
    let (data, task) = prepare(data)?;
    Ok((data, Box::new(task)))
}

/// The series' training and test windows, and the task they make.
fn prepare(data: &DataConfig) -> Result<(Data, Forecast)> {
    let DataSource::Series { path, column, window, test_fraction, season } = &data.source else {
        unreachable!("{:?} is not registered for forecasting", data.source)
    };
    let values = load_series_csv(path, column.as_deref()).context("loading [data] path")?;
    let forecast = data::Forecast::new(&values, *window, *test_fraction)
        .map_err(|e| anyhow::anyhow!("{}: [data] window / test_fraction: {e}", path.display()))?;
    let persistence = persistence_rmse(&forecast.test, &forecast.normalisation);
    let seasons = Seasons::of(&values, forecast.split, *season);
    let task = Forecast::new(*window, forecast.normalisation, persistence, seasons);
    Ok((Data { train: TrainSet::Fixed(forecast.train), test: forecast.test }, task))
}

/// The test windows, with the normalisation and baseline the checkpoint kept.
fn load_test(data: &DataConfig, _seed: u64, kept: Option<&str>) -> Result<(Dataset, Box<dyn Task>)> {
    let (read, mut task) = prepare(data)?;
    if let Some(kept) = kept {
        let value: serde_json::Value = serde_json::from_str(kept).context("the checkpoint's data metadata")?;
        let (Some(mean), Some(std), Some(persistence)) =
            (value["mean"].as_f64(), value["std"].as_f64(), value["persistence_rmse"].as_f64())
        else {
            bail!("the checkpoint holds no normalisation; was it trained on a series? (its data metadata: {kept})");
        };
        (task.normalisation, task.persistence_rmse) = (Normalisation { mean, std }, persistence);
    }
    Ok((read.test, Box::new(task)))
}
