//! Classification: one class per sample (an image, or an image read row by row as a sequence
//! by a recurrent model). Reads MNIST-style IDX files, the digits CSV, CIFAR-10 batches and
//! folders of images, each pixel normalised as (x - mean) / std. Trained by cross-entropy;
//! its figure is accuracy, and `eval` adds top-k accuracy, each class's precision, recall and
//! F1, and the confusion matrix.

use std::path::Path;

use anyhow::{Context, Result, bail};
use data::{Batch, Dataset, Inputs, load_cifar10, load_digits, load_idx, load_image_folder};
use explain::Attribution;
use graph::{Feed, Model, Supervised, TensorId};

use super::{
    Evaluation, Figure, Predictor, Registration, Report, Sample, SampleSource, Shapes, Sums, Task, labelled,
    ranked_report, top,
};
use crate::config::{DataConfig, DataSource, EvalMetric, TrainConfig};
use crate::dataset::{Data, TrainSet};
use crate::plots;

pub const REGISTRATION: Registration = Registration { load, load_test, restore: None };

/// Images of some classes, normalised by the config's mean and std.
pub struct Classification {
    shapes: Shapes,
    /// What a pixel in [0, 1] becomes: (x - mean) / std.
    mean: f32,
    std: f32,
}

impl Classification {
    /// The task of samples shaped `sample` (channels, height, width) in `classes` classes,
    /// normalised by (mean, std).
    pub fn new(sample: Vec<usize>, classes: usize, (mean, std): (f32, f32)) -> Self {
        let shapes = Shapes { sample, inputs: Inputs::Values, output: vec![classes] };
        Classification { shapes, mean, std }
    }

    fn of(test: &Dataset, data: &DataConfig) -> Box<dyn Task> {
        Box::new(Classification::new(test.sample_shape.clone(), test.classes(), (data.mean, data.std)))
    }

    fn classes(&self) -> usize {
        self.shapes.width()
    }

    /// The image at `path` as a sample: converted to the model's channels and size, and
    /// normalised as the training images were.
    fn image(&self, path: &Path) -> Result<Vec<f32>> {
        let [channels, height, width] = self.shapes.sample[..] else {
            bail!("this model takes {:?} samples, not images", self.shapes.sample);
        };
        let img =
            data::open_image(path)?.resize_exact(width as u32, height as u32, image::imageops::FilterType::Triangle);
        let pixels: Vec<f32> = match channels {
            1 => img.to_luma8().pixels().map(|p| p.0[0] as f32 / 255.0).collect(),
            3 => {
                let rgb = img.to_rgb8();
                (0..3).flat_map(|c| rgb.pixels().map(move |p| p.0[c] as f32 / 255.0).collect::<Vec<_>>()).collect()
            }
            other => bail!("images become 1 or 3 channels; this model takes {other}"),
        };
        Ok(pixels.into_iter().map(|v| (v - self.mean) / self.std).collect())
    }

    /// The sample of `--index` or one `--input` image.
    fn one_sample<'t>(&self, source: &SampleSource, test: impl FnOnce() -> Result<&'t Dataset>) -> Result<Sample> {
        match (source.index, &source.input[..], &source.text, &source.values) {
            (Some(i), [], None, None) => Sample::of_test(test()?, i),
            (None, [path], None, None) => {
                let values = self.image(path)?;
                Ok(Sample { label: path.display().to_string(), real: values.len(), values })
            }
            (None, [], Some(_), None) => bail!("--text: this model was not trained on text"),
            _ => bail!("give exactly one of --input IMAGE, --text \"...\" or --index N"),
        }
    }
}

impl Task for Classification {
    fn shapes(&self) -> &Shapes {
        &self.shapes
    }

    fn advice(&self) -> String {
        format!("a linear layer of out_features = {} (after a flatten)", self.classes())
    }

    fn head(&self, model: Model, x: TensorId, output: TensorId, train: &TrainConfig) -> graph::Result<Supervised> {
        Supervised::classifier(model, x, output, train.label_smoothing)
    }

    fn feed(&self, batch: &Batch, set: &Dataset) -> Feed {
        labelled(batch, set)
    }

    fn kept(&self) -> String {
        String::new()
    }

    fn figure(&self) -> Figure {
        Figure { name: "accuracy", higher_is_better: true }
    }

    fn score(&self, sums: Sums) -> (f64, f64) {
        let n = sums.samples.max(1) as f64;
        (sums.loss / n, sums.metric / n)
    }

    fn show(&self, figure: f64) -> String {
        format!("accuracy {:.2}%", 100.0 * figure)
    }

    fn report(&self, mut evaluation: Evaluation) -> Result<Report> {
        let tally = tally(&mut evaluation, self, self.classes())?;
        let wants = |m: EvalMetric| evaluation.metrics.contains(&m);
        let picture = evaluation.checkpoint.parent().unwrap_or(Path::new(".")).join("confusion.png");
        if wants(EvalMetric::Confusion) {
            plots::confusion(&picture, &tally.confusion)?;
        }
        let (file, samples) = (evaluation.checkpoint.display().to_string(), evaluation.test.len());
        let mut json = serde_json::json!({ "checkpoint": file, "samples": samples });
        let mut text = format!("{file}: {samples} test samples");
        if wants(EvalMetric::Loss) {
            json["loss"] = tally.loss.into();
            text += &format!(", loss {:.4}", tally.loss);
        }
        if wants(EvalMetric::Accuracy) {
            json["accuracy"] = tally.accuracy.into();
            text += &format!(", accuracy {:.2}%", 100.0 * tally.accuracy);
        }
        for (name, value) in &tally.top {
            json[name] = (*value).into();
            text += &format!(", {name} {:.2}%", 100.0 * value);
        }
        if wants(EvalMetric::PerClass) {
            let rows = tally.per_class().into_iter().enumerate();
            let classes: Vec<_> = rows
                .map(|(c, (p, r, f))| serde_json::json!({"class": c, "precision": p, "recall": r, "f1": f}))
                .collect();
            json["classes"] = classes.into();
            text += "\n\nclass  precision  recall     f1";
            for (c, (p, r, f)) in tally.per_class().iter().enumerate() {
                text += &format!("\n{c:>5}  {:>8.2}%  {:>5.2}%  {:>5.2}%", 100.0 * p, 100.0 * r, 100.0 * f);
            }
        }
        if wants(EvalMetric::Confusion) {
            json["confusion"] = serde_json::json!(tally.confusion);
            json["confusion_png"] = picture.display().to_string().into();
            text += &confusion_table(&tally.confusion);
            text += &format!("\ndrawn in {}", picture.display());
        }
        Ok(Report { json, text })
    }

    fn predict(&self, source: &SampleSource, model: &mut dyn Predictor, top_k: usize) -> Result<Report> {
        let sample = self.one_sample(source, || model.test())?;
        let probabilities = explain::softmax(&model.output(sample.values)?);
        let ranked: Vec<_> = top(&probabilities, top_k).into_iter().map(|(c, p)| (c.into(), p)).collect();
        Ok(ranked_report(&ranked, "class"))
    }

    fn sample(&self, source: &SampleSource, test: &Dataset) -> Result<Sample> {
        self.one_sample(source, || Ok(test))
    }

    fn explained(&self, attribution: &Attribution) -> String {
        let class = attribution.target.class;
        format!("class {class} (probability {:.2}%)", 100.0 * attribution.probabilities[class])
    }
}

/// What one pass over the test set counted.
struct Tally {
    loss: f64,
    accuracy: f64,
    /// [true class][predicted class] counts.
    confusion: Vec<Vec<usize>>,
    /// Each asked-for top-k metric's name and share of rows.
    top: Vec<(String, f64)>,
}

impl Tally {
    /// Precision, recall and F1 of each class.
    fn per_class(&self) -> Vec<(f64, f64, f64)> {
        let (k, confusion) = (self.confusion.len(), &self.confusion);
        (0..k)
            .map(|c| {
                let tp = confusion[c][c] as f64;
                let predicted: usize = (0..k).map(|r| confusion[r][c]).sum();
                let actual: usize = confusion[c].iter().sum();
                let precision = if predicted == 0 { 0.0 } else { tp / predicted as f64 };
                let recall = if actual == 0 { 0.0 } else { tp / actual as f64 };
                let f1 = if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
                (precision, recall, f1)
            })
            .collect()
    }
}

/// What the test set's logits and mean loss count (padding rows count in neither).
fn tally(e: &mut Evaluation, task: &dyn Task, k: usize) -> Result<Tally> {
    let top_ks: Vec<usize> = e
        .metrics
        .iter()
        .filter_map(|m| match m {
            EvalMetric::TopK(k) => Some(*k),
            _ => None,
        })
        .collect();
    let mut confusion = vec![vec![0usize; k]; k];
    let mut top1 = 0usize;
    let mut top_hits = vec![0usize; top_ks.len()];
    let (sums, outputs) = e.pass(task, true)?;
    for (logits, &label) in outputs.chunks(k).zip(e.test.labels()) {
        let label = label as usize;
        let predicted = (0..k).max_by(|&a, &c| logits[a].total_cmp(&logits[c]).then(c.cmp(&a))).unwrap_or(0);
        confusion[label][predicted] += 1;
        // The label's rank: how many other classes score at least as high (ties count
        // against it, as in training's correct count).
        let above = (0..k).filter(|&c| c != label && logits[c] >= logits[label]).count();
        top1 += (above == 0) as usize;
        for (hits, &top) in top_hits.iter_mut().zip(&top_ks) {
            *hits += (above < top) as usize;
        }
    }
    let n = e.test.len() as f64;
    let top = top_ks.iter().zip(&top_hits).map(|(&k, &h)| (EvalMetric::TopK(k).name(), h as f64 / n)).collect();
    Ok(Tally { loss: sums.loss / n, accuracy: top1 as f64 / n, confusion, top })
}

/// The confusion matrix as `eval` prints it, after a blank line.
fn confusion_table(confusion: &[Vec<usize>]) -> String {
    let mut out = "\n\nconfusion matrix (rows: true class, columns: predicted)\n      ".to_string();
    (0..confusion.len()).for_each(|c| out += &format!("{c:>6}"));
    for (r, row) in confusion.iter().enumerate() {
        out += &format!("\n{r:>6}");
        row.iter().for_each(|n| out += &format!("{n:>6}"));
    }
    out
}

/// The training and test images of the config, normalised.
fn load(data: &DataConfig, seed: u64) -> Result<(Data, Box<dyn Task>)> {
    let (mut train, mut test) = match &data.source {
        DataSource::Idx { train_images, train_labels, test_images, test_labels } => (
            load_idx(train_images, train_labels).context("loading the training set ([data] train_images/labels)")?,
            load_idx(test_images, test_labels).context("loading the test set ([data] test_images/labels)")?,
        ),
        DataSource::Digits { path, test_fraction } => {
            load_digits(path).context("loading [data] path")?.split(*test_fraction, seed)
        }
        DataSource::Cifar10 { train_files, test_files } => (
            load_cifar10(train_files).context("loading [data] train_files")?,
            load_cifar10(test_files).context("loading [data] test_files")?,
        ),
        DataSource::ImageFolder { train_dir, test_dir, channels, height, width } => {
            let shape = [*channels, *height, *width];
            let (train, names) = load_image_folder(train_dir, shape).context("loading [data] train_dir")?;
            let (test, test_names) = load_image_folder(test_dir, shape).context("loading [data] test_dir")?;
            if names != test_names {
                bail!("[data] train_dir has classes {names:?} but test_dir has {test_names:?}");
            }
            (train, test)
        }
        other => unreachable!("{other:?} is not registered for classification"),
    };
    for set in [&mut train, &mut test] {
        normalise(set, data);
    }
    let task = Classification::of(&test, data);
    Ok((Data { train: TrainSet::Fixed(train), test }, task))
}

/// The test images alone (a split of one file is split as training splits it).
fn load_test(data: &DataConfig, seed: u64, _kept: Option<&str>) -> Result<(Dataset, Box<dyn Task>)> {
    let mut test = match &data.source {
        DataSource::Idx { test_images, test_labels, .. } => {
            load_idx(test_images, test_labels).context("loading the test set ([data] test_images/labels)")?
        }
        DataSource::Cifar10 { test_files, .. } => load_cifar10(test_files).context("loading [data] test_files")?,
        DataSource::ImageFolder { test_dir, channels, height, width, .. } => {
            load_image_folder(test_dir, [*channels, *height, *width]).context("loading [data] test_dir")?.0
        }
        _ => {
            let (data, task) = load(data, seed)?;
            return Ok((data.test, task));
        }
    };
    normalise(&mut test, data);
    let task = Classification::of(&test, data);
    Ok((test, task))
}

/// Every pixel as (x - mean) / std.
fn normalise(set: &mut Dataset, config: &DataConfig) {
    set.samples.iter_mut().for_each(|x| *x = (*x - config.mean) / config.std);
}
