//! The TOML config: every key declared once, below, with its type, default, range and one line
//! of docs (the machinery is in `schema.rs`). Parsed with `toml_edit`, which keeps every key's
//! position; validation collects every problem before failing, each with file:line:column, the
//! key path, what was expected, and a did-you-mean for unknown names.

use std::fmt;
use std::path::{Path, PathBuf};

use graph::settings::{Bound, Named, Section, Setting, Tagged, Value, did_you_mean, join};
pub use graph::spec::LayerKind;
use graph::{settings, variants};
use toml_edit::{Item, TableLike};

use crate::schema::{Problem, Reader, Table, line_column, to_toml};

/// Every problem found in one file.
#[derive(Debug)]
pub struct ConfigErrors {
    pub path: PathBuf,
    pub problems: Vec<Problem>,
}

/// One problem on one line; several under a line that counts them.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [one] = &self.problems[..] {
            return write!(f, "{}", one.named(&self.path));
        }
        write!(f, "{}: {} problems in the config", self.path.display(), self.problems.len())?;
        for p in &self.problems {
            write!(f, "\n  {}", p.named(&self.path))?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

// ----- [data] --------------------------------------------------------------------------------

variants! {
    /// Where the data comes from (`[data] kind`).
    pub enum DataSource {
        /// MNIST-style image and label files (gzip or raw).
        Idx = "idx" {
            /// e.g. "train-images-idx3-ubyte.gz"
            train_images: PathBuf;
            train_labels: PathBuf;
            test_images: PathBuf;
            test_labels: PathBuf;
        }
        /// The UCI digits CSV (8x8 images), split into train and test.
        Digits = "digits" {
            /// The gzipped CSV: 64 pixel values (0-16) and the label per row.
            path: PathBuf = "datasets/digits/digits.csv.gz".into();
            /// Share of each class held out for the test set.
            test_fraction: f64 = 0.2, Bound::OpenFraction;
        }
        /// CIFAR-10 binary batches.
        Cifar10 = "cifar10" {
            /// e.g. ["data_batch_1.bin", ...]
            train_files: Vec<PathBuf>;
            /// e.g. ["test_batch.bin"]
            test_files: Vec<PathBuf>;
        }
        /// One sub-folder per class of PNG/JPEG files, resized to channels x height x width.
        ImageFolder = "image_folder" {
            train_dir: PathBuf;
            test_dir: PathBuf;
            /// 1 (grey) or 3 (RGB).
            channels: usize = 3, Bound::AtLeastOne;
            height: usize, Bound::AtLeastOne;
            width: usize, Bound::AtLeastOne;
        }
        /// Character-level text for next-character prediction: windows of context characters, each position's target the character after it; the vocabulary (every character of the file) is kept in each checkpoint.
        Text = "text" {
            path: PathBuf = "datasets/shakespeare/shakespeare-9-plays.txt".into();
            /// Characters per window: the model's sequence length.
            context: usize = 128, Bound::AtLeastOne;
            /// Share of the file, at its end, held out as the test set.
            held_out: f64 = 0.1, Bound::OpenFraction;
            /// Training windows per epoch, at random offsets (0: the training part's characters / context).
            windows: usize = 0;
        }
        /// One column of a CSV time series for one-step forecasting: windows of values, each with the next value as its target, normalised by the training part's mean and std (kept in each checkpoint).
        Series = "series" {
            path: PathBuf;
            /// The value column's header; default: the last column.
            column: Option<String>;
            /// Values per window: the model's sequence length.
            window: usize = 12, Bound::AtLeastOne;
            /// Share of the series, at its end, whose values are forecast for the test set.
            test_fraction: f64 = 0.2, Bound::OpenFraction;
            /// Values per season (12 for monthly data with a yearly pattern), for the seasonal naive baseline (the value one season back) and MASE's scale; default: the lag of the most prominent peak of the training part's autocorrelation, if it has one.
            season: Option<usize>, Bound::AtLeastOne;
        }
    }
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
            DataSource::Text { path, .. } | DataSource::Series { path, .. } => fix(path),
        }
    }
}

settings! {
    /// `[data]`: the dataset and what is done to its images.
    pub struct DataConfig {
        #[tagged] source: DataSource = ("kind", Some("idx"), "data kind");
        /// Every pixel becomes (x - mean) / std.
        mean: f32 = 0.0, Bound::Finite;
        /// The normalisation's divisor.
        std: f32 = 1.0, Bound::Positive;
        /// > 0: hold out this share of each training class for validation (it then picks best.safetensors).
        validation_fraction: f64 = 0.0, Bound::Fraction;
        /// > 0: pad training images by this many zero pixels and crop back at random.
        random_crop_padding: usize = 0;
        /// Mirror training images with probability 1/2.
        horizontal_flip: bool = false;
    }
}

impl DataConfig {
    pub fn augment(&self) -> data::Augment {
        data::Augment { crop_padding: self.random_crop_padding, horizontal_flip: self.horizontal_flip }
    }
}

// ----- [model] -------------------------------------------------------------------------------

settings! {
    /// One `[[model.layers]]` table as written.
    pub struct LayerTable {
        #[tagged] kind: LayerKind = ("type", None, "layer type");
        /// Unique; default: the type and the layer's position ("relu2").
        name: Option<String>;
        /// Earlier layers it reads; default: the previous layer ([] is the network input, first layer only).
        inputs: Option<Vec<String>>;
    }
}

/// One layer, its name and inputs resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerConfig {
    pub name: String,
    pub inputs: Vec<String>,
    pub kind: LayerKind,
}

// ----- [train], [eval] -----------------------------------------------------------------------

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

settings! {
    /// `[train]`: how the model is trained.
    pub struct TrainConfig {
        /// Passes over the training set.
        epochs: u64 = 2, Bound::AtLeastOne;
        /// "auto" (a hardware GPU if there is one, else the CPU), "gpu" or "cpu"; --device overrides it.
        device: Device = Device::Auto;
        /// Samples per training step (and per batch of eval).
        batch_size: usize = 64, Bound::AtLeastOne;
        /// Parameters, data order and dropout masks all follow from it.
        seed: u64 = 0;
        /// Adam's betas are (0.9, 0.999) and eps 1e-8, as torch's.
        optimizer: OptimizerKind = OptimizerKind::Adam;
        /// The learning rate (the schedule's peak).
        lr: f32 = 1e-3, Bound::Positive;
        /// SGD only.
        momentum: f32 = 0.9, Bound::Fraction;
        /// L2 for sgd and adam, decoupled for adamw.
        weight_decay: f32 = 0.0, Bound::NonNegative;
        /// "step" is x0.1 at each third of the run; cosine warms up linearly first.
        schedule: ScheduleKind = ScheduleKind::Constant;
        /// Cosine only: steps of linear warm-up.
        warmup_steps: u64 = 0;
        /// > 0: clip the global gradient norm to this.
        clip_grad_norm: f32 = 0.0, Bound::NonNegative;
        /// Of the cross-entropy, as torch's.
        label_smoothing: f32 = 0.0, Bound::Fraction;
        /// Epoch checkpoints kept besides best.safetensors.
        keep_last: usize = 2, Bound::AtLeastOne;
        /// > 0: also save interrupted.safetensors every this many steps, so that a hard kill (kill -9, a lost machine) loses at most that many.
        checkpoint_every_steps: u64 = 0;
        /// Of the validation set (else the test set): picks best.safetensors and stops early.
        monitor: MonitorMetric = MonitorMetric::Accuracy;
        /// > 0: stop when the monitored metric has not improved for this many epochs.
        patience: u64 = 0;
        /// The least change that counts as an improvement.
        min_delta: f64 = 0.0, Bound::NonNegative;
    }
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

/// The metrics `dlcli eval` reports, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalMetrics(pub Vec<EvalMetric>);

impl std::ops::Deref for EvalMetrics {
    type Target = [EvalMetric];

    fn deref(&self) -> &[EvalMetric] {
        &self.0
    }
}

impl Setting for EvalMetrics {
    fn kind() -> String {
        let names: Vec<String> = EvalMetric::NAMED.iter().map(|(n, _)| format!("{n:?}")).collect();
        format!("list of {}, \"top<k>\"", names.join(", "))
    }

    fn read(value: &Value) -> Result<Self, String> {
        let names = Vec::<String>::read(value).unwrap_or_default();
        let metrics: Vec<EvalMetric> = names.iter().filter_map(|m| EvalMetric::parse(m)).collect();
        if names.is_empty() || metrics.len() != names.len() {
            let known: Vec<&str> = EvalMetric::NAMED.iter().map(|(n, _)| *n).collect();
            return Err(format!("expected a list of {known:?} or \"top<k>\" (e.g. \"top3\"), got {value}"));
        }
        Ok(EvalMetrics(metrics))
    }

    fn write(&self) -> Option<Value> {
        Some(Value::Array(self.iter().map(|m| Value::String(m.name())).collect()))
    }
}

settings! {
    /// `[eval]`: what `dlcli eval` reports.
    pub struct EvalConfig {
        /// "top5": the label among the 5 largest logits; "per_class": precision, recall, F1; "confusion": matrix and confusion.png.
        metrics: EvalMetrics = EvalMetrics(vec![EvalMetric::Loss, EvalMetric::Accuracy, EvalMetric::PerClass, EvalMetric::Confusion]);
    }
}

// ----- the whole file ------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub data: DataConfig,
    pub layers: Vec<LayerConfig>,
    pub train: TrainConfig,
    pub eval: EvalConfig,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigErrors {
            path: path.to_owned(),
            problems: vec![Problem { at: None, key: String::new(), message: format!("cannot read the config: {e}") }],
        })?;
        let mut config = Config::parse(path, &text)?;
        config.resolve_data_paths(path.parent().unwrap_or(Path::new("")));
        Ok(config)
    }

    /// Makes relative dataset paths relative to `base` (a config file's or a checkpoint's
    /// directory).
    pub fn resolve_data_paths(&mut self, base: &Path) {
        self.data.source.resolve(base);
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
        let fail = |problems| ConfigErrors { path: path.to_owned(), problems };
        let doc = toml_edit::Document::parse(text).map_err(|e| {
            let at = e.span().map(|s| line_column(text, s.start));
            fail(vec![Problem { at, key: "(syntax)".into(), message: e.message().trim().to_string() }])
        })?;
        let mut r = Reader::new(text);
        match read_config(&mut r, doc.as_table()) {
            Some(config) if r.problems.is_empty() => Ok(config),
            _ => Err(fail(r.problems)),
        }
    }
}

fn read_config(r: &mut Reader, root: &dyn TableLike) -> Option<Config> {
    r.unknown_keys(root, "", &["data", "model", "train", "eval"]);
    for required in ["data", "model"].into_iter().filter(|key| !root.contains_key(key)) {
        r.problem(None, required, format!("missing; add a [{required}] table (see `dlcli config defaults`)"));
    }
    let data = root.contains_key("data").then(|| r.section::<DataConfig>(root, "data")).flatten();
    let layers = root.get("model").and_then(Item::as_table_like).map(|t| read_layers(r, t));
    if let Some(model) = root.get("model").filter(|m| !m.is_table_like()) {
        r.problem(model.span(), "model", "expected a table".into());
    }
    let train = r.section::<TrainConfig>(root, "train");
    let eval = r.section::<EvalConfig>(root, "eval");
    Some(Config { data: data?, layers: layers?, train: train?, eval: eval? })
}

fn read_layers(r: &mut Reader, t: &dyn TableLike) -> Vec<LayerConfig> {
    r.unknown_keys(t, "model", &["layers"]);
    type Spanned<'d> = (&'d dyn TableLike, Option<std::ops::Range<usize>>);
    let tables: Vec<Spanned> = match t.get("layers") {
        Some(Item::ArrayOfTables(a)) => a.iter().map(|t| (t as &dyn TableLike, t.span())).collect(),
        Some(Item::Value(toml_edit::Value::Array(a))) => a
            .iter()
            .filter_map(|v| match v.as_inline_table() {
                Some(t) => Some((t as &dyn TableLike, t.span())),
                None => {
                    r.problem(v.span(), "model.layers", "each layer is a table like { type = \"relu\" }".into());
                    None
                }
            })
            .collect(),
        other => {
            let detail = "missing; list the layers as [[model.layers]] tables".into();
            r.problem(other.and_then(|i| i.span()), "model.layers", detail);
            Vec::new()
        }
    };
    let mut layers: Vec<LayerConfig> = Vec::new();
    for (i, (table, span)) in tables.into_iter().enumerate() {
        let path = format!("model.layers[{i}]");
        r.here = span;
        let read = LayerTable::read(&mut Table { reader: r, table }, &path);
        if let Some(layer) = read.and_then(|l| resolve_layer(r, l, table, &path, &layers)) {
            layers.push(layer);
        }
    }
    layers
}

/// A layer's default name and inputs, and the checks against earlier layers.
fn resolve_layer(
    r: &mut Reader,
    layer: LayerTable,
    t: &dyn TableLike,
    path: &str,
    earlier: &[LayerConfig],
) -> Option<LayerConfig> {
    let span = |key: &str| t.get(key).and_then(|i| i.span());
    let name = layer.name.unwrap_or_else(|| format!("{}{}", layer.kind.write().0, earlier.len() + 1));
    if let Some(j) = earlier.iter().position(|l| l.name == name) {
        let detail = format!("{name:?} already names model.layers[{j}]; layer names must be unique");
        r.problem(span("name").or(r.here.clone()), &join(path, "name"), detail);
    }
    let inputs = layer.inputs.unwrap_or_else(|| earlier.last().map(|l| vec![l.name.clone()]).unwrap_or_default());
    // An empty list is the network's input, which only the first layer may take.
    if inputs.is_empty() && !earlier.is_empty() {
        let detail = "expected a list naming at least one earlier layer, e.g. inputs = [\"conv1\"]".into();
        r.problem(span("inputs"), &join(path, "inputs"), detail);
    }
    for input in inputs.iter().filter(|input| !earlier.iter().any(|l| &l.name == *input)) {
        let names: Vec<&str> = earlier.iter().map(|l| l.name.as_str()).collect();
        let detail = format!("no earlier layer is named {input:?}{}", did_you_mean(input, &names));
        r.problem(span("inputs"), &join(path, "inputs"), detail);
    }
    Some(LayerConfig { name, inputs, kind: layer.kind })
}

impl Config {
    /// The config with every default written out: what a run directory keeps, so the run says
    /// exactly what it trained with.
    pub fn resolved(&self) -> String {
        let table = |keys: Vec<(&str, Value)>| {
            let mut t = toml_edit::Table::new();
            keys.into_iter().for_each(|(k, v)| t[k] = Item::Value(to_toml(&v)));
            Item::Table(t)
        };
        let mut doc = toml_edit::DocumentMut::new();
        doc["data"] = table(self.data.write());
        doc["model"] = Item::Table(self.model_table());
        doc["train"] = table(self.train.write());
        doc["eval"] = table(self.eval.write());
        format!(
            "# Resolved by dlcli {}: every setting of this run, defaults included.\n{doc}",
            env!("CARGO_PKG_VERSION")
        )
    }

    fn model_table(&self) -> toml_edit::Table {
        let mut layers = toml_edit::Array::new();
        for layer in &self.layers {
            let (kind, fields) = layer.kind.write();
            let mut t = toml_edit::InlineTable::new();
            t.insert("type", kind.into());
            t.insert("name", layer.name.as_str().into());
            t.insert("inputs", toml_edit::Value::Array(layer.inputs.iter().map(String::as_str).collect()));
            fields.into_iter().for_each(|(key, v)| _ = t.insert(key, to_toml(&v)));
            layers.push(toml_edit::Value::InlineTable(t));
        }
        layers.iter_mut().for_each(|l| l.decor_mut().set_prefix("\n    "));
        layers.set_trailing("\n");
        layers.set_trailing_comma(true);
        let mut model = toml_edit::Table::new();
        model["layers"] = toml_edit::value(layers);
        model
    }
}

#[cfg(test)]
mod tests {
    use kernels::Unary;

    use super::*;

    /// Reading what `resolved()` writes gives the same config, for every shipped config and the
    /// defaults file: every declared key is written and read back alike.
    #[test]
    fn the_resolved_config_reads_back_the_same() {
        let shipped = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs")).unwrap();
        let mut texts: Vec<(PathBuf, String)> = shipped
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .map(|p| (p.clone(), std::fs::read_to_string(&p).unwrap()))
            .collect();
        texts.push(("defaults.toml".into(), crate::reference::defaults_toml()));
        assert!(texts.len() >= 5);
        for (path, text) in texts {
            let config = Config::parse(&path, &text).unwrap_or_else(|e| panic!("{e}"));
            let again = Config::parse(&path, &config.resolved()).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(config, again, "{}", path.display());
            assert_eq!(config.resolved(), again.resolved());
        }
    }

    /// A missing key takes its declared default; an out-of-range one is refused with the range.
    #[test]
    fn defaults_and_bounds_come_from_the_declarations() {
        let minimal = "[data]\nkind = \"digits\"\n[model]\nlayers = [{ type = \"leaky_relu\" }]\n";
        let config = Config::parse(Path::new("m.toml"), minimal).unwrap();
        for key in TrainConfig::keys() {
            let written = config.train.write().into_iter().find(|(k, _)| *k == key.name).map(|(_, v)| v.to_string());
            assert_eq!(written, key.default.map(|v| v.to_string()), "train.{}", key.name);
        }
        assert_eq!(config.layers[0].kind, LayerKind::Activation(Unary::LeakyRelu(0.01)));
        let bad = minimal.replace("{ type = \"leaky_relu\" }", "{ type = \"dropout\", p = 1.5 }");
        let problems = Config::parse(Path::new("m.toml"), &bad).unwrap_err().problems;
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].message, "must be in [0, 1), got 1.5");
        assert_eq!(problems[0].at, Some((4, 35)));
    }
}
