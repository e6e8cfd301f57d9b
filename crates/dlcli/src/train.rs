//! `dlcli train`: trains a config's model, writing a run directory with the resolved config,
//! per-epoch metrics, checkpoints (the last few and the best) and the log.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use data::{Batches, Dataset, Targets};
use graph::{
    Adam, Checkpoint, CpuExecutor, CrossCheck, Executor, Feed, GpuExecutor, Meta, Optimizer, Schedule, Sgd, StepStats,
    Supervised, Trainer, Training, write_atomically,
};
use indicatif::{ProgressBar, ProgressStyle};
use kernels::{AdapterClass, Gpu};

use crate::config::{Config, Device, MonitorMetric, OptimizerKind, ScheduleKind, TrainConfig};
use crate::dataset::{self, Prepared};
use crate::run_lock::{self, RunLock};
use crate::schema::Named;
use crate::{memory, model, plots};

#[derive(clap::Args)]
pub struct Args {
    /// The model config (TOML), e.g. configs/cnn.toml.
    #[arg(long, required_unless_present = "resume", conflicts_with = "resume")]
    config: Option<PathBuf>,
    /// Continue the run in this directory from its last checkpoint (model, optimizer,
    /// schedule, step, epoch, random streams), with its own config.
    #[arg(long)]
    resume: Option<PathBuf>,
    /// Overrides train.device; the run records it.
    #[arg(long, value_enum)]
    device: Option<Device>,
    /// Overrides train.epochs; the run records it. On a resume it may only extend a run
    /// whose schedule is constant.
    #[arg(long)]
    epochs: Option<u64>,
    /// The run directory's name under --runs-dir (default: the config's name and a number).
    #[arg(long)]
    run: Option<String>,
    #[arg(long, default_value = "runs")]
    runs_dir: PathBuf,
    /// Overwrite an existing run directory.
    #[arg(long)]
    force: bool,
    /// No progress bars: one line per epoch.
    #[arg(long)]
    quiet: bool,
    /// Keep every tensor of the training step, so that a step whose loss or gradients are not
    /// finite names the layer and node where the first NaN or infinity appeared (slower, and a
    /// step takes the memory of every tensor at once).
    #[arg(long)]
    detect_anomaly: bool,
    /// Time every node of the training step and, at the end, print the time per step by
    /// layer (forward and backward) and by op kind, as torch.profiler's key averages; also
    /// written to the run's profile.txt. On a GPU each node runs in a pass of its own.
    #[arg(long)]
    profile: bool,
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

/// A trainer on whichever executor the device choice gave.
pub type AnyTrainer<'g> = Trainer<Box<dyn Executor + 'g>>;

/// The GPU executor on `gpu`, else the CPU one. With `DLCLI_CROSSCHECK=1` the GPU executor
/// runs beside the CPU one and the first node whose outputs differ stops the command.
pub fn executor(gpu: Option<&Gpu>) -> Box<dyn Executor + '_> {
    executor_profiled_if(gpu, false)
}

/// As [`executor`]; `profiled`, it times every node it runs.
pub fn executor_profiled_if(gpu: Option<&Gpu>, profiled: bool) -> Box<dyn Executor + '_> {
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

/// How far `DLCLI_CROSSCHECK=1` lets the GPU's values stray from the CPU's, relative: float
/// sums in another order differ by about 1e-6 per op and grow through a network.
const CROSSCHECK_TOLERANCE: f32 = 1e-3;

/// What a batch of `set` feeds a model built for it: samples as "x" (values, or token ids),
/// targets as "y" (labels, or values with their row weights "w": 0 for padding).
pub fn feed(batch: &data::Batch, set: &Dataset) -> Feed {
    let mut feed = crate::inference::feed(set, batch.samples.clone());
    match &set.targets {
        Targets::Classes { .. } => {
            feed.labels.insert("y".into(), batch.labels.clone());
        }
        Targets::Values { per_sample, .. } => {
            let rows = batch.values.len() / per_sample;
            let weights = (0..rows).flat_map(|r| std::iter::repeat_n((r < batch.valid) as u8 as f32, *per_sample));
            feed.inputs.insert("y".into(), batch.values.clone());
            feed.inputs.insert("w".into(), weights.collect());
        }
    }
    feed
}

/// How a run's summed loss and metric read as figures: the loss (mean cross-entropy in nats,
/// or mean squared error of the normalised values) and one figure beside it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scoring {
    /// Accuracy: the share of samples classified correctly.
    Classes,
    /// A language model: accuracy per position, and the perplexity exp(loss).
    Positions { per_sample: usize },
    /// Regression: the root mean squared error in the data's units (`scale`: the data's std).
    Values { per_sample: usize, scale: f64 },
}

impl Scoring {
    pub fn of(set: &Dataset, prepared: &Prepared) -> Self {
        let scale = match prepared {
            Prepared::Series { normalisation, .. } => normalisation.std,
            _ => 1.0,
        };
        match set.targets {
            Targets::Classes { per_sample: 1, .. } => Scoring::Classes,
            Targets::Classes { per_sample, .. } => Scoring::Positions { per_sample },
            Targets::Values { per_sample, .. } => Scoring::Values { per_sample, scale },
        }
    }

    /// The figure's name in metrics.jsonl ("test_accuracy", "test_rmse").
    pub fn figure(&self) -> &'static str {
        match self {
            Scoring::Classes | Scoring::Positions { .. } => "accuracy",
            Scoring::Values { .. } => "rmse",
        }
    }

    pub fn higher_is_better(&self) -> bool {
        !matches!(self, Scoring::Values { .. })
    }

    /// (mean loss, figure) from the loss summed over samples and the metric summed.
    pub fn score(&self, loss_sum: f64, metric_sum: f64, samples: usize) -> (f64, f64) {
        let n = samples.max(1) as f64;
        match *self {
            Scoring::Classes => (loss_sum / n, metric_sum / n),
            Scoring::Positions { per_sample } => (loss_sum / n, metric_sum / (n * per_sample as f64)),
            // The summed squared error weighs out the padding rows that the batch loss counts.
            Scoring::Values { per_sample, scale } => {
                let mse = metric_sum / (n * per_sample as f64);
                (mse, mse.sqrt() * scale)
            }
        }
    }

    /// Figures beyond loss and the figure, by name.
    pub fn extra(&self, loss: f64) -> Vec<(&'static str, f64)> {
        match self {
            Scoring::Positions { .. } => vec![("perplexity", loss.exp())],
            _ => Vec::new(),
        }
    }

    /// "accuracy 98.12%" or "rmse 12.345"
    pub fn show(&self, figure: f64) -> String {
        match self {
            Scoring::Values { .. } => format!("rmse {figure:.4}"),
            _ => format!("accuracy {:.2}%", 100.0 * figure),
        }
    }
}

/// A new run directory under `runs_dir`: `name`, or the config's stem with the first free
/// number. An existing directory is an error unless `force`.
fn run_dir(runs_dir: &Path, config: &Path, name: Option<&str>, force: bool) -> Result<PathBuf> {
    let dir = match name {
        Some(name) if Path::new(name).file_name() != Some(std::ffi::OsStr::new(name)) => {
            bail!("--run {name:?}: give a plain directory name, made under --runs-dir ({})", runs_dir.display())
        }
        Some(name) => runs_dir.join(name),
        None => {
            let stem = config.file_stem().and_then(|s| s.to_str()).unwrap_or("run");
            (1..).map(|i| runs_dir.join(format!("{stem}-{i}"))).find(|d| !d.exists()).expect("a free name")
        }
    };
    if dir.exists() && !force {
        bail!(
            "run directory {} already exists; pick another --run NAME or pass --force to overwrite it",
            dir.display()
        );
    }
    if dir.exists() {
        // --force: the old run's metrics and checkpoints must not mix with the new run's. Only
        // a run directory is removed: one with a config.toml or a lock (a run killed as it
        // started), or an empty one.
        let empty = std::fs::read_dir(&dir).map(|mut d| d.next().is_none()).unwrap_or(false);
        if !dir.join("config.toml").is_file() && !dir.join(run_lock::LOCK).is_file() && !empty {
            bail!("--force: {} is not a dlcli run directory (no config.toml); not removing it", dir.display());
        }
        RunLock::refuse_if_held(&dir)?;
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing the old run {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Puts the command line's overrides into the config the run keeps. On a resume, `--epochs`
/// may extend a run only when its learning rate does not depend on the run's length (a
/// constant schedule): the step, cosine and one-cycle schedules plan their rates over every
/// step of the run, and a new end would change the rates of steps already planned.
fn apply_overrides(config: &mut Config, args: &Args, resuming: bool) -> Result<()> {
    if let Some(device) = args.device {
        config.train.device = device;
    }
    if let Some(epochs) = args.epochs {
        let t = &config.train;
        if resuming && epochs != t.epochs && t.schedule != ScheduleKind::Constant {
            bail!(
                "--epochs {epochs}: this run's {:?} schedule plans its learning rate over {} epochs, and a new end \
                 would change the rate of steps already planned; resume without --epochs, or start a new run",
                t.schedule.name(),
                t.epochs
            );
        }
        config.train.epochs = epochs;
    }
    Ok(())
}

/// A run being started or resumed: its directory, config and where training stands.
struct Start {
    dir: PathBuf,
    config: Config,
    /// The checkpoints to continue from, newest first (the next is tried where one is
    /// damaged), and the epoch checkpoints already kept.
    resume_from: Option<Vec<PathBuf>>,
    kept: Vec<PathBuf>,
}

fn start(args: &Args) -> Result<Start> {
    match (&args.resume, &args.config) {
        (Some(dir), _) => {
            let config = Config::load(&dir.join("config.toml")).context("--resume needs the run's config.toml")?;
            let kept = epoch_checkpoints(dir)?;
            let interrupted = Some(dir.join(INTERRUPTED_CHECKPOINT)).filter(|p| p.exists());
            let newest_first = newest_first(interrupted.into_iter().chain(kept.iter().cloned()).collect());
            if newest_first.is_empty() {
                bail!("{} has no epoch-N.safetensors checkpoint to resume from", dir.display());
            }
            Ok(Start { dir: dir.clone(), config, resume_from: Some(newest_first), kept })
        }
        (None, Some(path)) => {
            let config = Config::load(path)?;
            Ok(Start { dir: PathBuf::new(), config, resume_from: None, kept: Vec::new() })
        }
        (None, None) => bail!("give --config FILE or --resume RUN"),
    }
}

/// Where an unfinished epoch's state is saved: on Ctrl-C or SIGTERM, and every
/// `checkpoint_every_steps` steps.
const INTERRUPTED_CHECKPOINT: &str = "interrupted.safetensors";

/// `checkpoints` by the step each holds, newest first. The mid-epoch checkpoint is usually
/// the newest, but not after a kill between an epoch's checkpoint and its removal. One whose
/// metadata does not read comes first, so that resuming names it as damaged.
fn newest_first(mut checkpoints: Vec<PathBuf>) -> Vec<PathBuf> {
    let step = |path: &PathBuf| {
        let meta = Checkpoint::metadata(path).ok();
        meta.and_then(|m| m.get("step")?.parse::<u64>().ok()).unwrap_or(u64::MAX)
    };
    checkpoints.sort_by_cached_key(|path| std::cmp::Reverse(step(path)));
    checkpoints
}

/// The run's epoch checkpoints, oldest first.
fn epoch_checkpoints(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter_map(|p| {
            let n = p.file_name()?.to_str()?.strip_prefix("epoch-")?.strip_suffix(".safetensors")?.parse().ok()?;
            Some((n, p))
        })
        .collect();
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

pub fn run(args: &Args) -> Result<()> {
    let Start { mut dir, mut config, resume_from, kept } = start(args)?;
    apply_overrides(&mut config, args, resume_from.is_some())?;
    // What the run directory and checkpoints keep: every setting, defaults and overrides
    // written out, so that `--resume RUN` alone continues the run to the same end.
    let resolved = config.resolved();
    let mut data = dataset::load(&config.data, config.train.seed)?;
    let validation = match config.data.validation_fraction {
        f if f > 0.0 => Some(data.split_validation(f, config.train.seed ^ 0x5EED)?),
        _ => None,
    };
    let batch = config.train.batch_size;
    let classifier = model::build(&config, &data.test, batch)?;
    let steps_per_epoch = (data.train_len() / batch) as u64;
    if steps_per_epoch == 0 {
        bail!("train.batch_size = {batch} is larger than the {} training samples", data.train_len());
    }
    let training = training(&config.train, steps_per_epoch * config.train.epochs);
    let gpu = open_device(config.train.device)?;
    memory::Estimate::of(&classifier, &training, args.detect_anomaly)?.check(gpu.as_ref(), batch)?;
    let mut trainer = match args.detect_anomaly {
        true => Trainer::detecting_anomalies(executor_profiled_if(gpu.as_ref(), args.profile), &classifier, training)?,
        false => Trainer::new(executor_profiled_if(gpu.as_ref(), args.profile), &classifier, training)?,
    };
    let (first_epoch, progress, lock) = match &resume_from {
        Some(newest_first) => {
            let lock = RunLock::acquire(&dir)?;
            // A process killed mid-write left its temporary file; the lock says it is gone.
            graph::remove_abandoned_writes(&dir).with_context(|| format!("cleaning {}", dir.display()))?;
            let meta = resume_newest(&mut trainer, newest_first, &dir, &classifier, &resolved)?;
            trim_metrics(&dir.join("metrics.jsonl"), trainer.steps())?;
            (meta.epoch, Progress::parse(&meta.progress)?, lock)
        }
        None => {
            let config_path = args.config.as_deref().expect("checked in start");
            dir = run_dir(&args.runs_dir, config_path, args.run.as_deref(), args.force)?;
            let lock = RunLock::acquire(&dir)?;
            write_atomically(&dir.join("config.toml"), resolved.as_bytes())?;
            (0, Progress::default(), lock)
        }
    };
    let device = match &gpu {
        Some(gpu) => format!("GPU executor on {}", gpu.summary()),
        None => format!("CPU executor ({} threads)", rayon::current_num_threads()),
    };
    let action =
        if resume_from.is_some() { format!("resuming after epoch {first_epoch} in") } else { "run directory".into() };
    println!("dlcli train: {device}; {action} {}", dir.display());
    let scoring = Scoring::of(&data.test, &data.prepared);
    if let Prepared::Series { persistence_rmse, .. } = data.prepared {
        println!("persistence baseline (next = last) on the test set: rmse {persistence_rmse:.4}");
    }
    let kept_data = data.prepared.to_json();
    let spec = RunSpec { resolved, data: kept_data, model: &classifier, training, scoring };
    let mut run = Run::open(dir, &config, spec, validation.is_some(), (kept, lock))?;
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_usize(signal, Arc::clone(&STOP), signal as usize)
            .context("installing the Ctrl-C and SIGTERM handlers")?;
    }
    let mut progress = progress;
    for epoch in first_epoch..config.train.epochs {
        if run.monitor.should_stop() {
            println!("early stop: {} has not improved for {} epochs", run.monitor.key(), config.train.patience);
            break;
        }
        // Batches of this epoch an interrupted run already trained on.
        let done = trainer.steps() - epoch * steps_per_epoch;
        let train_set = data.epoch(config.train.seed, epoch);
        let at = EpochStart { epoch, done, progress: std::mem::take(&mut progress) };
        match train_epoch(&mut trainer, &train_set, &config, at, args.quiet, &mut run)? {
            Epoch::Done(loss, accuracy, rate) => {
                let sets = HeldOut { test: &data.test, validation: validation.as_ref() };
                run.end_epoch(&mut trainer, epoch, (loss, accuracy, rate), sets)?
            }
            Epoch::Interrupted(progress) => run.interrupted(&trainer, epoch, &progress)?,
        }
    }
    println!("best {} {:.4}; checkpoints in {}", run.monitor.key(), run.monitor.best, run.dir.display());
    if args.profile {
        let profile = trainer.profile().to_string();
        let path = run.dir.join("profile.txt");
        write_atomically(&path, profile.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
        println!("\n{profile}(in {})", path.display());
    }
    Ok(())
}

/// Restores `trainer` from the checkpoint at `path` of the run in `dir`; returns its
/// metadata (the epochs done, an unfinished epoch's progress). An override (a longer run,
/// another device) becomes part of the run's config.
/// Resumes from the newest of `newest_first` that loads: a damaged one (truncated, or its
/// checksum off) is skipped with a warning naming it; none loading is an error naming each.
fn resume_newest(
    trainer: &mut AnyTrainer,
    newest_first: &[PathBuf],
    dir: &Path,
    model: &Supervised,
    resolved: &str,
) -> Result<Meta> {
    let mut damaged = Vec::new();
    for path in newest_first {
        match resume(trainer, path, dir, model, resolved) {
            Ok(meta) => {
                if !damaged.is_empty() {
                    eprintln!("warning: resuming from {} (after epoch {}) instead", path.display(), meta.epoch);
                }
                return Ok(meta);
            }
            Err(e) => {
                eprintln!("warning: {e:#}");
                damaged.push(path.display().to_string());
            }
        }
    }
    bail!("no checkpoint of {} loads ({}): start the run again", dir.display(), damaged.join(", "))
}

fn resume(trainer: &mut AnyTrainer, path: &Path, dir: &Path, model: &Supervised, resolved: &str) -> Result<Meta> {
    let checkpoint = Checkpoint::load(path, model, &trainer.training().optimizer)?;
    Progress::parse(&checkpoint.meta.progress).with_context(|| format!("{}: metadata", path.display()))?;
    trainer.restore(&checkpoint.state)?;
    let config = dir.join("config.toml");
    if std::fs::read_to_string(&config).ok().as_deref() != Some(resolved) {
        write_atomically(&config, resolved.as_bytes()).with_context(|| format!("updating {}", config.display()))?;
    }
    Ok(checkpoint.meta)
}

/// Drops the lines of a run's metrics.jsonl past `step`, where a resume continues: those of
/// steps the run will train again, and a line a kill cut short.
fn trim_metrics(path: &Path, step: u64) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(()) };
    let before = |line: &&str| {
        let row = serde_json::from_str::<serde_json::Value>(line).ok();
        line.ends_with('\n') && row.and_then(|r| r["step"].as_u64()).is_some_and(|s| s <= step)
    };
    let kept: String = text.split_inclusive('\n').filter(before).collect();
    if kept != text {
        write_atomically(path, kept.as_bytes()).with_context(|| format!("trimming {}", path.display()))?;
    }
    Ok(())
}

/// The sets evaluated after each epoch.
struct HeldOut<'d> {
    test: &'d Dataset,
    validation: Option<&'d Dataset>,
}

/// What a run writes into every checkpoint and how it scores its model.
struct RunSpec<'m> {
    /// The resolved config.
    resolved: String,
    /// What the data's preparation learnt, as JSON.
    data: String,
    model: &'m Supervised,
    training: Training,
    scoring: Scoring,
}

/// A run directory being written: its metrics, its checkpoints, and what picks the best.
struct Run<'m> {
    dir: PathBuf,
    seed: u64,
    epochs: u64,
    keep_last: usize,
    batch: usize,
    spec: RunSpec<'m>,
    monitor: Monitor,
    metrics: std::fs::File,
    /// Epoch checkpoints kept, oldest first.
    kept: Vec<PathBuf>,
    /// This process's hold on the directory.
    lock: RunLock,
}

impl<'m> Run<'m> {
    fn open(
        dir: PathBuf,
        config: &Config,
        spec: RunSpec<'m>,
        has_validation: bool,
        (kept, lock): (Vec<PathBuf>, RunLock),
    ) -> Result<Self> {
        let mut monitor = Monitor::new(&config.train, has_validation, spec.scoring);
        if !has_validation {
            println!(
                "no validation split ([data] validation_fraction = 0): best.safetensors is picked by {} on the test set",
                monitor.key()
            );
        }
        for row in read_metrics(&dir.join("metrics.jsonl")).unwrap_or_default().iter().filter(|r| r["kind"] == "epoch")
        {
            monitor.update(row[monitor.key()].as_f64().unwrap_or(f64::NAN));
        }
        let metrics = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("metrics.jsonl"))?;
        let t = &config.train;
        Ok(Run {
            dir,
            seed: t.seed,
            epochs: t.epochs,
            keep_last: t.keep_last,
            batch: t.batch_size,
            spec,
            monitor,
            metrics,
            kept,
            lock,
        })
    }

    /// The trainer's state after `epoch` epochs and, mid-epoch, the next one's `progress`.
    fn checkpoint(&self, trainer: &AnyTrainer, epoch: u64, progress: String) -> Result<Checkpoint> {
        let (seed, config, data) = (self.seed, self.spec.resolved.clone(), self.spec.data.clone());
        Ok(Checkpoint { state: trainer.state()?, meta: Meta { epoch, seed, config, data, progress } })
    }

    fn save(&self, checkpoint: &Checkpoint, path: &Path) -> Result<()> {
        Ok(checkpoint.save(path, self.spec.model, &self.spec.training.optimizer)?)
    }

    /// Saves where epoch `epoch` (0-based, unfinished) stands as interrupted.safetensors.
    fn save_unfinished(&self, trainer: &AnyTrainer, epoch: u64, progress: &Progress) -> Result<PathBuf> {
        let path = self.dir.join(INTERRUPTED_CHECKPOINT);
        self.save(&self.checkpoint(trainer, epoch, progress.to_json())?, &path)?;
        Ok(path)
    }

    /// Appends `line` to metrics.jsonl in one write: a kill leaves whole lines, or a cut
    /// last one that the resume drops.
    fn record(&mut self, line: serde_json::Value) -> Result<()> {
        let path = self.dir.join("metrics.jsonl");
        self.metrics.write_all(format!("{line}\n").as_bytes()).with_context(|| format!("writing {}", path.display()))
    }

    /// Ctrl-C or SIGTERM: the step in flight finished; write it down and exit 128 + the
    /// signal (130, 143), as a shell reports a process the signal ended.
    fn interrupted(&self, trainer: &AnyTrainer, epoch: u64, progress: &Progress) -> Result<()> {
        let path = self.save_unfinished(trainer, epoch, progress)?;
        eprintln!(
            "interrupted at step {}; saved {}; continue with dlcli train --resume {}",
            trainer.steps(),
            path.display(),
            self.dir.display()
        );
        self.lock.release(); // exit runs no destructors
        std::process::exit(128 + STOP.load(Ordering::SeqCst) as i32);
    }

    /// After epoch `epoch` (0-based) trained with `train` = (loss, figure, samples/s):
    /// evaluation, its metrics line and curves, the epoch checkpoint and the best one.
    fn end_epoch(&mut self, trainer: &mut AnyTrainer, epoch: u64, train: (f64, f64, f64), sets: HeldOut) -> Result<()> {
        let (train_loss, train_figure, rate) = train;
        let scoring = self.spec.scoring;
        let figure = scoring.figure();
        let mut line = serde_json::json!({
            "kind": "epoch", "epoch": epoch + 1, "step": trainer.steps(), "train_loss": train_loss,
            format!("train_{figure}"): train_figure, "samples_per_s": rate, "best_by": self.monitor.key(),
        });
        let mut summary = Vec::new();
        let held_out = if sets.validation.is_some() { "validation" } else { "test" };
        for (name, set) in [("validation", sets.validation), ("test", Some(sets.test))] {
            let Some(set) = set else { continue };
            let (loss, value) = evaluate(trainer, set, self.batch, scoring)?;
            line[format!("{name}_loss")] = loss.into();
            line[format!("{name}_{figure}")] = value.into();
            let mut shown = format!("{name} loss {loss:.4} {}", scoring.show(value));
            for (extra, v) in scoring.extra(loss) {
                line[format!("{name}_{extra}")] = v.into();
                shown += &format!(" {extra} {v:.3}");
            }
            summary.push(shown);
        }
        self.record(line.clone())?;
        draw_curves(&self.dir.join("curves.png"), &read_metrics(&self.dir.join("metrics.jsonl"))?, held_out, figure)?;
        println!(
            "epoch {}/{}: train loss {train_loss:.4} {} | {} | {rate:.0} samples/s",
            epoch + 1,
            self.epochs,
            scoring.show(train_figure),
            summary.join(" | "),
        );
        // The best checkpoint before the epoch's: a kill between the two resumes from the
        // epoch before, which trains this one again and saves the same best.
        let checkpoint = self.checkpoint(trainer, epoch + 1, String::new())?;
        if self.monitor.update(line[self.monitor.key()].as_f64().unwrap_or(f64::NAN)) {
            self.save(&checkpoint, &self.dir.join("best.safetensors"))?;
        }
        let path = self.dir.join(format!("epoch-{}.safetensors", epoch + 1));
        self.save(&checkpoint, &path)?;
        // A resume from before a damaged epoch checkpoint writes that epoch's again.
        self.kept.retain(|kept| *kept != path);
        self.kept.push(path);
        while self.kept.len() > self.keep_last.max(1) {
            std::fs::remove_file(self.kept.remove(0))?;
        }
        // Superseded by the epoch checkpoint just written.
        let _ = std::fs::remove_file(self.dir.join(INTERRUPTED_CHECKPOINT));
        Ok(())
    }
}

/// The GPU to train on, or None for the CPU executor.
pub fn open_device(device: Device) -> Result<Option<Gpu>> {
    match device {
        Device::Cpu => Ok(None),
        Device::Gpu => Ok(Some(Gpu::open().context("--device gpu")?)),
        Device::Auto => Ok(Gpu::open().ok().filter(|g| g.class() == AdapterClass::Gpu)),
    }
}

/// How an epoch ended.
enum Epoch {
    /// Mean loss, accuracy and samples/s.
    Done(f64, f64, f64),
    /// Ctrl-C: the step in flight finished, nothing more ran.
    Interrupted(Progress),
}

/// Sums over training steps: the loss weighted by the samples, the metric, and the samples.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Sums {
    loss: f64,
    metric: f64,
    samples: usize,
}

impl Sums {
    fn add(&mut self, stats: &StepStats, valid: usize) {
        (self.loss, self.metric, self.samples) =
            (self.loss + stats.loss as f64 * valid as f64, self.metric + metric_of(stats), self.samples + valid);
    }

    fn to_json(self) -> serde_json::Value {
        serde_json::json!([self.loss, self.metric, self.samples])
    }

    fn parse(v: &serde_json::Value) -> Option<Sums> {
        let [loss, metric, samples] = v.as_array()?.as_slice() else { return None };
        Some(Sums { loss: loss.as_f64()?, metric: metric.as_f64()?, samples: samples.as_u64()? as usize })
    }
}

/// Where an unfinished epoch's figures stand: sums over its steps so far and since the last
/// step line. A mid-epoch checkpoint keeps them, so that a resumed epoch writes the figures an
/// uninterrupted one would.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Progress {
    epoch: Sums,
    interval: Sums,
}

impl Progress {
    fn to_json(self) -> String {
        serde_json::json!({"epoch": self.epoch.to_json(), "interval": self.interval.to_json()}).to_string()
    }

    /// A checkpoint's progress: none (empty) at an epoch's end.
    fn parse(text: &str) -> Result<Progress> {
        if text.is_empty() {
            return Ok(Progress::default());
        }
        let v: serde_json::Value = serde_json::from_str(text).context("progress is not JSON")?;
        let sums =
            |key: &str| Sums::parse(&v[key]).with_context(|| format!("progress.{key} is not [loss, metric, samples]"));
        Ok(Progress { epoch: sums("epoch")?, interval: sums("interval")? })
    }
}

/// Where an epoch starts: its number, the batches already trained (a resumed unfinished
/// epoch) and their figures.
struct EpochStart {
    epoch: u64,
    done: u64,
    progress: Progress,
}

/// Steps between the `"kind": "step"` lines of metrics.jsonl.
const LOG_EVERY: u64 = 100;

/// Why a run stops at `step` whose loss or gradient norm is not finite: the step's update
/// already went into the parameters, so nothing of this state is saved, and every checkpoint
/// before it stays. The stop is recorded in metrics.jsonl. A trainer that detects anomalies
/// names where the first non-finite value appeared.
fn diverged(
    step: u64,
    epoch: u64,
    stats: &StepStats,
    trainer: &AnyTrainer,
    config: &Config,
    run: &mut Run,
) -> anyhow::Error {
    let (what, value) = match stats.loss.is_finite() {
        false => ("loss", stats.loss),
        true => ("gradient norm", stats.grad_norm.unwrap_or(f32::NAN)),
    };
    let line = serde_json::json!({"kind": "stopped", "epoch": epoch + 1, "step": step, "reason": format!("non-finite {what}")});
    let _ = run.record(line);
    let clip = match config.train.clip_grad_norm {
        0.0 => "set [train] clip_grad_norm = 1.0".to_string(),
        norm => format!("lower [train] clip_grad_norm (now {norm})"),
    };
    let origin = match trainer.detects_anomalies().then(|| trainer.first_non_finite()) {
        None => "dlcli train --detect-anomaly names the layer where it begins. ".into(),
        Some(Ok(Some(anomaly))) => format!("The first non-finite value is in {anomaly}. "),
        Some(Ok(None)) => "No tensor of the step holds a non-finite value (a bug: please report it). ".into(),
        Some(Err(e)) => format!("Looking for the first non-finite value failed: {e}. "),
    };
    anyhow::anyhow!(
        "step {step} (epoch {}): the training {what} is {value}; stopped without saving this state. {origin}Lower \
         [train] lr (now {:e}) or {clip}; the checkpoints written before this step are kept in {}",
        epoch + 1,
        config.train.lr,
        run.dir.display()
    )
}

/// The summed metric of a step (correct rows, or squared error).
fn metric_of(stats: &StepStats) -> f64 {
    stats.metrics.first().map_or(0.0, |&(_, v)| v as f64)
}

/// One epoch of `set`, skipping the first `done` batches of epoch `epoch` (a resumed
/// unfinished epoch); a line goes to the run's metrics every [`LOG_EVERY`] steps, and the
/// state to interrupted.safetensors every `checkpoint_every_steps`.
fn train_epoch(
    trainer: &mut AnyTrainer,
    set: &Dataset,
    config: &Config,
    EpochStart { epoch, done, mut progress }: EpochStart,
    quiet: bool,
    run: &mut Run,
) -> Result<Epoch> {
    let batch = config.train.batch_size;
    let scoring = run.spec.scoring;
    let steps = (set.len() / batch) as u64;
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(steps) };
    bar.set_style(
        ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("{}/{}", epoch + 1, config.train.epochs));
    bar.set_position(done);
    // Samples/s counts what this process trained.
    let (start, mut trained_here) = (Instant::now(), 0usize);
    let (seed, first_step, augment) = (config.train.seed, trainer.steps(), config.data.augment());
    let (every, last_step) = (config.train.checkpoint_every_steps, first_step - done + steps);
    // A loader thread shuffles, gathers and augments the next batches while this one trains.
    let interrupted = std::thread::scope(|scope| -> Result<bool> {
        let (ready, batches) = std::sync::mpsc::sync_channel::<data::Batch>(2);
        scope.spawn(move || {
            for (i, mut b) in Batches::shuffled(set, batch, seed, epoch).skip(done as usize).enumerate() {
                augment.apply(&mut b.samples, &set.sample_shape, seed, first_step + i as u64);
                if ready.send(b).is_err() {
                    return; // training stopped early
                }
            }
        });
        for b in batches {
            if STOP.load(Ordering::SeqCst) != 0 {
                return Ok(true);
            }
            let stats = trainer.train_step(&feed(&b, set))?;
            if !stats.is_finite() {
                bar.abandon();
                return Err(diverged(trainer.steps(), epoch, &stats, trainer, config, run));
            }
            progress.epoch.add(&stats, b.valid);
            progress.interval.add(&stats, b.valid);
            trained_here += b.valid;
            let rate = trained_here as f64 / start.elapsed().as_secs_f64();
            let step = trainer.steps();
            if step.is_multiple_of(LOG_EVERY) {
                let Sums { loss, metric, samples } = std::mem::take(&mut progress.interval);
                let (loss, figure) = scoring.score(loss, metric, samples);
                run.record(serde_json::json!({
                    "kind": "step", "epoch": epoch + 1, "step": step, "train_loss": loss,
                    format!("train_{}", scoring.figure()): figure, "grad_norm": stats.grad_norm,
                    "samples_per_s": rate,
                }))?;
            }
            // The epoch's last step is saved by the epoch's checkpoint.
            if every > 0 && step.is_multiple_of(every) && step != last_step {
                run.save_unfinished(trainer, epoch, &progress)?;
            }
            bar.inc(1);
            let (loss, figure) = scoring.score(progress.epoch.loss, progress.epoch.metric, progress.epoch.samples);
            bar.set_message(format!("loss {loss:.4} {} {rate:.0} samples/s", scoring.show(figure)));
        }
        Ok(false)
    })?;
    if interrupted {
        bar.abandon();
        return Ok(Epoch::Interrupted(progress));
    }
    bar.finish_and_clear();
    let Sums { loss, metric, samples } = progress.epoch;
    let (loss, figure) = scoring.score(loss, metric, samples);
    Ok(Epoch::Done(loss, figure, trained_here as f64 / start.elapsed().as_secs_f64()))
}

/// The metric that picks the best checkpoint and stops training early: validation accuracy
/// or loss (test when there is no validation set).
struct Monitor {
    key: String,
    higher_is_better: bool,
    min_delta: f64,
    patience: u64,
    best: f64,
    /// Epochs since the last improvement.
    stale: u64,
}

impl Monitor {
    /// `monitor = "accuracy"` watches the scoring's figure (accuracy, or a regression's rmse).
    fn new(t: &TrainConfig, has_validation: bool, scoring: Scoring) -> Self {
        let set = if has_validation { "validation" } else { "test" };
        let (name, higher_is_better) = match t.monitor {
            MonitorMetric::Accuracy => (scoring.figure(), scoring.higher_is_better()),
            MonitorMetric::Loss => ("loss", false),
        };
        let best = if higher_is_better { f64::NEG_INFINITY } else { f64::INFINITY };
        Monitor {
            key: format!("{set}_{name}"),
            higher_is_better,
            min_delta: t.min_delta,
            patience: t.patience,
            best,
            stale: 0,
        }
    }

    fn key(&self) -> &str {
        &self.key
    }

    /// Takes one epoch's value; true when it improves on the best by more than min_delta.
    fn update(&mut self, value: f64) -> bool {
        let gain = if self.higher_is_better { value - self.best } else { self.best - value };
        if gain > self.min_delta || (self.best.is_infinite() && value.is_finite()) {
            (self.best, self.stale) = (value, 0);
            true
        } else {
            self.stale += 1;
            false
        }
    }

    fn should_stop(&self) -> bool {
        self.patience > 0 && self.stale >= self.patience
    }
}

/// The lines of a run's metrics.jsonl (step and epoch lines).
fn read_metrics(path: &Path) -> Result<Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let lines =
        text.lines().map(|line| serde_json::from_str(line).with_context(|| format!("{}: bad line", path.display())));
    lines.collect()
}

/// Draws the loss and `figure` (accuracy or rmse) over the steps: train from the step lines
/// (the epoch lines where a run has none), `held_out` ("validation" or "test") at each epoch.
fn draw_curves(path: &Path, rows: &[serde_json::Value], held_out: &str, figure: &str) -> Result<()> {
    let series = |kind: &str, key: String| -> Vec<(f64, f64)> {
        let of_kind = rows.iter().filter(|r| r["kind"] == kind);
        of_kind.filter_map(|r| Some((r["step"].as_f64()?, r[&key].as_f64()?))).collect()
    };
    let train_kind = if rows.iter().any(|r| r["kind"] == "step") { "step" } else { "epoch" };
    let panel = |name: &str| plots::Panel {
        title: name.to_string(),
        lines: vec![
            ("train".to_string(), series(train_kind, format!("train_{name}"))),
            (held_out.to_string(), series("epoch", format!("{held_out}_{name}"))),
        ],
    };
    plots::curves(path, &[panel("loss"), panel(figure)])
}

/// The signal that asked the run to stop (SIGINT from Ctrl-C, SIGTERM from a job scheduler),
/// 0 while none has; the training loop checks it between steps.
static STOP: LazyLock<Arc<AtomicUsize>> = LazyLock::new(|| Arc::new(AtomicUsize::new(0)));

/// Mean loss and the scoring's figure over every sample of `set`.
fn evaluate(trainer: &mut AnyTrainer, set: &Dataset, batch: usize, scoring: Scoring) -> Result<(f64, f64)> {
    let (mut loss, mut metric) = (0.0, 0.0);
    for b in Batches::in_order(set, batch) {
        let stats = trainer.evaluate(&feed(&b, set))?;
        loss += stats.loss as f64 * b.valid as f64;
        metric += metric_of(&stats);
    }
    Ok(scoring.score(loss, metric, set.len()))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// `--detect-anomaly` on a healthy step of every shipped config (its real data, batch 8)
    /// finds nothing: no op leaves a NaN or an infinity in any tensor as a matter of course
    /// (a mask, a padding value), which would send a report to the wrong place. The step's
    /// statistics are finite, its gradient norm too.
    #[test]
    fn a_healthy_step_of_every_shipped_config_has_nothing_non_finite() {
        let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&configs).unwrap().map(|e| e.unwrap().path()).collect();
        paths.sort();
        assert_eq!(paths.len(), 10, "{paths:?}");
        for path in paths {
            let config = Config::load(&path).unwrap();
            let data = dataset::load(&config.data, config.train.seed).unwrap();
            let model = model::build(&config, &data.test, 8).unwrap();
            let training = training(&config.train, 100);
            let mut trainer = Trainer::detecting_anomalies(CpuExecutor::new(), &model, training).unwrap();
            let set = data.epoch(config.train.seed, 0);
            let batch = Batches::shuffled(&set, 8, config.train.seed, 0).next().unwrap();
            let stats = trainer.train_step(&feed(&batch, &set)).unwrap();
            assert!(stats.is_finite() && stats.grad_norm.is_some_and(|n| n > 0.0), "{}: {stats:?}", path.display());
            assert_eq!(trainer.first_non_finite().unwrap(), None, "{}", path.display());
        }
    }
}
