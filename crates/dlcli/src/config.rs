//! The TOML config: parsed with `toml_edit`, which keeps every key's position, and validated
//! into typed settings. Validation collects every problem before failing, each with
//! file:line:column, the key path, what was expected, and a did-you-mean for unknown names.

use std::fmt;
use std::path::{Path, PathBuf};

use kernels::Unary;
use toml_edit::{Item, TableLike, Value};

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    pub key: String,
    pub message: String,
}

/// Every problem found in one file.
#[derive(Debug)]
pub struct ConfigErrors {
    pub path: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(f, "{}: {n} problem{} in the config", self.path.display(), if n == 1 { "" } else { "s" })?;
        for p in &self.problems {
            write!(f, "\n  {}:{}:{}: {}: {}", self.path.display(), p.line, p.column, p.key, p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Where the data comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum DataSource {
    /// MNIST-style IDX pairs for the training and test sets.
    Idx { train_images: PathBuf, train_labels: PathBuf, test_images: PathBuf, test_labels: PathBuf },
    /// The digits CSV, split into train and test by `test_fraction`.
    Digits { path: PathBuf, test_fraction: f64 },
    /// CIFAR-10 binary batch files.
    Cifar10 { train_files: Vec<PathBuf>, test_files: Vec<PathBuf> },
    /// One sub-folder per class, images converted to [channels, height, width].
    ImageFolder { train_dir: PathBuf, test_dir: PathBuf, shape: [usize; 3] },
}

impl DataSource {
    /// Makes the dataset paths absolute, a relative one taken from `base` (the config file's
    /// directory, as Cargo and docker-compose read theirs), so that a run's resolved config
    /// works from any working directory.
    fn resolve(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                // Canonical where the file exists ("configs/../datasets" reads "datasets").
                let joined = base.join(&*p);
                *p = joined.canonicalize().or_else(|_| std::path::absolute(&joined)).unwrap_or(joined);
            }
        };
        match self {
            DataSource::Idx { train_images, train_labels, test_images, test_labels } => {
                [train_images, train_labels, test_images, test_labels].into_iter().for_each(fix)
            }
            DataSource::Digits { path, .. } => fix(path),
            DataSource::Cifar10 { train_files, test_files } => train_files.iter_mut().chain(test_files).for_each(fix),
            DataSource::ImageFolder { train_dir, test_dir, .. } => [train_dir, test_dir].into_iter().for_each(fix),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct DataConfig {
    pub source: DataSource,
    /// Normalisation applied to every pixel: (x - mean) / std.
    pub mean: f32,
    pub std: f32,
    /// Share of each class of the training set held out for validation (0: none; the test set
    /// then picks the best checkpoint).
    pub validation_fraction: f64,
    pub augment: data::Augment,
}

/// One layer; `inputs` name earlier layers (by default, the previous layer).
#[derive(Debug, Clone, PartialEq)]
pub struct LayerConfig {
    pub name: String,
    pub inputs: Vec<String>,
    pub kind: LayerKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LayerKind {
    Conv2d { out_channels: usize, kernel: usize, stride: usize, padding: usize, dilation: usize, bias: bool },
    Linear { out_features: usize, bias: bool },
    MaxPool2d { kernel: usize, stride: usize, padding: usize },
    AvgPool2d { kernel: usize, stride: usize, padding: usize },
    GlobalAvgPool,
    BatchNorm { eps: f32, momentum: f32 },
    LayerNorm { eps: f32 },
    Dropout { p: f32 },
    Flatten,
    Activation(Unary),
    Add,
    Concat,
}

/// A config value that is one of a few names, parsed once into its enum: no later code
/// matches on the strings.
pub trait Named: Sized + Copy + PartialEq + 'static {
    const ALL: &'static [(&'static str, Self)];

    fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, v)| *v == self).map_or("", |(n, _)| n)
    }

    fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|(n, _)| *n).collect()
    }

    fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }
}

/// Which executor runs a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Device {
    /// A hardware GPU if there is one, else the CPU executor.
    Auto,
    /// The best wgpu adapter, even a software one (lavapipe).
    Gpu,
    Cpu,
}

impl Named for Device {
    const ALL: &'static [(&'static str, Self)] = &[("auto", Device::Auto), ("gpu", Device::Gpu), ("cpu", Device::Cpu)];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptimizerKind {
    Sgd,
    Adam,
    /// Adam with decoupled weight decay.
    AdamW,
}

impl Named for OptimizerKind {
    const ALL: &'static [(&'static str, Self)] =
        &[("sgd", OptimizerKind::Sgd), ("adam", OptimizerKind::Adam), ("adamw", OptimizerKind::AdamW)];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleKind {
    Constant,
    /// x0.1 at each third of the run.
    Step,
    /// Linear warm-up, then a cosine to zero.
    Cosine,
    OneCycle,
}

impl Named for ScheduleKind {
    const ALL: &'static [(&'static str, Self)] = &[
        ("constant", ScheduleKind::Constant),
        ("step", ScheduleKind::Step),
        ("cosine", ScheduleKind::Cosine),
        ("one_cycle", ScheduleKind::OneCycle),
    ];
}

/// The metric that picks the best checkpoint and stops early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorMetric {
    Accuracy,
    Loss,
}

impl Named for MonitorMetric {
    const ALL: &'static [(&'static str, Self)] =
        &[("accuracy", MonitorMetric::Accuracy), ("loss", MonitorMetric::Loss)];
}

/// What `dlcli eval` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalMetric {
    Loss,
    Accuracy,
    /// The label among the k largest logits.
    TopK(usize),
    /// Precision, recall and F1 of each class.
    PerClass,
    /// The confusion matrix and confusion.png.
    Confusion,
}

impl EvalMetric {
    const NAMED: [(&str, EvalMetric); 4] = [
        ("loss", EvalMetric::Loss),
        ("accuracy", EvalMetric::Accuracy),
        ("per_class", EvalMetric::PerClass),
        ("confusion", EvalMetric::Confusion),
    ];

    fn parse(name: &str) -> Option<EvalMetric> {
        match name.strip_prefix("top").map(str::parse::<usize>) {
            Some(Ok(k)) if k > 0 => Some(EvalMetric::TopK(k)),
            _ => Self::NAMED.iter().find(|(n, _)| *n == name).map(|(_, m)| *m),
        }
    }

    pub fn name(self) -> String {
        match self {
            EvalMetric::TopK(k) => format!("top{k}"),
            other => Self::NAMED.iter().find(|(_, m)| *m == other).map_or(String::new(), |(n, _)| n.to_string()),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    pub epochs: u64,
    /// The executor training runs on; `--device` overrides it and the run records the choice.
    pub device: Device,
    pub batch_size: usize,
    pub seed: u64,
    pub optimizer: OptimizerKind,
    pub lr: f32,
    pub momentum: f32,
    pub weight_decay: f32,
    pub schedule: ScheduleKind,
    pub warmup_steps: u64,
    pub clip_grad_norm: Option<f32>,
    pub label_smoothing: f32,
    /// Checkpoints kept besides the best one.
    pub keep_last: usize,
    /// Stop when the monitored metric has not improved by `min_delta` for this many epochs
    /// (0: never).
    pub patience: u64,
    /// Of the validation set (the test set when there is none).
    pub monitor: MonitorMetric,
    pub min_delta: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub data: DataConfig,
    pub layers: Vec<LayerConfig>,
    pub train: TrainConfig,
    /// What `dlcli eval` reports.
    pub eval_metrics: Vec<EvalMetric>,
}

const DEFAULT_EVAL_METRICS: [EvalMetric; 4] =
    [EvalMetric::Loss, EvalMetric::Accuracy, EvalMetric::PerClass, EvalMetric::Confusion];

const ACTIVATIONS: [(&str, Unary); 6] = [
    ("relu", Unary::Relu),
    ("gelu", Unary::GeluErf),
    ("sigmoid", Unary::Sigmoid),
    ("tanh", Unary::Tanh),
    ("silu", Unary::Silu),
    ("leaky_relu", Unary::LeakyRelu(0.01)),
];
const LAYER_TYPES: [&str; 17] = [
    "conv2d",
    "linear",
    "max_pool2d",
    "avg_pool2d",
    "global_avg_pool",
    "batch_norm",
    "layer_norm",
    "dropout",
    "flatten",
    "add",
    "concat",
    "relu",
    "gelu",
    "sigmoid",
    "tanh",
    "silu",
    "leaky_relu",
];
const KINDS: [&str; 4] = ["idx", "digits", "cifar10", "image_folder"];

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
            path: path.to_owned(),
            problems: vec![Problem { line: 0, column: 0, key: "(file)".into(), message: e.to_string() }],
        })?;
        let mut config = Config::parse(path, &text)?;
        config.data.source.resolve(path.parent().unwrap_or(Path::new("")));
        Ok(config)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
        let fail = |problems| ConfigErrors { path: path.to_owned(), problems };
        let doc = toml_edit::Document::parse(text).map_err(|e| {
            let (line, column) = e.span().map_or((0, 0), |s| line_column(text, s.start));
            fail(vec![Problem { line, column, key: "(syntax)".into(), message: e.message().trim().to_string() }])
        })?;
        let mut v = Validator { text, problems: Vec::new(), here: None };
        let config = v.config(doc.as_table());
        if v.problems.is_empty() { Ok(config) } else { Err(fail(v.problems)) }
    }
}

fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// Levenshtein distance, for did-you-mean.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for j in 0..b.len() {
            let cur = row[j + 1];
            row[j + 1] = (prev + (ca != b[j]) as usize).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

fn did_you_mean(word: &str, choices: &[&str]) -> String {
    match choices.iter().min_by_key(|c| distance(word, c)) {
        Some(best) if distance(word, best) <= 2.max(word.len() / 3) => format!(" (did you mean {best:?}?)"),
        _ => String::new(),
    }
}

/// Reads typed values out of the document, recording a problem for each one that is wrong.
/// Where a number must lie, stated as the error states it.
#[derive(Debug, Clone, Copy)]
enum Bound {
    /// Any finite number.
    Finite,
    Positive,
    NonNegative,
    AtLeastOne,
    /// [0, 1)
    Fraction,
    /// (0, 1)
    OpenFraction,
    /// [0, 1]
    Probability,
}

impl Bound {
    fn holds(self, v: f64) -> bool {
        v.is_finite()
            && match self {
                Bound::Finite => true,
                Bound::Positive => v > 0.0,
                Bound::NonNegative => v >= 0.0,
                Bound::AtLeastOne => v >= 1.0,
                Bound::Fraction => (0.0..1.0).contains(&v),
                Bound::OpenFraction => v > 0.0 && v < 1.0,
                Bound::Probability => (0.0..=1.0).contains(&v),
            }
    }

    fn text(self) -> &'static str {
        match self {
            Bound::Finite => "a finite number",
            Bound::Positive => "a positive number",
            Bound::NonNegative => "zero or more",
            Bound::AtLeastOne => "at least 1",
            Bound::Fraction => "in [0, 1)",
            Bound::OpenFraction => "in (0, 1)",
            Bound::Probability => "in [0, 1]",
        }
    }
}

struct Validator<'t> {
    text: &'t str,
    problems: Vec<Problem>,
    /// Where the table being read starts: a missing key is reported there.
    here: Option<std::ops::Range<usize>>,
}

impl Validator<'_> {
    fn problem(&mut self, span: Option<std::ops::Range<usize>>, key: &str, message: String) {
        let (line, column) = span.map_or((0, 0), |s| line_column(self.text, s.start));
        self.problems.push(Problem { line, column, key: key.to_string(), message });
    }

    /// Unknown keys of `table` (at `path`) are problems, with the nearest known key.
    fn unknown_keys(&mut self, table: &dyn TableLike, path: &str, known: &[&str]) {
        for (key, _) in table.iter() {
            if !known.contains(&key) {
                let span = table.key(key).and_then(|k| k.span());
                let hint = did_you_mean(key, known);
                self.problem(span, &join(path, key), format!("unknown key{hint}; expected one of {known:?}"));
            }
        }
    }

    fn value<'d>(&mut self, table: &'d dyn TableLike, path: &str, key: &str, required: bool) -> Option<&'d Value> {
        match table.get(key) {
            Some(Item::Value(v)) => Some(v),
            Some(other) => {
                self.problem(other.span(), &join(path, key), "expected a value, not a table".into());
                None
            }
            None => {
                if required {
                    self.problem(self.here.clone(), &join(path, key), "missing; this key is required".into());
                }
                None
            }
        }
    }

    fn usize(&mut self, t: &dyn TableLike, path: &str, key: &str, default: Option<usize>) -> usize {
        match self.value(t, path, key, default.is_none()) {
            Some(v) => match v.as_integer() {
                Some(i) if i >= 0 => i as usize,
                _ => {
                    self.problem(
                        v.span(),
                        &join(path, key),
                        format!("expected a non-negative integer, got {}", v.to_string().trim()),
                    );
                    0
                }
            },
            None => default.unwrap_or(0),
        }
    }

    fn f32(&mut self, t: &dyn TableLike, path: &str, key: &str, default: Option<f32>) -> f32 {
        match self.value(t, path, key, default.is_none()) {
            Some(v) => match (v.as_float(), v.as_integer()) {
                (Some(f), _) => f as f32,
                (_, Some(i)) => i as f32,
                _ => {
                    self.problem(
                        v.span(),
                        &join(path, key),
                        format!("expected a number, got {}", v.to_string().trim()),
                    );
                    0.0
                }
            },
            None => default.unwrap_or(0.0),
        }
    }

    /// A problem unless `value` (of `key`) lies within `bound`.
    fn check_bound(&mut self, t: &dyn TableLike, path: &str, key: &str, value: f64, bound: Bound) {
        if !bound.holds(value) {
            let span = t.get(key).and_then(|i| i.span());
            self.problem(span, &join(path, key), format!("must be {}, got {value}", bound.text()));
        }
    }

    /// A number within `bound`.
    fn f32_in(&mut self, t: &dyn TableLike, path: &str, key: &str, default: Option<f32>, bound: Bound) -> f32 {
        let v = self.f32(t, path, key, default);
        self.check_bound(t, path, key, v as f64, bound);
        v
    }

    /// A non-negative integer, at least 1.
    fn count(&mut self, t: &dyn TableLike, path: &str, key: &str, default: Option<usize>) -> usize {
        let v = self.usize(t, path, key, default);
        if t.get(key).is_some_and(|i| i.as_integer().is_some()) {
            self.check_bound(t, path, key, v as f64, Bound::AtLeastOne);
        }
        v
    }

    fn bool(&mut self, t: &dyn TableLike, path: &str, key: &str, default: bool) -> bool {
        match self.value(t, path, key, false) {
            Some(v) => v.as_bool().unwrap_or_else(|| {
                self.problem(
                    v.span(),
                    &join(path, key),
                    format!("expected true or false, got {}", v.to_string().trim()),
                );
                default
            }),
            None => default,
        }
    }

    fn string(&mut self, t: &dyn TableLike, path: &str, key: &str, default: Option<&str>) -> String {
        match self.value(t, path, key, default.is_none()) {
            Some(v) => v.as_str().map(str::to_string).unwrap_or_else(|| {
                self.problem(v.span(), &join(path, key), format!("expected a string, got {}", v.to_string().trim()));
                String::new()
            }),
            None => default.unwrap_or_default().to_string(),
        }
    }

    /// A required array of path strings.
    fn paths(&mut self, t: &dyn TableLike, path: &str, key: &str) -> Vec<PathBuf> {
        let value = self.value(t, path, key, true);
        match value.and_then(Value::as_array) {
            Some(a) if a.iter().all(|v| v.as_str().is_some()) => {
                a.iter().filter_map(|v| v.as_str().map(PathBuf::from)).collect()
            }
            _ => {
                if let Some(v) = value {
                    self.problem(v.span(), &join(path, key), "expected an array of file paths".into());
                }
                Vec::new()
            }
        }
    }

    /// One of an enum's names.
    fn named<T: Named>(&mut self, t: &dyn TableLike, path: &str, key: &str, default: T) -> T {
        let name = self.choice(t, path, key, default.name(), &T::names());
        T::parse(&name).unwrap_or(default)
    }

    /// A string that must be one of `choices`.
    fn choice(&mut self, t: &dyn TableLike, path: &str, key: &str, default: &str, choices: &[&str]) -> String {
        let s = self.string(t, path, key, Some(default));
        if !choices.contains(&s.as_str()) {
            let span = t.get(key).and_then(|i| i.span());
            self.problem(
                span,
                &join(path, key),
                format!("{s:?} is not one of {choices:?}{}", did_you_mean(&s, choices)),
            );
        }
        s
    }

    fn table<'d>(&mut self, parent: &'d dyn TableLike, key: &str) -> Option<&'d dyn TableLike> {
        match parent.get(key) {
            Some(item) => match item.as_table_like() {
                Some(t) => {
                    self.here = item.span();
                    Some(t)
                }
                None => {
                    self.problem(item.span(), key, "expected a table".into());
                    None
                }
            },
            None => {
                self.problem(None, key, format!("missing; add a [{key}] table (see `dlcli config defaults`)"));
                None
            }
        }
    }

    fn config(&mut self, root: &dyn TableLike) -> Config {
        self.unknown_keys(root, "", &["data", "model", "train", "eval"]);
        let data = self.table(root, "data").map(|t| self.data(t));
        let layers = self.table(root, "model").map(|t| self.model(t)).unwrap_or_default();
        let train = match root.get("train").and_then(Item::as_table_like) {
            Some(t) => {
                self.here = root.get("train").and_then(Item::span);
                self.train(t)
            }
            None => self.train(&toml_edit::Table::new()),
        };
        let data = data.unwrap_or(DataConfig {
            source: DataSource::Digits { path: PathBuf::new(), test_fraction: 0.0 },
            mean: 0.0,
            std: 1.0,
            validation_fraction: 0.0,
            augment: data::Augment::default(),
        });
        let eval_metrics = match root.get("eval").and_then(Item::as_table_like) {
            Some(t) => {
                self.here = root.get("eval").and_then(Item::span);
                self.eval_metrics(t)
            }
            None => DEFAULT_EVAL_METRICS.to_vec(),
        };
        Config { data, layers, train, eval_metrics }
    }

    fn eval_metrics(&mut self, t: &dyn TableLike) -> Vec<EvalMetric> {
        self.unknown_keys(t, "eval", &["metrics"]);
        let Some(v) = self.value(t, "eval", "metrics", false) else {
            return DEFAULT_EVAL_METRICS.to_vec();
        };
        let names: Vec<&str> = v.as_array().map_or(Vec::new(), |a| a.iter().filter_map(|m| m.as_str()).collect());
        let metrics: Vec<EvalMetric> = names.iter().filter_map(|m| EvalMetric::parse(m)).collect();
        if names.is_empty() || metrics.len() != names.len() {
            let known: Vec<String> = DEFAULT_EVAL_METRICS.iter().map(|m| m.name()).collect();
            let detail =
                format!("expected a list of {known:?} or \"top<k>\" (e.g. \"top3\"), got {}", v.to_string().trim());
            self.problem(v.span(), "eval.metrics", detail);
        }
        metrics
    }

    fn data(&mut self, t: &dyn TableLike) -> DataConfig {
        let kind = self.choice(t, "data", "kind", "idx", &KINDS);
        let mut known = vec!["kind", "mean", "std", "validation_fraction", "random_crop_padding", "horizontal_flip"];
        let source = if !KINDS.contains(&kind.as_str()) {
            // The kind's own keys cannot be checked until the kind is known.
            known.extend(t.iter().map(|(k, _)| k).filter(|k| !["mean", "std"].contains(k)));
            DataSource::Digits { path: PathBuf::new(), test_fraction: 0.0 }
        } else if kind == "cifar10" {
            known.extend(["train_files", "test_files"]);
            DataSource::Cifar10 {
                train_files: self.paths(t, "data", "train_files"),
                test_files: self.paths(t, "data", "test_files"),
            }
        } else if kind == "image_folder" {
            known.extend(["train_dir", "test_dir", "channels", "height", "width"]);
            let mut path = |key| PathBuf::from(self.string(t, "data", key, None));
            let (train_dir, test_dir) = (path("train_dir"), path("test_dir"));
            let shape = [
                self.count(t, "data", "channels", Some(3)),
                self.count(t, "data", "height", None),
                self.count(t, "data", "width", None),
            ];
            DataSource::ImageFolder { train_dir, test_dir, shape }
        } else if kind == "digits" {
            known.extend(["path", "test_fraction"]);
            let path = self.string(t, "data", "path", Some("datasets/digits/digits.csv.gz")).into();
            let test_fraction = self.f32_in(t, "data", "test_fraction", Some(0.2), Bound::OpenFraction) as f64;
            DataSource::Digits { path, test_fraction }
        } else {
            known.extend(["train_images", "train_labels", "test_images", "test_labels"]);
            let mut path = |key| PathBuf::from(self.string(t, "data", key, None));
            DataSource::Idx {
                train_images: path("train_images"),
                train_labels: path("train_labels"),
                test_images: path("test_images"),
                test_labels: path("test_labels"),
            }
        };
        let mean = self.f32_in(t, "data", "mean", Some(0.0), Bound::Finite);
        let std = self.f32_in(t, "data", "std", Some(1.0), Bound::Positive);
        let validation_fraction = self.f32_in(t, "data", "validation_fraction", Some(0.0), Bound::Fraction) as f64;
        let augment = data::Augment {
            crop_padding: self.usize(t, "data", "random_crop_padding", Some(0)),
            horizontal_flip: self.bool(t, "data", "horizontal_flip", false),
        };
        self.unknown_keys(t, "data", &known);
        DataConfig { source, mean, std, validation_fraction, augment }
    }

    fn model(&mut self, t: &dyn TableLike) -> Vec<LayerConfig> {
        self.unknown_keys(t, "model", &["layers"]);
        type Spanned<'d> = (&'d dyn TableLike, Option<std::ops::Range<usize>>);
        let tables: Vec<Spanned> = match t.get("layers") {
            Some(Item::ArrayOfTables(a)) => a.iter().map(|t| (t as &dyn TableLike, t.span())).collect(),
            Some(Item::Value(Value::Array(a))) => a
                .iter()
                .filter_map(|v| match v.as_inline_table() {
                    Some(t) => Some((t as &dyn TableLike, t.span())),
                    None => {
                        self.problem(v.span(), "model.layers", "each layer is a table like { type = \"relu\" }".into());
                        None
                    }
                })
                .collect(),
            other => {
                self.problem(
                    other.and_then(|i| i.span()),
                    "model.layers",
                    "missing; list the layers as [[model.layers]] tables".into(),
                );
                Vec::new()
            }
        };
        let mut layers: Vec<LayerConfig> = Vec::new();
        for (i, (layer, span)) in tables.into_iter().enumerate() {
            let path = format!("model.layers[{i}]");
            self.here = span;
            if let Some(l) = self.layer(layer, &path, &layers) {
                layers.push(l);
            }
        }
        layers
    }

    fn layer(&mut self, t: &dyn TableLike, path: &str, earlier: &[LayerConfig]) -> Option<LayerConfig> {
        let kind = self.string(t, path, "type", None);
        let name = self.string(t, path, "name", Some(&format!("{kind}{}", earlier.len() + 1)));
        if let Some(j) = earlier.iter().position(|l| l.name == name) {
            let span = t.get("name").and_then(|i| i.span()).or(self.here.clone());
            let detail = format!("{name:?} already names model.layers[{j}]; layer names must be unique");
            self.problem(span, &join(path, "name"), detail);
        }
        let inputs: Vec<String> = match t.get("inputs").and_then(Item::as_array) {
            Some(a) => a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
            None => earlier.last().map(|l| vec![l.name.clone()]).unwrap_or_default(),
        };
        // An empty list is the network's input, which only the first layer may take.
        if let Some(given) = t.get("inputs").filter(|_| inputs.is_empty() && !earlier.is_empty()) {
            let detail = "expected a list naming at least one earlier layer, e.g. inputs = [\"conv1\"]".into();
            self.problem(given.span(), &join(path, "inputs"), detail);
        }
        for input in &inputs {
            if !earlier.iter().any(|l| &l.name == input) {
                let names: Vec<&str> = earlier.iter().map(|l| l.name.as_str()).collect();
                let span = t.get("inputs").and_then(|i| i.span());
                self.problem(
                    span,
                    &join(path, "inputs"),
                    format!("no earlier layer is named {input:?}{}", did_you_mean(input, &names)),
                );
            }
        }
        let mut known = vec!["type", "name", "inputs"];
        let kind = self.layer_kind(t, path, &kind, &mut known)?;
        self.unknown_keys(t, path, &known);
        Some(LayerConfig { name, inputs, kind })
    }

    /// A layer's kind and its fields (named in `known` as they are read), or None for an
    /// unknown type, which is reported.
    fn layer_kind(
        &mut self,
        t: &dyn TableLike,
        path: &str,
        kind: &str,
        known: &mut Vec<&'static str>,
    ) -> Option<LayerKind> {
        // Sizes are at least 1, padding any count.
        let mut num = |v: &mut Self, key: &'static str, default: Option<usize>| {
            known.push(key);
            if key == "padding" { v.usize(t, path, key, default) } else { v.count(t, path, key, default) }
        };
        Some(match kind {
            "conv2d" => {
                let out_channels = num(self, "out_channels", None);
                let kernel = num(self, "kernel", None);
                let (stride, padding, dilation) =
                    (num(self, "stride", Some(1)), num(self, "padding", Some(0)), num(self, "dilation", Some(1)));
                known.push("bias");
                LayerKind::Conv2d {
                    out_channels,
                    kernel,
                    stride,
                    padding,
                    dilation,
                    bias: self.bool(t, path, "bias", true),
                }
            }
            "linear" => {
                let out_features = num(self, "out_features", None);
                known.push("bias");
                LayerKind::Linear { out_features, bias: self.bool(t, path, "bias", true) }
            }
            "max_pool2d" | "avg_pool2d" => {
                let kernel = num(self, "kernel", None);
                let (stride, padding) = (num(self, "stride", Some(kernel)), num(self, "padding", Some(0)));
                if kind == "max_pool2d" {
                    LayerKind::MaxPool2d { kernel, stride, padding }
                } else {
                    LayerKind::AvgPool2d { kernel, stride, padding }
                }
            }
            "global_avg_pool" => LayerKind::GlobalAvgPool,
            "batch_norm" => {
                known.extend(["eps", "momentum"]);
                LayerKind::BatchNorm {
                    eps: self.f32_in(t, path, "eps", Some(1e-5), Bound::Positive),
                    momentum: self.f32_in(t, path, "momentum", Some(0.1), Bound::Probability),
                }
            }
            "layer_norm" => {
                known.push("eps");
                LayerKind::LayerNorm { eps: self.f32_in(t, path, "eps", Some(1e-5), Bound::Positive) }
            }
            "dropout" => {
                known.push("p");
                LayerKind::Dropout { p: self.f32_in(t, path, "p", Some(0.5), Bound::Fraction) }
            }
            "flatten" => LayerKind::Flatten,
            "add" => LayerKind::Add,
            "concat" => LayerKind::Concat,
            "leaky_relu" => {
                known.push("slope");
                LayerKind::Activation(Unary::LeakyRelu(self.f32_in(t, path, "slope", Some(0.01), Bound::Finite)))
            }
            other => match ACTIVATIONS.iter().find(|(n, _)| *n == other) {
                Some(&(_, op)) => LayerKind::Activation(op),
                None => {
                    if !other.is_empty() {
                        let span = t.get("type").and_then(|i| i.span());
                        self.problem(
                            span,
                            &join(path, "type"),
                            format!(
                                "unknown layer type {other:?}{}; expected one of {LAYER_TYPES:?}",
                                did_you_mean(other, &LAYER_TYPES)
                            ),
                        );
                    }
                    return None;
                }
            },
        })
    }

    fn train(&mut self, t: &dyn TableLike) -> TrainConfig {
        let p = "train";
        let clip = self.f32_in(t, p, "clip_grad_norm", Some(0.0), Bound::NonNegative);
        let config = TrainConfig {
            epochs: self.count(t, p, "epochs", Some(2)) as u64,
            device: self.named(t, p, "device", Device::Auto),
            batch_size: self.count(t, p, "batch_size", Some(64)),
            seed: self.usize(t, p, "seed", Some(0)) as u64,
            optimizer: self.named(t, p, "optimizer", OptimizerKind::Adam),
            lr: self.f32_in(t, p, "lr", Some(1e-3), Bound::Positive),
            momentum: self.f32_in(t, p, "momentum", Some(0.9), Bound::Fraction),
            weight_decay: self.f32_in(t, p, "weight_decay", Some(0.0), Bound::NonNegative),
            schedule: self.named(t, p, "schedule", ScheduleKind::Constant),
            warmup_steps: self.usize(t, p, "warmup_steps", Some(0)) as u64,
            clip_grad_norm: (clip > 0.0).then_some(clip),
            label_smoothing: self.f32_in(t, p, "label_smoothing", Some(0.0), Bound::Fraction),
            keep_last: self.count(t, p, "keep_last", Some(2)),
            patience: self.usize(t, p, "patience", Some(0)) as u64,
            monitor: self.named(t, p, "monitor", MonitorMetric::Accuracy),
            min_delta: self.f32_in(t, p, "min_delta", Some(0.0), Bound::NonNegative) as f64,
        };
        self.unknown_keys(t, p, &TRAIN_KEYS);
        config
    }
}

const TRAIN_KEYS: [&str; 16] = [
    "epochs",
    "device",
    "batch_size",
    "seed",
    "optimizer",
    "lr",
    "momentum",
    "weight_decay",
    "schedule",
    "warmup_steps",
    "clip_grad_norm",
    "label_smoothing",
    "keep_last",
    "patience",
    "monitor",
    "min_delta",
];

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

impl Config {
    /// The config with every default written out: what a run directory keeps, so the run says
    /// exactly what it trained with.
    pub fn resolved(&self) -> String {
        let mut doc = toml_edit::DocumentMut::new();
        doc["data"] = Item::Table(self.data_table());
        doc["model"] = Item::Table(self.model_table());
        doc["train"] = Item::Table(self.train_table());
        let mut eval = toml_edit::Table::new();
        eval["metrics"] = toml_edit::value(self.eval_metrics.iter().map(|m| m.name()).collect::<toml_edit::Array>());
        doc["eval"] = Item::Table(eval);
        format!(
            "# Resolved by dlcli {}: every setting of this run, defaults included.\n{doc}",
            env!("CARGO_PKG_VERSION")
        )
    }

    fn data_table(&self) -> toml_edit::Table {
        use toml_edit::{Array, value};
        let path = |p: &PathBuf| value(p.display().to_string());
        let mut data = toml_edit::Table::new();
        match &self.data.source {
            DataSource::Idx { train_images, train_labels, test_images, test_labels } => {
                data["kind"] = value("idx");
                data["train_images"] = path(train_images);
                data["train_labels"] = path(train_labels);
                data["test_images"] = path(test_images);
                data["test_labels"] = path(test_labels);
            }
            DataSource::Digits { path: p, test_fraction } => {
                data["kind"] = value("digits");
                data["path"] = path(p);
                data["test_fraction"] = value(shortest(*test_fraction as f32));
            }
            DataSource::Cifar10 { train_files, test_files } => {
                data["kind"] = value("cifar10");
                let list = |files: &[PathBuf]| value(files.iter().map(|f| f.display().to_string()).collect::<Array>());
                data["train_files"] = list(train_files);
                data["test_files"] = list(test_files);
            }
            DataSource::ImageFolder { train_dir, test_dir, shape } => {
                data["kind"] = value("image_folder");
                data["train_dir"] = path(train_dir);
                data["test_dir"] = path(test_dir);
                for (key, n) in ["channels", "height", "width"].into_iter().zip(shape) {
                    data[key] = value(*n as i64);
                }
            }
        }
        data["mean"] = value(shortest(self.data.mean));
        data["std"] = value(shortest(self.data.std));
        data["validation_fraction"] = value(shortest(self.data.validation_fraction as f32));
        data["random_crop_padding"] = value(self.data.augment.crop_padding as i64);
        data["horizontal_flip"] = value(self.data.augment.horizontal_flip);
        data
    }

    fn model_table(&self) -> toml_edit::Table {
        let mut layers = toml_edit::Array::new();
        for layer in &self.layers {
            let mut t = toml_edit::InlineTable::new();
            let (kind, fields) = layer_fields(&layer.kind);
            t.insert("type", kind.into());
            t.insert("name", layer.name.as_str().into());
            t.insert("inputs", toml_edit::Value::Array(layer.inputs.iter().map(String::as_str).collect()));
            for (key, v) in fields {
                t.insert(key, v);
            }
            layers.push(toml_edit::Value::InlineTable(t));
        }
        layers.iter_mut().for_each(|l| l.decor_mut().set_prefix("\n    "));
        layers.set_trailing("\n");
        layers.set_trailing_comma(true);
        let mut model = toml_edit::Table::new();
        model["layers"] = toml_edit::value(layers);
        model
    }

    fn train_table(&self) -> toml_edit::Table {
        use toml_edit::value;
        let t = &self.train;
        let mut train = toml_edit::Table::new();
        train["epochs"] = value(t.epochs as i64);
        train["device"] = value(t.device.name());
        train["batch_size"] = value(t.batch_size as i64);
        train["seed"] = value(t.seed as i64);
        train["optimizer"] = value(t.optimizer.name());
        train["lr"] = value(shortest(t.lr));
        train["momentum"] = value(shortest(t.momentum));
        train["weight_decay"] = value(shortest(t.weight_decay));
        train["schedule"] = value(t.schedule.name());
        train["warmup_steps"] = value(t.warmup_steps as i64);
        train["clip_grad_norm"] = value(shortest(t.clip_grad_norm.unwrap_or(0.0)));
        train["label_smoothing"] = value(shortest(t.label_smoothing));
        train["keep_last"] = value(t.keep_last as i64);
        train["monitor"] = value(t.monitor.name());
        train["patience"] = value(t.patience as i64);
        train["min_delta"] = value(shortest(t.min_delta as f32));
        train
    }
}

/// An f32 setting by its shortest form (0.1307, not 0.130700007...).
fn shortest(x: f32) -> f64 {
    format!("{x}").parse::<f64>().unwrap_or(x as f64)
}

/// A layer kind's type name and fields, as a config writes them.
fn layer_fields(kind: &LayerKind) -> (&'static str, Vec<(&'static str, toml_edit::Value)>) {
    let int = |n: usize| toml_edit::Value::from(n as i64);
    let num = |x: f32| toml_edit::Value::from(shortest(x));
    match kind {
        LayerKind::Conv2d { out_channels, kernel, stride, padding, dilation, bias } => (
            "conv2d",
            vec![
                ("out_channels", int(*out_channels)),
                ("kernel", int(*kernel)),
                ("stride", int(*stride)),
                ("padding", int(*padding)),
                ("dilation", int(*dilation)),
                ("bias", (*bias).into()),
            ],
        ),
        LayerKind::Linear { out_features, bias } => {
            ("linear", vec![("out_features", int(*out_features)), ("bias", (*bias).into())])
        }
        LayerKind::MaxPool2d { kernel, stride, padding } | LayerKind::AvgPool2d { kernel, stride, padding } => (
            if matches!(kind, LayerKind::MaxPool2d { .. }) { "max_pool2d" } else { "avg_pool2d" },
            vec![("kernel", int(*kernel)), ("stride", int(*stride)), ("padding", int(*padding))],
        ),
        LayerKind::GlobalAvgPool => ("global_avg_pool", vec![]),
        LayerKind::BatchNorm { eps, momentum } => {
            ("batch_norm", vec![("eps", num(*eps)), ("momentum", num(*momentum))])
        }
        LayerKind::LayerNorm { eps } => ("layer_norm", vec![("eps", num(*eps))]),
        LayerKind::Dropout { p } => ("dropout", vec![("p", num(*p))]),
        LayerKind::Flatten => ("flatten", vec![]),
        LayerKind::Activation(Unary::LeakyRelu(slope)) => ("leaky_relu", vec![("slope", num(*slope))]),
        LayerKind::Activation(op) => (ACTIVATIONS.iter().find(|(_, a)| a == op).map_or("relu", |(n, _)| n), vec![]),
        LayerKind::Add => ("add", vec![]),
        LayerKind::Concat => ("concat", vec![]),
    }
}
