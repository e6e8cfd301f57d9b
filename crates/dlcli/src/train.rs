//! `dlcli train`: trains a config's model, epoch after epoch, into a run directory
//! (`run_dir.rs`): the resolved config, per-epoch metrics, checkpoints (the last few and the
//! best) and the curves. Resumes a run exactly, stops cleanly on Ctrl-C or SIGTERM, and stops
//! at a step whose loss or gradients are not finite.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use data::{Batches, Dataset};
use graph::{Executor, StepStats, Trainer, write_atomically};
use indicatif::{ProgressBar, ProgressStyle};

use crate::config::{Config, Device, ScheduleKind};
use crate::context;
use crate::dataset::Data;
use crate::run_dir::{self, Kept, Monitor, Progress, Run};
use crate::run_lock::RunLock;
use crate::task::{self, Sums, Task};
use graph::settings::Named;

#[derive(clap::Args)]
pub struct Args {
    /// The model config (TOML), e.g. configs/cnn.toml.
    #[arg(long, required_unless_present = "resume", conflicts_with = "resume")]
    config: Option<PathBuf>,
    #[arg(long, help = concat!(
        "Continue this run from its last checkpoint (model, optimizer, schedule, step, epoch, random streams), \
         with its own config. ",
        context::run_rule!()
    ))]
    resume: Option<PathBuf>,
    /// Overrides train.device; the run records it.
    #[arg(long, value_enum)]
    device: Option<Device>,
    /// Overrides train.epochs; the run records it. On a resume it may only extend a run
    /// whose schedule is constant.
    #[arg(long)]
    epochs: Option<u64>,
    #[arg(long, help = concat!(
        "The new run's directory (default: the config's name and the first free number, under --runs-dir). ",
        context::run_rule!()
    ))]
    run: Option<PathBuf>,
    /// Where --run's and --resume's plain names are.
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

/// How a training run ended, for the exit code.
pub enum Outcome {
    /// Every epoch trained, or early stopping ended the run.
    Finished,
    /// A signal asked the run to stop; the step in flight finished and was saved.
    Interrupted { signal: i32 },
}

impl Outcome {
    /// 0, or 128 + the signal (130 for SIGINT, 143 for SIGTERM), as a shell reports a
    /// process that the signal ended.
    pub fn exit_code(&self) -> i32 {
        match self {
            Outcome::Finished => 0,
            Outcome::Interrupted { signal } => 128 + signal,
        }
    }
}

/// A trainer on whichever executor the device choice gave.
type AnyTrainer<'g> = Trainer<Box<dyn Executor + 'g>>;

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

/// A run being started or resumed: its config, and for a resume its directory, the
/// checkpoints to continue from (newest first) and the epoch checkpoints already kept.
struct Start {
    config: Config,
    resume: Option<(PathBuf, Vec<PathBuf>, Vec<PathBuf>)>,
}

fn start(args: &Args) -> Result<Start> {
    match (&args.resume, &args.config) {
        (Some(run), _) => {
            let dir = context::run_dir(run, &args.runs_dir);
            let config = Config::load(&dir.join("config.toml")).context("--resume needs the run's config.toml")?;
            let (newest_first, kept) = run_dir::checkpoints(&dir)?;
            Ok(Start { config, resume: Some((dir, newest_first, kept)) })
        }
        (None, Some(path)) => Ok(Start { config: Config::load(path)?, resume: None }),
        (None, None) => bail!("give --config FILE or --resume RUN"),
    }
}

pub fn run(args: &Args) -> Result<Outcome> {
    let Start { mut config, resume } = start(args)?;
    apply_overrides(&mut config, args, resume.is_some())?;
    // What the run directory and checkpoints keep: every setting, defaults and overrides
    // written out, so that `--resume RUN` alone continues the run to the same end.
    let resolved = config.resolved();
    let (mut data, task) = task::load(&config.data, config.train.seed)?;
    let validation = match config.data.validation_fraction {
        f if f > 0.0 => Some(data.split_validation(f, config.train.seed ^ 0x5EED)?),
        _ => None,
    };
    let batch = config.train.batch_size;
    let model = crate::model::build(&config, task.as_ref(), batch)?;
    let steps_per_epoch = (data.train_len() / batch) as u64;
    if steps_per_epoch == 0 {
        bail!("train.batch_size = {batch} is larger than the {} training samples", data.train_len());
    }
    let training = context::training(&config.train, steps_per_epoch * config.train.epochs);
    let gpu = context::open_device(config.train.device)?;
    crate::memory::Estimate::of(&model, &training, args.detect_anomaly)?.check(gpu.as_ref(), batch)?;
    let exec = context::executor(gpu.as_ref(), args.profile);
    let optimizer = training.optimizer;
    let mut trainer = match args.detect_anomaly {
        true => Trainer::detecting_anomalies(exec, &model, training)?,
        false => Trainer::new(exec, &model, training)?,
    };
    let (dir, meta, epochs, lock) = match resume {
        Some((dir, newest_first, kept)) => {
            let lock = RunLock::acquire(&dir)?;
            // A process killed mid-write left its temporary file; the lock says it is gone.
            graph::remove_abandoned_writes(&dir).with_context(|| format!("cleaning {}", dir.display()))?;
            let meta = run_dir::resume(&dir, &newest_first, &resolved, |path| {
                let checkpoint = graph::Checkpoint::load(path, &model, &optimizer)?;
                trainer.restore(&checkpoint.state)?;
                Ok(checkpoint.meta)
            })?;
            run_dir::trim_metrics(&dir, trainer.steps())?;
            (dir, Some(meta), kept, lock)
        }
        None => {
            let config_path = args.config.as_deref().expect("checked in start");
            let dir = match &args.run {
                Some(run) => context::run_dir(run, &args.runs_dir),
                None => run_dir::numbered(&args.runs_dir, config_path),
            };
            run_dir::create(&dir, args.force)?;
            let lock = RunLock::acquire(&dir)?;
            write_atomically(&dir.join("config.toml"), resolved.as_bytes())?;
            (dir, None, Vec::new(), lock)
        }
    };
    let first_epoch = meta.as_ref().map_or(0, |m| m.epoch);
    let action = if meta.is_some() { format!("resuming after epoch {first_epoch} in") } else { "run directory".into() };
    println!("dlcli train: {}; {action} {}", context::describe(gpu.as_ref()), dir.display());
    task.baselines().iter().for_each(|line| println!("{line}"));
    let kept = Kept { config: resolved, data: task.kept(), seed: config.train.seed, model: &model, optimizer };
    let monitor = Monitor::new(&config.train, validation.is_some(), task.figure());
    if validation.is_none() {
        println!(
            "no validation split ([data] validation_fraction = 0): best.safetensors is picked by {} on the test set",
            monitor.key
        );
    }
    let mut run = Run::open(dir, kept, (config.train.keep_last, monitor), (epochs, lock))?;
    let progress = meta.map(|m| Progress::parse(&m.progress)).transpose()?.unwrap_or_default();
    let mut training = TrainingLoop { trainer, task: task.as_ref(), config: &config, quiet: args.quiet };
    let outcome = training.epochs(&mut run, &data, validation.as_ref(), first_epoch, progress)?;
    if args.profile {
        let profile = training.trainer.profile().to_string();
        let path = run.dir.join("profile.txt");
        write_atomically(&path, profile.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
        println!("\n{profile}(in {})", path.display());
    }
    Ok(outcome)
}

/// Steps between the `"kind": "step"` lines of metrics.jsonl.
const LOG_EVERY: u64 = 100;

/// The signal that asked the run to stop (SIGINT from Ctrl-C, SIGTERM from a job scheduler),
/// 0 while none has; the training loop checks it between steps.
static STOP: LazyLock<Arc<AtomicUsize>> = LazyLock::new(|| Arc::new(AtomicUsize::new(0)));

/// The summed metric of a step (correct rows, or squared error).
fn metric_of(stats: &StepStats) -> f64 {
    stats.metrics.first().map_or(0.0, |&(_, v)| v as f64)
}

/// How an epoch ended.
enum Epoch {
    /// Mean loss, the task's figure, and samples/s.
    Done(f64, f64, f64),
    /// Ctrl-C: the step in flight finished, nothing more ran.
    Interrupted(Progress),
}

/// A model being trained for its task, as the config says.
struct TrainingLoop<'t, 'g> {
    trainer: AnyTrainer<'g>,
    task: &'t dyn Task,
    config: &'t Config,
    quiet: bool,
}

impl TrainingLoop<'_, '_> {
    /// Epochs `first..` of the config's, the first continuing from `progress`, each evaluated
    /// and saved in `run`, until the last, early stopping or a signal.
    fn epochs(
        &mut self,
        run: &mut Run,
        data: &Data,
        validation: Option<&Dataset>,
        first: u64,
        mut progress: Progress,
    ) -> Result<Outcome> {
        let t = &self.config.train;
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register_usize(signal, Arc::clone(&STOP), signal as usize)
                .context("installing the Ctrl-C and SIGTERM handlers")?;
        }
        let steps_per_epoch = (data.train_len() / t.batch_size) as u64;
        for epoch in first..t.epochs {
            if run.monitor.should_stop() {
                println!("early stop: {} has not improved for {} epochs", run.monitor.key, t.patience);
                break;
            }
            // Batches of this epoch an interrupted run already trained on.
            let done = self.trainer.steps() - epoch * steps_per_epoch;
            let train_set = data.epoch(t.seed, epoch);
            match self.epoch(&train_set, epoch, done, std::mem::take(&mut progress), run)? {
                Epoch::Done(loss, figure, rate) => {
                    let held_out = HeldOut { test: &data.test, validation };
                    self.end_epoch(run, epoch, (loss, figure, rate), held_out)?;
                }
                Epoch::Interrupted(progress) => return self.interrupted(run, epoch, &progress),
            }
        }
        println!("best {} {:.4}; checkpoints in {}", run.monitor.key, run.monitor.best, run.dir.display());
        Ok(Outcome::Finished)
    }

    /// One epoch of `set`, skipping its first `done` batches (a resumed unfinished epoch); a
    /// line goes to the run's metrics every [`LOG_EVERY`] steps, and the state to
    /// interrupted.safetensors every `checkpoint_every_steps`.
    fn epoch(&mut self, set: &Dataset, epoch: u64, done: u64, mut progress: Progress, run: &mut Run) -> Result<Epoch> {
        let t = &self.config.train;
        let steps = (set.len() / t.batch_size) as u64;
        let bar = progress_bar(self.quiet, steps, epoch, t.epochs);
        bar.set_position(done);
        // Samples/s counts what this process trained.
        let (start, mut trained_here) = (Instant::now(), 0usize);
        let (seed, first_step, augment) = (t.seed, self.trainer.steps(), self.config.data.augment());
        let (every, last_step) = (t.checkpoint_every_steps, first_step - done + steps);
        let figure = self.task.figure().name;
        // A loader thread shuffles, gathers and augments the next batches while this one trains.
        let interrupted = std::thread::scope(|scope| -> Result<bool> {
            let (ready, batches) = std::sync::mpsc::sync_channel::<data::Batch>(2);
            scope.spawn(move || {
                for (i, mut b) in Batches::shuffled(set, t.batch_size, seed, epoch).skip(done as usize).enumerate() {
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
                let stats = self.trainer.train_step(&self.task.feed(&b, set))?;
                if !stats.is_finite() {
                    bar.abandon();
                    return Err(self.diverged(epoch, &stats, run));
                }
                progress.add(stats.loss, metric_of(&stats), b.valid);
                trained_here += b.valid;
                let rate = trained_here as f64 / start.elapsed().as_secs_f64();
                let step = self.trainer.steps();
                if step.is_multiple_of(LOG_EVERY) {
                    let (loss, value) = self.task.score(std::mem::take(&mut progress.interval));
                    run.record(serde_json::json!({
                        "kind": "step", "epoch": epoch + 1, "step": step, "train_loss": loss,
                        format!("train_{figure}"): value, "grad_norm": stats.grad_norm, "samples_per_s": rate,
                    }))?;
                }
                // The epoch's last step is saved by the epoch's checkpoint.
                if every > 0 && step.is_multiple_of(every) && step != last_step {
                    run.save_unfinished(&run.checkpoint(self.trainer.state()?, epoch, progress.to_json()))?;
                }
                bar.inc(1);
                let (loss, value) = self.task.score(progress.epoch);
                bar.set_message(format!("loss {loss:.4} {} {rate:.0} samples/s", self.task.show(value)));
            }
            Ok(false)
        })?;
        if interrupted {
            bar.abandon();
            return Ok(Epoch::Interrupted(progress));
        }
        bar.finish_and_clear();
        let (loss, value) = self.task.score(progress.epoch);
        Ok(Epoch::Done(loss, value, trained_here as f64 / start.elapsed().as_secs_f64()))
    }

    /// After epoch `epoch` (0-based) trained with `train` = (loss, figure, samples/s):
    /// evaluation, its metrics line and curves, the epoch checkpoint and the best one.
    fn end_epoch(&mut self, run: &mut Run, epoch: u64, train: (f64, f64, f64), sets: HeldOut) -> Result<()> {
        let (train_loss, train_figure, rate) = train;
        let figure = self.task.figure().name;
        let mut line = serde_json::json!({
            "kind": "epoch", "epoch": epoch + 1, "step": self.trainer.steps(), "train_loss": train_loss,
            format!("train_{figure}"): train_figure, "samples_per_s": rate, "best_by": run.monitor.key,
        });
        let mut summary = Vec::new();
        for (name, set) in [("validation", sets.validation), ("test", Some(sets.test))] {
            let Some(set) = set else { continue };
            let (loss, value) = self.evaluate(set)?;
            line[format!("{name}_loss")] = loss.into();
            line[format!("{name}_{figure}")] = value.into();
            let mut shown = format!("{name} loss {loss:.4} {}", self.task.show(value));
            for (extra, v) in self.task.extra(loss) {
                line[format!("{name}_{extra}")] = v.into();
                shown += &format!(" {extra} {v:.3}");
            }
            summary.push(shown);
        }
        run.record(line.clone())?;
        run.draw_curves(if sets.validation.is_some() { "validation" } else { "test" }, figure)?;
        println!(
            "epoch {}/{}: train loss {train_loss:.4} {} | {} | {rate:.0} samples/s",
            epoch + 1,
            self.config.train.epochs,
            self.task.show(train_figure),
            summary.join(" | "),
        );
        let checkpoint = run.checkpoint(self.trainer.state()?, epoch + 1, String::new());
        run.save_epoch(&checkpoint, epoch + 1, &line)
    }

    /// The mean loss and the task's figure over every sample of `set`.
    fn evaluate(&mut self, set: &Dataset) -> Result<(f64, f64)> {
        let mut sums = Sums::default();
        for b in Batches::in_order(set, self.config.train.batch_size) {
            let stats = self.trainer.evaluate(&self.task.feed(&b, set))?;
            sums.add(stats.loss, metric_of(&stats), b.valid);
        }
        Ok(self.task.score(sums))
    }

    /// Ctrl-C or SIGTERM: the step in flight finished; saves where epoch `epoch` (0-based)
    /// stands as interrupted.safetensors.
    fn interrupted(&self, run: &Run, epoch: u64, progress: &Progress) -> Result<Outcome> {
        let path = run.save_unfinished(&run.checkpoint(self.trainer.state()?, epoch, progress.to_json()))?;
        eprintln!(
            "interrupted at step {}; saved {}; continue with dlcli train --resume {}",
            self.trainer.steps(),
            path.display(),
            run.dir.display()
        );
        Ok(Outcome::Interrupted { signal: STOP.load(Ordering::SeqCst) as i32 })
    }

    /// Why a run stops at a step whose loss or gradient norm is not finite: the step's update
    /// already went into the parameters, so nothing of this state is saved, and every
    /// checkpoint before it stays. The stop is recorded in metrics.jsonl. A trainer that
    /// detects anomalies names where the first non-finite value appeared.
    fn diverged(&self, epoch: u64, stats: &StepStats, run: &mut Run) -> anyhow::Error {
        let (t, step) = (&self.config.train, self.trainer.steps());
        let (what, value) = match stats.loss.is_finite() {
            false => ("loss", stats.loss),
            true => ("gradient norm", stats.grad_norm.unwrap_or(f32::NAN)),
        };
        let line = serde_json::json!({"kind": "stopped", "epoch": epoch + 1, "step": step, "reason": format!("non-finite {what}")});
        let _ = run.record(line);
        let clip = match t.clip_grad_norm {
            0.0 => "set [train] clip_grad_norm = 1.0".to_string(),
            norm => format!("lower [train] clip_grad_norm (now {norm})"),
        };
        let origin = match self.trainer.detects_anomalies().then(|| self.trainer.first_non_finite()) {
            None => "dlcli train --detect-anomaly names the layer where it begins. ".into(),
            Some(Ok(Some(anomaly))) => format!("The first non-finite value is in {anomaly}. "),
            Some(Ok(None)) => "No tensor of the step holds a non-finite value (a bug: please report it). ".into(),
            Some(Err(e)) => format!("Looking for the first non-finite value failed: {e}. "),
        };
        anyhow::anyhow!(
            "step {step} (epoch {}): the training {what} is {value}; stopped without saving this state. {origin}Lower \
             [train] lr (now {:e}) or {clip}; the checkpoints written before this step are kept in {}",
            epoch + 1,
            t.lr,
            run.dir.display()
        )
    }
}

/// An epoch's progress bar (hidden with `--quiet`).
fn progress_bar(quiet: bool, steps: u64, epoch: u64, epochs: u64) -> ProgressBar {
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::new(steps) };
    bar.set_style(
        ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} eta {eta}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("{}/{epochs}", epoch + 1));
    bar
}

/// The sets evaluated after each epoch.
struct HeldOut<'d> {
    test: &'d Dataset,
    validation: Option<&'d Dataset>,
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use graph::CpuExecutor;

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
            let (data, task) = task::load(&config.data, config.train.seed).unwrap();
            let model = crate::model::build(&config, task.as_ref(), 8).unwrap();
            let training = context::training(&config.train, 100);
            let mut trainer = Trainer::detecting_anomalies(CpuExecutor::new(), &model, training).unwrap();
            let set = data.epoch(config.train.seed, 0);
            let batch = Batches::shuffled(&set, 8, config.train.seed, 0).next().unwrap();
            let stats = trainer.train_step(&task.feed(&batch, &set)).unwrap();
            assert!(stats.is_finite() && stats.grad_norm.is_some_and(|n| n > 0.0), "{}: {stats:?}", path.display());
            assert_eq!(trainer.first_non_finite().unwrap(), None, "{}", path.display());
        }
    }
}
