//! A run directory: its config as resolved, metrics.jsonl, curves.png and checkpoints (the
//! last `keep_last` epochs', the best, and an unfinished epoch's `interrupted.safetensors`),
//! held by one trainer at a time (`run_lock.rs`). Made new by `train --config`, continued by
//! `train --resume`, read by `eval --run`.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use graph::{Checkpoint, Meta, Optimizer, Supervised, TrainerState, write_atomically};

use crate::config::{MonitorMetric, TrainConfig};
use crate::plots;
use crate::run_lock::{self, RunLock};
use crate::task::{Figure, Sums};

/// Where an unfinished epoch's state is saved: on Ctrl-C or SIGTERM, and every
/// `checkpoint_every_steps` steps.
pub const INTERRUPTED_CHECKPOINT: &str = "interrupted.safetensors";

/// The first free directory under `runs_dir` named by the config's stem and a number
/// ("cnn-1", "cnn-2", ...).
pub fn numbered(runs_dir: &Path, config: &Path) -> PathBuf {
    let stem = config.file_stem().and_then(|s| s.to_str()).unwrap_or("run");
    (1..).map(|i| runs_dir.join(format!("{stem}-{i}"))).find(|d| !d.exists()).expect("a free name")
}

/// Makes the new run directory `dir`. An existing directory is an error unless `force`.
pub fn create(dir: &Path, force: bool) -> Result<()> {
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
        let empty = std::fs::read_dir(dir).map(|mut d| d.next().is_none()).unwrap_or(false);
        if !dir.join("config.toml").is_file() && !dir.join(run_lock::LOCK).is_file() && !empty {
            bail!("--force: {} is not a dlcli run directory (no config.toml); not removing it", dir.display());
        }
        RunLock::refuse_if_held(dir)?;
        std::fs::remove_dir_all(dir).with_context(|| format!("removing the old run {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

/// The checkpoints of the run in `dir` to continue from, newest first (the next is tried
/// where one is damaged), and the epoch checkpoints it keeps, oldest first.
pub fn checkpoints(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let kept = epoch_checkpoints(dir)?;
    let interrupted = Some(dir.join(INTERRUPTED_CHECKPOINT)).filter(|p| p.exists());
    let newest_first = newest_first(interrupted.into_iter().chain(kept.iter().cloned()).collect());
    if newest_first.is_empty() {
        bail!("{} has no epoch-N.safetensors checkpoint to resume from", dir.display());
    }
    Ok((newest_first, kept))
}

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

/// Restores a run from the newest of `newest_first` that `restore` loads, and returns its
/// metadata (the epochs done, an unfinished epoch's progress): a damaged checkpoint
/// (truncated, or its checksum off) is skipped with a warning naming it; none loading is an
/// error naming each. The run's config becomes `resolved` (which may carry an override: a
/// longer run, another device).
pub fn resume(
    dir: &Path,
    newest_first: &[PathBuf],
    resolved: &str,
    mut restore: impl FnMut(&Path) -> Result<Meta>,
) -> Result<Meta> {
    let mut damaged = Vec::new();
    for path in newest_first {
        match restore(path).and_then(|meta| Progress::parse(&meta.progress).map(|_| meta)) {
            Ok(meta) => {
                if !damaged.is_empty() {
                    eprintln!("warning: resuming from {} (after epoch {}) instead", path.display(), meta.epoch);
                }
                let config = dir.join("config.toml");
                if std::fs::read_to_string(&config).ok().as_deref() != Some(resolved) {
                    write_atomically(&config, resolved.as_bytes())
                        .with_context(|| format!("updating {}", config.display()))?;
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

/// Drops the lines of a run's metrics.jsonl past `step`, where a resume continues: those of
/// steps the run will train again, and a line a kill cut short.
pub fn trim_metrics(dir: &Path, step: u64) -> Result<()> {
    let path = dir.join("metrics.jsonl");
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(()) };
    let before = |line: &&str| {
        let row = serde_json::from_str::<serde_json::Value>(line).ok();
        line.ends_with('\n') && row.and_then(|r| r["step"].as_u64()).is_some_and(|s| s <= step)
    };
    let kept: String = text.split_inclusive('\n').filter(before).collect();
    if kept != text {
        write_atomically(&path, kept.as_bytes()).with_context(|| format!("trimming {}", path.display()))?;
    }
    Ok(())
}

/// The lines of a run's metrics.jsonl (step and epoch lines).
fn read_metrics(path: &Path) -> Result<Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let lines =
        text.lines().map(|line| serde_json::from_str(line).with_context(|| format!("{}: bad line", path.display())));
    lines.collect()
}

/// Where an unfinished epoch's figures stand: sums over its steps so far and since the last
/// step line. A mid-epoch checkpoint keeps them, so that a resumed epoch writes the figures an
/// uninterrupted one would.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Progress {
    pub epoch: Sums,
    pub interval: Sums,
}

impl Progress {
    pub fn to_json(self) -> String {
        let sums = |s: Sums| serde_json::json!([s.loss, s.metric, s.samples]);
        serde_json::json!({"epoch": sums(self.epoch), "interval": sums(self.interval)}).to_string()
    }

    /// A checkpoint's progress: none (empty) at an epoch's end.
    pub fn parse(text: &str) -> Result<Progress> {
        if text.is_empty() {
            return Ok(Progress::default());
        }
        let v: serde_json::Value = serde_json::from_str(text).context("progress is not JSON")?;
        let sums = |key: &str| {
            let parsed = || -> Option<Sums> {
                let [loss, metric, samples] = v[key].as_array()?.as_slice() else { return None };
                Some(Sums { loss: loss.as_f64()?, metric: metric.as_f64()?, samples: samples.as_u64()? as usize })
            };
            parsed().with_context(|| format!("progress.{key} is not [loss, metric, samples]"))
        };
        Ok(Progress { epoch: sums("epoch")?, interval: sums("interval")? })
    }

    /// Adds one step's mean loss, summed metric and real rows.
    pub fn add(&mut self, loss: f32, metric: f64, valid: usize) {
        for sums in [&mut self.epoch, &mut self.interval] {
            sums.add(loss, metric, valid);
        }
    }
}

/// The metric that picks the best checkpoint and stops training early: validation accuracy
/// or loss (test when there is no validation set).
pub struct Monitor {
    /// The metrics.jsonl key watched ("validation_accuracy", "test_loss").
    pub key: String,
    higher_is_better: bool,
    min_delta: f64,
    patience: u64,
    pub best: f64,
    /// Epochs since the last improvement.
    stale: u64,
}

impl Monitor {
    /// `monitor = "accuracy"` watches the task's figure (accuracy, or a regression's rmse).
    pub fn new(t: &TrainConfig, has_validation: bool, figure: Figure) -> Self {
        let set = if has_validation { "validation" } else { "test" };
        let (name, higher_is_better) = match t.monitor {
            MonitorMetric::Accuracy => (figure.name, figure.higher_is_better),
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

    pub fn should_stop(&self) -> bool {
        self.patience > 0 && self.stale >= self.patience
    }
}

/// What every checkpoint of a run keeps beside the tensors, and what reads them back.
pub struct Kept<'m> {
    /// The resolved config.
    pub config: String,
    /// What the data's preparation learnt (the task's `kept()`).
    pub data: String,
    pub seed: u64,
    pub model: &'m Supervised,
    pub optimizer: Optimizer,
}

/// A run directory being written: its metrics and checkpoints, and what picks the best.
pub struct Run<'m> {
    pub dir: PathBuf,
    pub monitor: Monitor,
    kept: Kept<'m>,
    keep_last: usize,
    metrics: std::fs::File,
    /// Epoch checkpoints kept, oldest first.
    epochs: Vec<PathBuf>,
    /// This process's hold on the directory; released when the run is dropped.
    _lock: RunLock,
}

impl<'m> Run<'m> {
    /// The run in `dir` (held by `lock`), keeping `epochs` (its epoch checkpoints, oldest
    /// first) and the last `keep_last` of those to come; `monitor` picks the best checkpoint,
    /// having seen the epochs a resumed run's metrics hold.
    pub fn open(
        dir: PathBuf,
        kept: Kept<'m>,
        (keep_last, mut monitor): (usize, Monitor),
        (epochs, lock): (Vec<PathBuf>, RunLock),
    ) -> Result<Self> {
        let path = dir.join("metrics.jsonl");
        let rows = read_metrics(&path).unwrap_or_default();
        for row in rows.iter().filter(|r| r["kind"] == "epoch") {
            monitor.update(row[&monitor.key].as_f64().unwrap_or(f64::NAN));
        }
        let metrics = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        Ok(Run { dir, monitor, kept, keep_last, metrics, epochs, _lock: lock })
    }

    /// `state` after `epoch` epochs and, mid-epoch, the next one's progress (JSON).
    pub fn checkpoint(&self, state: TrainerState, epoch: u64, progress: String) -> Checkpoint {
        let (seed, config, data) = (self.kept.seed, self.kept.config.clone(), self.kept.data.clone());
        Checkpoint { state, meta: Meta { epoch, seed, config, data, progress } }
    }

    fn save(&self, checkpoint: &Checkpoint, path: &Path) -> Result<()> {
        Ok(checkpoint.save(path, self.kept.model, &self.kept.optimizer)?)
    }

    /// Saves an unfinished epoch's `checkpoint` as interrupted.safetensors.
    pub fn save_unfinished(&self, checkpoint: &Checkpoint) -> Result<PathBuf> {
        let path = self.dir.join(INTERRUPTED_CHECKPOINT);
        self.save(checkpoint, &path)?;
        Ok(path)
    }

    /// Saves epoch `epoch`'s checkpoint (1-based), as best.safetensors too when its `line`
    /// of metrics is the best yet; keeps the last `keep_last` epochs' and drops the
    /// unfinished epoch's, which it supersedes.
    pub fn save_epoch(&mut self, checkpoint: &Checkpoint, epoch: u64, line: &serde_json::Value) -> Result<()> {
        // The best checkpoint before the epoch's: a kill between the two resumes from the
        // epoch before, which trains this one again and saves the same best.
        if self.monitor.update(line[&self.monitor.key].as_f64().unwrap_or(f64::NAN)) {
            self.save(checkpoint, &self.dir.join("best.safetensors"))?;
        }
        let path = self.dir.join(format!("epoch-{epoch}.safetensors"));
        self.save(checkpoint, &path)?;
        // A resume from before a damaged epoch checkpoint writes that epoch's again.
        self.epochs.retain(|kept| *kept != path);
        self.epochs.push(path);
        while self.epochs.len() > self.keep_last.max(1) {
            std::fs::remove_file(self.epochs.remove(0))?;
        }
        let _ = std::fs::remove_file(self.dir.join(INTERRUPTED_CHECKPOINT));
        Ok(())
    }

    /// Appends `line` to metrics.jsonl in one write: a kill leaves whole lines, or a cut
    /// last one that the resume drops.
    pub fn record(&mut self, line: serde_json::Value) -> Result<()> {
        let path = self.dir.join("metrics.jsonl");
        self.metrics.write_all(format!("{line}\n").as_bytes()).with_context(|| format!("writing {}", path.display()))
    }

    /// Draws curves.png: the loss and `figure` (accuracy or rmse) over the steps, train from
    /// the step lines (the epoch lines where a run has none), `held_out` ("validation" or
    /// "test") at each epoch.
    pub fn draw_curves(&self, held_out: &str, figure: &str) -> Result<()> {
        let rows = read_metrics(&self.dir.join("metrics.jsonl"))?;
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
        plots::curves(&self.dir.join("curves.png"), &[panel("loss"), panel(figure)])
    }
}
