//! What every command stands on: the device and executor a model runs on, the optimizer a
//! config trains with (which reading a checkpoint needs too), and a trained model located by
//! `--run` or `--checkpoint`, its config parsed once and its checkpoint loaded, with its task.
//! Below every command; no command module is imported by another.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};
use data::Dataset;
use explain::Explainer;
use graph::{
    Adam, Checkpoint, CpuExecutor, CrossCheck, Decoder, Executor, GpuExecutor, Mode, Optimizer, Schedule, Sgd,
    Supervised, TensorId, Training,
};
use kernels::{AdapterClass, Gpu, Tolerance};

use crate::config::{Config, Device, OptimizerKind, ScheduleKind, TrainConfig};
use crate::model;
use crate::task::{self, Predictor, Task};

/// The GPU to run on, or None for the CPU executor.
pub fn open_device(device: Device) -> Result<Option<Gpu>> {
    match device {
        Device::Cpu => Ok(None),
        Device::Gpu => Ok(Some(Gpu::open().context("--device gpu")?)),
        Device::Auto => Ok(Gpu::open().ok().filter(|g| g.class() == AdapterClass::Gpu)),
    }
}

/// How far `DLCLI_CROSSCHECK=1` lets the GPU's values stray from the CPU's: float sums in
/// another order differ by about 1e-6 per op and grow through a network.
const CROSSCHECK_TOLERANCE: Tolerance = Tolerance { relative: 1e-3 };

/// The GPU executor on `gpu`, else the CPU one; `profiled`, it times every node it runs.
/// With `DLCLI_CROSSCHECK=1` the GPU executor runs beside the CPU one and the first node
/// whose outputs differ stops the command.
pub fn executor(gpu: Option<&Gpu>, profiled: bool) -> Box<dyn Executor + '_> {
    let on_gpu = |gpu| if profiled { GpuExecutor::profiled(gpu) } else { GpuExecutor::new(gpu) };
    match gpu {
        Some(gpu) if std::env::var("DLCLI_CROSSCHECK").is_ok_and(|v| v == "1") => {
            Box::new(CrossCheck::new(on_gpu(gpu), CpuExecutor::new(), CROSSCHECK_TOLERANCE))
        }
        Some(gpu) => Box::new(on_gpu(gpu)),
        None if profiled => Box::new(CpuExecutor::profiled()),
        None => Box::new(CpuExecutor::new()),
    }
}

/// The executor `gpu` gives (else the CPU's), holding `params`.
pub fn executor_with<'g>(gpu: Option<&'g Gpu>, params: &HashMap<String, Vec<f32>>) -> Result<Box<dyn Executor + 'g>> {
    let mut exec = executor(gpu, false);
    for (name, value) in params {
        exec.write_named(name, value)?;
    }
    Ok(exec)
}

/// The executor's description for people.
pub fn describe(gpu: Option<&Gpu>) -> String {
    match gpu {
        Some(gpu) => format!("GPU executor on {}", gpu.summary()),
        None => format!("CPU executor ({} threads)", rayon::current_num_threads()),
    }
}

/// The optimizer, schedule and clipping a config asks for, over `total` updates.
pub fn training(t: &TrainConfig, total: u64) -> Training {
    let optimizer = match t.optimizer {
        OptimizerKind::Sgd => Optimizer::Sgd(Sgd {
            lr: t.lr,
            momentum: t.momentum,
            dampening: 0.0,
            weight_decay: t.weight_decay,
            nesterov: false,
        }),
        adam @ (OptimizerKind::Adam | OptimizerKind::AdamW) => Optimizer::Adam(Adam {
            lr: t.lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: t.weight_decay,
            decoupled: adam == OptimizerKind::AdamW,
        }),
    };
    let schedule = match t.schedule {
        ScheduleKind::Step => Schedule::Step { every: (total / 3).max(1), gamma: 0.1 },
        ScheduleKind::Cosine => Schedule::WarmupCosine { warmup: t.warmup_steps, total, floor: 0.0 },
        ScheduleKind::OneCycle => Schedule::OneCycle { total, pct_start: 0.3, div_factor: 25.0, final_div_factor: 1e4 },
        ScheduleKind::Constant => Schedule::Constant,
    };
    Training { optimizer, schedule, clip_grad_norm: (t.clip_grad_norm > 0.0).then_some(t.clip_grad_norm) }
}

/// How `--run` and `--resume` name a run directory, in every command's help.
macro_rules! run_rule {
    () => {
        "A plain name (cnn-1) is that directory under --runs-dir; a path (runs/cnn-1, ./cnn-1, /abs/cnn-1) \
         is used as it is."
    };
}
pub(crate) use run_rule;

/// The run directory that `--run` or `--resume` names ([`run_rule`]): a plain name is under
/// `runs_dir`, anything else a path.
pub fn run_dir(run: &Path, runs_dir: &Path) -> PathBuf {
    let mut parts = run.components();
    match (parts.next(), parts.next()) {
        (Some(Component::Normal(_)), None) => runs_dir.join(run),
        _ => run.to_path_buf(),
    }
}

/// Which trained model a command uses: a run directory or a checkpoint file.
#[derive(clap::Args)]
pub struct ModelSource {
    #[arg(long, help = concat!("A run directory (its best checkpoint). ", run_rule!()))]
    pub run: Option<PathBuf>,
    /// Where --run's plain names are.
    #[arg(long, default_value = "runs")]
    pub runs_dir: PathBuf,
    /// A checkpoint file (the config stored in it).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Which executor runs the model.
    #[arg(long, value_enum, default_value_t = Device::Auto)]
    pub device: Device,
}

/// A trained model's config (parsed once) and checkpoint.
pub struct Located {
    pub config: Config,
    pub file: PathBuf,
}

impl Located {
    /// The config and checkpoint of `--run RUN` (its best checkpoint) or `--checkpoint FILE`
    /// (the config stored inside it).
    pub fn of(source: &ModelSource) -> Result<Located> {
        match (source.run.as_deref(), source.checkpoint.as_deref()) {
            (Some(run), None) => {
                let run = run_dir(run, &source.runs_dir);
                let config = Config::load(&run.join("config.toml"))?;
                let file = run.join("best.safetensors");
                if !file.exists() {
                    bail!("{} has no best.safetensors: did its training finish an epoch?", run.display());
                }
                Ok(Located { config, file })
            }
            (None, Some(file)) => {
                let text = Checkpoint::config_text(file)?;
                let mut config = Config::parse(file, &text).context("the config stored in the checkpoint")?;
                // A run stores absolute paths; a checkpoint shipped with its data stores them
                // relative to itself.
                config.resolve_data_paths(file.parent().unwrap_or(Path::new("")));
                Ok(Located { config, file: file.to_owned() })
            }
            _ => bail!("give exactly one of --run RUN or --checkpoint FILE"),
        }
    }

    /// What preparing the data learnt, as the checkpoint keeps it (a task's `kept()`).
    fn kept(&self) -> Result<String> {
        let meta = Checkpoint::metadata(&self.file)?;
        Ok(meta.get("data").cloned().unwrap_or_default())
    }

    /// The task, from the checkpoint alone where the task runs without its data.
    pub fn restore(&self) -> Result<Option<Box<dyn Task>>> {
        task::restore(&self.config.data, &self.kept()?)
    }

    /// The trained parameters of `model` (a model of this config).
    fn params(&self, model: &Supervised) -> Result<HashMap<String, Vec<f32>>> {
        let training = training(&self.config.train, 1);
        Ok(Checkpoint::load(&self.file, model, &training.optimizer)?.state.params)
    }

    /// The model built for batches of `batch` (None: the config's batch size), its test set
    /// and its task.
    pub fn load(&self, batch: Option<usize>) -> Result<(Loaded, Box<dyn Task>)> {
        let (test, task) = task::load_test(&self.config.data, self.config.train.seed, Some(&self.kept()?))?;
        let batch = batch.unwrap_or(self.config.train.batch_size);
        let (model, layers) = model::build_layers(&self.config, task.as_ref(), batch)?;
        let params = self.params(&model)?;
        let (config, file) = (self.config.clone(), self.file.clone());
        Ok((Loaded { config, file, model, layers, params, test }, task))
    }

    /// The model taking one token at a time on `gpu` (else the CPU), with the vocabulary it
    /// decodes, from the checkpoint alone (the data is not read).
    pub fn decoder<'g>(&self, gpu: Option<&'g Gpu>) -> Result<(AnyDecoder<'g>, Vec<char>)> {
        let task = self.restore()?;
        let Some((task, vocabulary)) = task.as_ref().and_then(|t| Some((t, t.decodes()?))) else {
            bail!("{}: this needs a model trained on text ([data] kind = \"text\")", self.file.display());
        };
        let context = task.shapes().sample[0];
        let trained = model::build(&self.config, task.as_ref(), 1)?;
        let params = self.params(&trained)?;
        let (mut decoding_model, logits) = model::build_decoder(&self.config, vocabulary.len(), context)?;
        let decoding = decoding_model.decoding.take().context("built for decoding")?;
        let decoder = Decoder::new(executor(gpu, false), &decoding_model.graph, logits, decoding, &params)?;
        Ok((decoder, vocabulary.to_vec()))
    }
}

/// A decoder on whichever executor the device choice gave.
pub type AnyDecoder<'g> = Decoder<Box<dyn Executor + 'g>>;

/// A trained model with its checkpoint's parameters and its config's test set.
pub struct Loaded {
    pub config: Config,
    /// The checkpoint the parameters came from.
    pub file: PathBuf,
    pub model: Supervised,
    /// Each config layer's output node.
    pub layers: Vec<TensorId>,
    pub params: HashMap<String, Vec<f32>>,
    /// The config's test set (for `--index`, and what `eval` measures).
    pub test: Dataset,
}

impl Loaded {
    /// An explainer of the model (built at the batch it was loaded for) on `gpu` (else the CPU).
    pub fn explainer<'g>(&self, gpu: Option<&'g Gpu>) -> Result<Explainer<Box<dyn Executor + 'g>>> {
        let m = &self.model;
        Ok(Explainer::new(executor(gpu, false), m.graph.clone(), m.input, m.output, &self.params)?)
    }

    /// The model's output for one sample (a model loaded at batch 1).
    pub fn output(&self, gpu: Option<&Gpu>, sample: Vec<f32>) -> Result<Vec<f32>> {
        let mut exec = executor_with(gpu, &self.params)?;
        let run = exec.prepare(&self.model.graph, Mode::Eval, &[self.model.output])?;
        exec.run(run, &task::inputs(self.test.inputs, sample), 0)?;
        Ok(exec.read(run, self.model.output)?)
    }
}

/// A trained model as `predict` runs it: at batch 1 with its test set, or its decoding model,
/// each made when the task first asks for it.
pub struct Predicting<'g> {
    located: Located,
    gpu: Option<&'g Gpu>,
    loaded: Option<Loaded>,
}

impl<'g> Predicting<'g> {
    /// The model of `source` on `gpu` (else the CPU), and its task.
    pub fn open(source: &ModelSource, gpu: Option<&'g Gpu>) -> Result<(Box<dyn Task>, Predicting<'g>)> {
        let located = Located::of(source)?;
        if let Some(task) = located.restore()? {
            return Ok((task, Predicting { located, gpu, loaded: None }));
        }
        let (loaded, task) = located.load(Some(1))?;
        Ok((task, Predicting { located, gpu, loaded: Some(loaded) }))
    }

    fn loaded(&mut self) -> Result<&Loaded> {
        if self.loaded.is_none() {
            self.loaded = Some(self.located.load(Some(1))?.0);
        }
        Ok(self.loaded.as_ref().expect("loaded above"))
    }
}

impl Predictor for Predicting<'_> {
    fn output(&mut self, sample: Vec<f32>) -> Result<Vec<f32>> {
        let gpu = self.gpu;
        self.loaded()?.output(gpu, sample)
    }

    fn next_logits(&mut self, ids: &[u32]) -> Result<Vec<f32>> {
        let (mut decoder, _) = self.located.decoder(self.gpu)?;
        let mut logits = Vec::new();
        for &id in ids {
            logits = decoder.push(id)?;
        }
        Ok(logits)
    }

    fn test(&mut self) -> Result<&Dataset> {
        Ok(&self.loaded()?.test)
    }
}
