//! Univariate time series from CSV: the values of one column, windows of them for one-step
//! forecasting, split by time and normalised by the training part's statistics.

use std::path::Path;

use crate::dataset::{Dataset, Inputs, Targets};
use crate::error::{DataError, Result};

/// The mean and standard deviation a series is normalised by: x' = (x - mean) / std.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalisation {
    /// Of the training part.
    pub mean: f64,
    /// Of the training part, never 0.
    pub std: f64,
}

impl Normalisation {
    /// `x` normalised.
    pub fn apply(&self, x: f64) -> f32 {
        ((x - self.mean) / self.std) as f32
    }

    /// Back in the data's units.
    pub fn invert(&self, x: f32) -> f64 {
        x as f64 * self.std + self.mean
    }
}

/// One column of a CSV file with a header line, in file order. `column` names it (None: the
/// last column). Empty values (gaps in the record) are filled by linear interpolation
/// between their neighbours, as the series is sampled at a fixed interval.
pub fn load_series_csv(path: &Path, column: Option<&str>) -> Result<Vec<f64>> {
    let bad = |line: usize, detail: String| DataError::Format { path: path.to_owned(), line, detail };
    let text = std::fs::read_to_string(path).map_err(|error| DataError::Io { path: path.to_owned(), error })?;
    let mut lines = text.lines();
    let header: Vec<String> =
        lines.next().unwrap_or_default().split(',').map(|h| h.trim().trim_matches('"').to_string()).collect();
    let index = match column {
        Some(name) => header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| bad(1, format!("no column {name:?}; the header has {header:?} ([data] column)")))?,
        None => header.len() - 1,
    };
    let mut values: Vec<Option<f64>> = Vec::new();
    for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let field = line.split(',').nth(index).ok_or_else(|| bad(i + 2, format!("no field {}", index + 1)))?;
        let field = field.trim().trim_matches('"');
        values.push(match field {
            "" => None,
            v => Some(v.parse().map_err(|_| bad(i + 2, format!("{v:?} is not a number")))?),
        });
    }
    fill_gaps(&values).ok_or_else(|| bad(0, format!("column {:?} holds fewer than two numbers", header[index])))
}

/// Linear interpolation over the missing values; those before the first or after the last
/// number take that number. None if fewer than two values are present.
fn fill_gaps(values: &[Option<f64>]) -> Option<Vec<f64>> {
    let known: Vec<(usize, f64)> = values.iter().enumerate().filter_map(|(i, v)| v.map(|v| (i, v))).collect();
    if known.len() < 2 {
        return None;
    }
    let mut out = Vec::with_capacity(values.len());
    let mut k = 0;
    for (i, value) in values.iter().enumerate() {
        while k + 2 < known.len() && known[k + 1].0 <= i {
            k += 1;
        }
        let ((i0, v0), (i1, v1)) = (known[k], known[k + 1]);
        let t = ((i as f64 - i0 as f64) / (i1 - i0) as f64).clamp(0.0, 1.0);
        out.push(value.unwrap_or(v0 + t * (v1 - v0)));
    }
    Some(out)
}

/// Windows of a series for one-step-ahead forecasting, split by time.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    /// Windows whose next value lies in the first part of the series.
    pub train: Dataset,
    /// Windows whose next value lies in the last `test_fraction` of it (their inputs may
    /// reach back into the first part, as a forecast made then would).
    pub test: Dataset,
    /// The training part's statistics, which normalise both.
    pub normalisation: Normalisation,
    /// The index of the first value held out: `series[..split]` is the training part.
    pub split: usize,
}

impl Forecast {
    /// Every window of `window` values [window, 1] with the next value as its target.
    pub fn new(series: &[f64], window: usize, test_fraction: f64) -> Result<Self, String> {
        let split = series.len() - (series.len() as f64 * test_fraction).round() as usize;
        if window == 0 || split <= window + 1 || split >= series.len() {
            return Err(format!(
                "{} values cannot give windows of {window} with {test_fraction} of them held out",
                series.len()
            ));
        }
        let train_part = &series[..split];
        let mean = train_part.iter().sum::<f64>() / split as f64;
        let var = train_part.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / split as f64;
        let normalisation = Normalisation { mean, std: var.sqrt().max(f64::EPSILON) };
        let scaled: Vec<f32> = series.iter().map(|&x| normalisation.apply(x)).collect();
        let windows = |targets: std::ops::Range<usize>| Dataset {
            samples: targets.clone().flat_map(|t| scaled[t - window..t].iter().copied()).collect(),
            sample_shape: vec![window, 1],
            inputs: Inputs::Values,
            targets: Targets::Values { values: targets.map(|t| scaled[t]).collect(), per_sample: 1 },
        };
        Ok(Forecast { train: windows(window..split), test: windows(split..series.len()), normalisation, split })
    }
}

/// The RMSE, in the data's units, of forecasting each window's next value as its last one
/// (the persistence baseline a forecaster must beat).
pub fn persistence_rmse(set: &Dataset, normalisation: &Normalisation) -> f64 {
    let Targets::Values { values, .. } = &set.targets else { return f64::NAN };
    let steps = set.sample_len();
    let squares: f64 = (0..set.len())
        .map(|i| ((set.samples[i * steps + steps - 1] - values[i]) as f64 * normalisation.std).powi(2))
        .sum();
    (squares / set.len() as f64).sqrt()
}

/// The season of a series: the lag of the most prominent peak of its autocorrelation once its
/// linear trend is removed (a peak's prominence is its height above the lowest correlation at
/// a shorter lag), where that peak is a real one (a correlation above 0.2, 0.3 above that
/// lowest point); None for a series with no such peak. Monthly data with a yearly pattern
/// gives 12, weekly data 52, the sunspots their 11-year cycle. Lags up to half the series
/// (at most 2,000) are looked at.
pub fn season(values: &[f64]) -> Option<usize> {
    const LEAST_CORRELATION: f64 = 0.2;
    const LEAST_PROMINENCE: f64 = 0.3;
    let residual = detrended(values);
    let lags = (values.len() / 2).min(2000);
    let variance: f64 = residual.iter().map(|r| r * r).sum();
    // A series that is its line but for rounding has no season to find in what is left.
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let spread: f64 = values.iter().map(|v| (v - mean).powi(2)).sum();
    if lags < 3 || variance <= 1e-12 * spread {
        return None;
    }
    let acf: Vec<f64> =
        (0..=lags).map(|k| residual.iter().zip(&residual[k..]).map(|(a, b)| a * b).sum::<f64>() / variance).collect();
    let mut lowest = acf[1];
    let mut best: Option<(usize, f64)> = None;
    for k in 2..lags {
        lowest = lowest.min(acf[k]);
        let peak = acf[k] > acf[k - 1] && acf[k] >= acf[k + 1];
        let prominence = acf[k] - lowest;
        if peak && acf[k] > LEAST_CORRELATION && prominence > LEAST_PROMINENCE && best.is_none_or(|b| prominence > b.1)
        {
            best = Some((k, prominence));
        }
    }
    best.map(|(k, _)| k)
}

/// `values` less their least-squares line.
fn detrended(values: &[f64]) -> Vec<f64> {
    let n = values.len() as f64;
    let (t_mean, mean) = ((n - 1.0) / 2.0, values.iter().sum::<f64>() / n);
    let spread: f64 = (0..values.len()).map(|t| (t as f64 - t_mean).powi(2)).sum();
    let covariance: f64 = values.iter().enumerate().map(|(t, v)| (t as f64 - t_mean) * (v - mean)).sum();
    let slope = if spread > 0.0 { covariance / spread } else { 0.0 };
    values.iter().enumerate().map(|(t, v)| v - mean - slope * (t as f64 - t_mean)).collect()
}

/// The RMSE of the seasonal naive forecast of each value from `split` on: the value one
/// `season` before it (the persistence forecast for a season of 1).
pub fn seasonal_naive_rmse(series: &[f64], split: usize, season: usize) -> f64 {
    let targets = split.max(season)..series.len();
    let n = targets.len().max(1) as f64;
    (targets.map(|t| (series[t] - series[t - season]).powi(2)).sum::<f64>() / n).sqrt()
}

/// The mean absolute error of the seasonal naive forecast over `train` itself: the scale of
/// the mean absolute scaled error (MASE, Hyndman and Koehler 2006), by which a forecaster's
/// test error is divided (below 1: better than that naive forecast was in sample).
pub fn naive_mae(train: &[f64], season: usize) -> f64 {
    let n = train.len().saturating_sub(season).max(1) as f64;
    train.windows(season + 1).map(|w| (w[season] - w[0]).abs()).sum::<f64>() / n
}
