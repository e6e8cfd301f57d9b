//! What `predict` and `explain` share: a trained model at batch 1 and input images turned
//! into samples the way the config's data are.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use data::Dataset;
use explain::Explainer;
use graph::{Checkpoint, Executor, Feed, Supervised, TensorId};
use kernels::Gpu;

use crate::config::{Config, Device};
use crate::dataset::{self, Prepared};
use crate::{eval, model, train};

/// Which trained model a command uses: a run directory or a checkpoint file.
#[derive(clap::Args)]
pub struct ModelSource {
    /// A run directory (its best checkpoint).
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// A checkpoint file (the config stored in it).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Which executor runs the model.
    #[arg(long, value_enum, default_value_t = Device::Auto)]
    pub device: Device,
}

/// Which sample a command looks at: an image file, a text or a test sample.
#[derive(clap::Args)]
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
}

/// A trained model with its checkpoint's parameters and its config's test set.
pub struct Loaded {
    pub config: Config,
    /// The checkpoint the parameters came from.
    pub file: PathBuf,
    pub model: Supervised,
    /// Each config layer's output node.
    pub layers: Vec<TensorId>,
    pub params: HashMap<String, Vec<f32>>,
    /// The config's test set (for `--index` and for the sample shape and classes).
    pub test: Dataset,
    /// What the checkpoint keeps of the data's preparation (a vocabulary, a normalisation).
    pub prepared: Prepared,
}

/// The model of `source` built for batches of `batch` (None: the config's batch size).
pub fn load(source: &ModelSource, batch: Option<usize>) -> Result<Loaded> {
    let (config, file) = eval::locate(source)?;
    let (test, _) = dataset::load_test(&config.data, config.train.seed)?;
    let batch = batch.unwrap_or(config.train.batch_size);
    let (model, layers) = model::build_layers(&config, &test, batch)?;
    let training = train::training(&config.train, 1);
    let checkpoint = Checkpoint::load(&file, &model, &training.optimizer)?;
    let prepared = Prepared::from_json(&checkpoint.meta.data)?;
    Ok(Loaded { config, file, model, layers, params: checkpoint.state.params, test, prepared })
}

/// What samples of `set`'s kind (one, or a batch) feed a model as "x": their values, or their
/// token ids.
pub fn feed(set: &Dataset, sample: Vec<f32>) -> Feed {
    let mut feed = Feed::default();
    match set.inputs {
        data::Inputs::Tokens { .. } => {
            feed.labels.insert("x".into(), sample.iter().map(|&id| id as u32).collect());
        }
        data::Inputs::Values => {
            feed.inputs.insert("x".into(), sample);
        }
    }
    feed
}

/// The executor on `gpu` (else the CPU), holding `params`.
pub fn executor<'g>(gpu: Option<&'g Gpu>, params: &HashMap<String, Vec<f32>>) -> Result<Box<dyn Executor + 'g>> {
    let mut exec = train::executor(gpu);
    for (name, value) in params {
        exec.write_named(name, value)?;
    }
    Ok(exec)
}

impl Loaded {
    /// An explainer of the model (built at the batch it was loaded for) on the executor
    /// `--device` picks on `gpu`.
    pub fn explainer<'g>(&self, gpu: Option<&'g Gpu>) -> Result<Explainer<Box<dyn Executor + 'g>>> {
        let m = &self.model;
        Ok(Explainer::new(train::executor(gpu), m.graph.clone(), m.input, m.output, &self.params)?)
    }

    /// The softmax of the model's output for one sample (a model loaded at batch 1).
    pub fn probabilities(&self, gpu: Option<&Gpu>, sample: Vec<f32>) -> Result<Vec<f32>> {
        let mut exec = executor(gpu, &self.params)?;
        let run = exec.prepare(&self.model.graph, graph::Mode::Eval, &[self.model.output])?;
        exec.run(run, &feed(&self.test, sample), 0)?;
        Ok(explain::softmax(&exec.read(run, self.model.output)?))
    }
}

impl Loaded {
    /// The sample to explain or predict: test sample `index`, or the image at `path`
    /// converted to the config's sample shape and normalised like the training data.
    pub fn sample(&self, source: &SampleSource) -> Result<Vec<f32>> {
        match (source.index, &source.input[..], source.text.as_deref()) {
            (Some(i), [], None) => {
                if i >= self.test.len() {
                    bail!("--index {i} is past the {} test samples", self.test.len());
                }
                Ok(self.test.sample(i).to_vec())
            }
            (None, [path], None) => self.image(path),
            (None, [], Some(text)) => Ok(self.window(text)?.0),
            _ => bail!("give exactly one of --input IMAGE, --text \"...\" or --index N"),
        }
    }

    /// `text`'s last window of characters as the model's sample of token ids, padded after
    /// its end to the window (which positions before it do not see in a causal model), and
    /// how many characters are real.
    pub fn window(&self, text: &str) -> Result<(Vec<f32>, usize)> {
        let Prepared::Text { vocabulary } = &self.prepared else {
            bail!("--text: this model was not trained on text");
        };
        let ids = crate::generate::encode(vocabulary, text, "--text")?;
        let context = self.test.sample_len();
        let ids = &ids[ids.len().saturating_sub(context)..];
        let mut sample: Vec<f32> = ids.iter().map(|&id| id as f32).collect();
        sample.resize(context, 0.0);
        Ok((sample, ids.len()))
    }

    /// The image at `path` as a sample of the model's input.
    pub fn image(&self, path: &Path) -> Result<Vec<f32>> {
        let [channels, height, width] = self.test.sample_shape[..] else {
            bail!("this model takes {:?} samples, not images", self.test.sample_shape);
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
        let (mean, std) = (self.config.data.mean, self.config.data.std);
        Ok(pixels.into_iter().map(|v| (v - mean) / std).collect())
    }
}
