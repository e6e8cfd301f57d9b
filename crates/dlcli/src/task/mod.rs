//! Tasks: what a model is trained to do with its data. A task owns everything that differs
//! from one to another: the `[data]` kinds it reads and what a batch feeds the graph, the
//! model's output and the loss head on it, its figures (the epoch line, metrics.jsonl,
//! `eval`'s report) and the one that picks best.safetensors, what `predict` prints for one
//! input, what an explained prediction is, and whether it decodes text token by token.
//!
//! One file per task; [`registered`] is the one place that says which task reads a data kind.
//! The commands reach a task only through [`Task`], so adding one is its file, its line in
//! [`registered`], and the data kind it reads (`config.rs`) with its reader (`crates/data`).

mod classification;
mod forecast;
mod language_model;

use std::path::PathBuf;

use anyhow::{Result, bail};
use data::{Batch, Dataset, Inputs};
use explain::Attribution;
use graph::{Executor, Feed, Model, Supervised, TensorId};

pub use language_model::encode;
/// The tasks' own types, for tests that build a model of given shapes without data.
#[cfg(test)]
pub use {classification::Classification, language_model::LanguageModel};

use crate::config::{DataConfig, DataSource, EvalMetric, TrainConfig};
use crate::dataset::Data;

/// A model's task.
pub trait Task {
    /// What each sample is and what the model gives for it.
    fn shapes(&self) -> &Shapes;

    /// What to end a model with whose output is not [`Shapes::output`].
    fn advice(&self) -> String;

    /// The training graph of `model`, whose input is `x` and output `output`: the loss and
    /// metric against the targets a batch feeds.
    fn head(&self, model: Model, x: TensorId, output: TensorId, train: &TrainConfig) -> graph::Result<Supervised>;

    /// What a batch of `set` feeds the graph: the samples as "x", the targets as "y" (and
    /// whatever else the head reads).
    fn feed(&self, batch: &Batch, set: &Dataset) -> Feed;

    /// What preparing the data learnt that a prediction needs (a vocabulary, a
    /// normalisation), as the JSON every checkpoint keeps; empty when nothing.
    fn kept(&self) -> String;

    /// The figure reported beside the loss (accuracy, rmse), and which way is better: what
    /// `monitor = "accuracy"` watches.
    fn figure(&self) -> Figure;

    /// The mean loss and the figure from what a pass over a set summed.
    fn score(&self, sums: Sums) -> (f64, f64);

    /// Figures beyond the loss and the figure, from the mean loss (a perplexity).
    fn extra(&self, _loss: f64) -> Vec<(&'static str, f64)> {
        Vec::new()
    }

    /// The figure as the epoch line shows it ("accuracy 98.12%").
    fn show(&self, figure: f64) -> String;

    /// What `train` says before the first epoch: the baselines the model must beat.
    fn baselines(&self) -> Vec<String> {
        Vec::new()
    }

    /// `eval`'s report on the test set.
    fn report(&self, evaluation: Evaluation) -> Result<Report>;

    /// What `predict` says of one input.
    fn predict(&self, source: &SampleSource, model: &mut dyn Predictor, top_k: usize) -> Result<Report>;

    /// The sample `explain` explains, from `--index`, `--input` or `--text`.
    fn sample(&self, source: &SampleSource, test: &Dataset) -> Result<Sample>;

    /// The explained prediction, in the data's terms ("class 3 (probability 97.12%)").
    fn explained(&self, attribution: &Attribution) -> String;

    /// The characters of a sample of token ids, for a task whose inputs are text.
    fn text(&self, _ids: &[f32]) -> Option<Vec<char>> {
        None
    }

    /// The vocabulary a model of this task decodes token by token (`generate`), if it does.
    fn decodes(&self) -> Option<&[char]> {
        None
    }
}

/// What each sample of a task is, and what a model gives for it.
#[derive(Debug, Clone, PartialEq)]
pub struct Shapes {
    /// One sample's shape: [C, H, W] for images, [T] token ids, [T, 1] a series' window.
    pub sample: Vec<usize>,
    /// Token ids of a vocabulary, or values.
    pub inputs: Inputs,
    /// What the model gives for one sample: [classes], [T, classes] (a class per position),
    /// [values].
    pub output: Vec<usize>,
}

impl Shapes {
    /// What a batch of `batch` samples must give.
    pub fn batch_output(&self, batch: usize) -> Vec<usize> {
        std::iter::once(batch).chain(self.output.iter().copied()).collect()
    }

    /// A linear layer's default width: the output's last axis (the classes, or the values
    /// each sample predicts).
    pub fn width(&self) -> usize {
        self.output.last().copied().unwrap_or(1)
    }
}

/// A figure's name in metrics.jsonl and `eval --json`, and its direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Figure {
    pub name: &'static str,
    pub higher_is_better: bool,
}

/// What a pass over a set sums: the loss weighted by the samples, the metric, and the samples.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sums {
    pub loss: f64,
    pub metric: f64,
    pub samples: usize,
}

impl Sums {
    /// Adds one batch's mean loss, summed metric and real rows.
    pub fn add(&mut self, loss: f32, metric: f64, valid: usize) {
        (self.loss, self.metric, self.samples) =
            (self.loss + loss as f64 * valid as f64, self.metric + metric, self.samples + valid);
    }
}

/// What `eval` measures a trained model with: an executor holding its parameters, the model
/// built for the config's batch, the test set and the config's `[eval] metrics`.
pub struct Evaluation<'a> {
    pub exec: &'a mut dyn Executor,
    pub model: &'a Supervised,
    pub test: &'a Dataset,
    pub batch: usize,
    pub metrics: &'a [EvalMetric],
    /// The checkpoint evaluated; pictures go beside it.
    pub checkpoint: PathBuf,
}

impl Evaluation<'_> {
    /// One pass over the test set, each batch fed as `task` feeds it: what it sums, and with
    /// `outputs` the model's output for every test sample, in order (none read back without).
    pub fn pass(&mut self, task: &dyn Task, outputs: bool) -> Result<(Sums, Vec<f32>)> {
        let model = self.model;
        let mut wanted = vec![model.loss, model.metric];
        wanted.extend(outputs.then_some(model.output));
        let run = self.exec.prepare(&model.graph, graph::Mode::Eval, &wanted)?;
        let width = task.shapes().output.iter().product::<usize>();
        let (mut sums, mut all) = (Sums::default(), Vec::new());
        for b in data::Batches::in_order(self.test, self.batch) {
            self.exec.run(run, &task.feed(&b, self.test), 0)?;
            let loss = self.exec.read(run, model.loss)?[0];
            sums.add(loss, self.exec.read(run, model.metric)?[0] as f64, b.valid);
            if outputs {
                all.extend_from_slice(&self.exec.read(run, model.output)?[..b.valid * width]);
            }
        }
        Ok((sums, all))
    }
}

/// What a command prints: one JSON object (`--json`) or lines for people.
pub struct Report {
    pub json: serde_json::Value,
    pub text: String,
}

impl Report {
    pub fn print(&self, json: bool) {
        match json {
            true => println!("{}", self.json),
            false => println!("{}", self.text),
        }
    }
}

/// A trained model as a task's prediction runs it; each part is made when first asked for.
pub trait Predictor {
    /// The model's output for one sample (a model built at batch 1).
    fn output(&mut self, sample: Vec<f32>) -> Result<Vec<f32>>;
    /// The logits of the token after `ids`, the model taking one token at a time.
    fn next_logits(&mut self, ids: &[u32]) -> Result<Vec<f32>>;
    /// The config's test set (for `--index`).
    fn test(&mut self) -> Result<&Dataset>;
}

/// Which sample a command looks at.
#[derive(clap::Args, Debug, Default)]
pub struct SampleSource {
    /// An image file (PNG or JPEG), resized to the model's input (`explain --report` and
    /// `--check` take several: --input a.png --input b.png).
    #[arg(long)]
    pub input: Vec<PathBuf>,
    /// A sample of the config's test set instead of an image.
    #[arg(long)]
    pub index: Option<usize>,
    /// For a character model: a text (its last window's worth of characters).
    #[arg(long)]
    pub text: Option<String>,
    /// For a forecaster: the latest values, oldest first, comma-separated, in the data's
    /// units (at least the model's window; the last window of them is used).
    #[arg(long)]
    pub values: Option<String>,
}

/// One sample as a command explains it.
pub struct Sample {
    /// What it is, for people: "test sample 3", a file name, the text.
    pub label: String,
    /// The model's input (values, or token ids as f32).
    pub values: Vec<f32>,
    /// Its real positions (a text's characters before the padding; all of any other input).
    pub real: usize,
}

impl Sample {
    /// Test sample `i` of `test`.
    pub fn of_test(test: &Dataset, i: usize) -> Result<Sample> {
        if i >= test.len() {
            bail!("--index {i} is past the {} test samples", test.len());
        }
        Ok(Sample { label: format!("test sample {i}"), values: test.sample(i).to_vec(), real: test.sample_len() })
    }
}

/// Reads a config's training data and test set (with its seed), and makes the task from them.
pub type Load = fn(&DataConfig, u64) -> Result<(Data, Box<dyn Task>)>;
/// Reads the test set alone, the task as a checkpoint's kept data (its `kept()`) restores it,
/// or as the data makes it.
pub type LoadTest = fn(&DataConfig, u64, Option<&str>) -> Result<(Dataset, Box<dyn Task>)>;
/// Makes the task from a checkpoint's kept data alone.
pub type Restore = fn(&DataConfig, &str) -> Result<Box<dyn Task>>;

/// How a task is made: from its data (to train), from its test set (to evaluate, predict and
/// explain a checkpoint), or from a checkpoint alone.
pub struct Registration {
    pub load: Load,
    pub load_test: LoadTest,
    /// Where the task's model runs without its data (a language model generating text).
    pub restore: Option<Restore>,
}

/// The task that reads `[data] kind`: the one place a task is registered.
fn registered(source: &DataSource) -> Registration {
    match source {
        DataSource::Idx { .. } | DataSource::Digits { .. } | DataSource::Cifar10 { .. } => classification::REGISTRATION,
        DataSource::ImageFolder { .. } => classification::REGISTRATION,
        DataSource::Text { .. } => language_model::REGISTRATION,
        DataSource::Series { .. } => forecast::REGISTRATION,
    }
}

/// The config's data, and its task: what `train` reads.
pub fn load(data: &DataConfig, seed: u64) -> Result<(Data, Box<dyn Task>)> {
    (registered(&data.source).load)(data, seed)
}

/// The test set and the task as a checkpoint's `kept` data restores it (as the data makes it
/// when None): what `eval`, `predict`, `explain` and `summary` read (the training files of
/// images are not read).
pub fn load_test(data: &DataConfig, seed: u64, kept: Option<&str>) -> Result<(Dataset, Box<dyn Task>)> {
    (registered(&data.source).load_test)(data, seed, kept)
}

/// The task as a checkpoint's `kept` data restores it without reading the data, for a task
/// whose model runs on its own (a language model generating text); None for the others.
pub fn restore(data: &DataConfig, kept: &str) -> Result<Option<Box<dyn Task>>> {
    registered(&data.source).restore.map(|restore| restore(data, kept)).transpose()
}

/// The feed of the samples of `set`'s kind (one, or a batch) as "x": their values, or their
/// token ids.
pub fn inputs(set_inputs: Inputs, samples: Vec<f32>) -> Feed {
    let mut feed = Feed::default();
    match set_inputs {
        Inputs::Tokens { .. } => {
            feed.labels.insert("x".into(), samples.iter().map(|&id| id as u32).collect());
        }
        Inputs::Values => {
            feed.inputs.insert("x".into(), samples);
        }
    }
    feed
}

/// A batch of a set with class labels: the samples as "x", the labels as "y" ([`data::PADDING_LABEL`]
/// on the rows that pad it).
fn labelled(batch: &Batch, set: &Dataset) -> Feed {
    let mut feed = inputs(set.inputs, batch.samples.clone());
    feed.labels.insert("y".into(), batch.labels.clone());
    feed
}

/// The `k` largest of `probabilities` with their indices, largest first.
fn top(probabilities: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut ranked: Vec<(usize, f32)> = probabilities.iter().copied().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked.truncate(k.max(1));
    ranked
}

/// `ranked` (what, probability) as `predict` reports them: JSON, or lines "`key` what: p%".
fn ranked_report(ranked: &[(serde_json::Value, f32)], key: &str) -> Report {
    let top: Vec<_> = ranked.iter().map(|(c, p)| serde_json::json!({key: c, "probability": p})).collect();
    let lines: Vec<String> = ranked.iter().map(|(what, p)| format!("{key} {what}: {:.2}%", 100.0 * p)).collect();
    Report { json: serde_json::json!({ "top": top }), text: lines.join("\n") }
}
