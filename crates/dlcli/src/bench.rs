//! `dlcli bench`: how fast a config's model trains and evaluates here, on its own data: the
//! time to the first training step, training throughput (the median of 3 runs), evaluation
//! throughput at a large batch, and the process's peak memory. `scripts/bench_all.sh` runs it
//! beside PyTorch on every shipped config.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use data::{Batches, Dataset};
use graph::{Feed, Mode, Trainer};

use crate::config::{Config, Device};
use crate::task::{self, Task};
use crate::{context, memory, model};

#[derive(clap::Args)]
pub struct Args {
    /// The model config (TOML), e.g. configs/cnn.toml.
    #[arg(long)]
    config: PathBuf,
    /// Overrides train.device.
    #[arg(long, value_enum)]
    device: Option<Device>,
    /// Training steps per timed run (3 runs after one warm-up step).
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// The evaluation's batch size.
    #[arg(long, default_value_t = 1000)]
    eval_batch: usize,
    /// Evaluation batches per timed pass (3 passes after one warm-up batch).
    #[arg(long, default_value_t = 5)]
    eval_batches: usize,
    /// Also print the training step's time per layer and op kind (as `train --profile`).
    #[arg(long)]
    profile: bool,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// What one bench measured.
struct Measured {
    executor: String,
    batch: usize,
    /// Positions each sample trains (a language model's window), 1 otherwise.
    positions: usize,
    /// Seconds from building the model to the end of the first training step.
    first_step: f64,
    /// Training samples per second of each timed run.
    train: Vec<f64>,
    /// Evaluation samples per second of each timed pass.
    eval: Vec<f64>,
    /// Peak resident memory of the process, in bytes.
    peak_rss: Option<u64>,
}

pub fn run(args: &Args) -> Result<()> {
    if args.steps == 0 || args.eval_batches == 0 || args.eval_batch == 0 {
        bail!("--steps, --eval-batch and --eval-batches must be at least 1");
    }
    let mut config = Config::load(&args.config)?;
    if let Some(device) = args.device {
        config.train.device = device;
    }
    let (data, task) = task::load(&config.data, config.train.seed)?;
    let train_set = data.epoch(config.train.seed, 0);
    let batch = config.train.batch_size;
    if train_set.len() < batch {
        bail!("{}: the training set ({}) is smaller than a batch ({batch})", args.config.display(), train_set.len());
    }
    let gpu = context::open_device(config.train.device)?;
    let feeds = feeds(task.as_ref(), &train_set, batch, config.train.seed, args.steps + 1);
    let built = Instant::now();
    let model = model::build(&config, task.as_ref(), batch)?;
    let training = context::training(&config.train, (3 * args.steps + 1) as u64);
    memory::Estimate::of(&model, &training, false)?.check(gpu.as_ref(), batch)?;
    let exec = context::executor(gpu.as_ref(), args.profile);
    let executor = match &gpu {
        Some(gpu) => format!("GPU executor on {}", gpu.summary().name),
        None => format!("CPU executor ({} threads)", rayon::current_num_threads()),
    };
    let mut trainer = Trainer::new(exec, &model, training)?;
    trainer.train_step(&feeds[0])?;
    let first_step = built.elapsed().as_secs_f64();
    let train = timed(3, || {
        for feed in &feeds[1..] {
            trainer.train_step(feed)?;
        }
        Ok((args.steps * batch) as f64)
    })?;
    if args.profile {
        println!("{}", trainer.profile());
    }
    drop(trainer);
    let eval = evaluation(&config, task.as_ref(), &data.test, gpu.as_ref(), args)?;
    let positions = match data.test.targets {
        data::Targets::Classes { per_sample, .. } => per_sample,
        data::Targets::Values { .. } => 1,
    };
    let measured = Measured { executor, batch, positions, first_step, train, eval, peak_rss: peak_rss() };
    report(args, &measured);
    Ok(())
}

/// `n` feeds of shuffled training batches, epoch after epoch (gathered before any timing).
fn feeds(task: &dyn Task, set: &Dataset, batch: usize, seed: u64, n: usize) -> Vec<Feed> {
    let batches = (0..).flat_map(|epoch| Batches::shuffled(set, batch, seed, epoch));
    batches.take(n).map(|b| task.feed(&b, set)).collect()
}

/// Samples per second of each of `runs` runs of `work`, which returns the samples it did.
fn timed(runs: usize, mut work: impl FnMut() -> Result<f64>) -> Result<Vec<f64>> {
    (0..runs)
        .map(|_| {
            let start = Instant::now();
            let samples = work()?;
            Ok(samples / start.elapsed().as_secs_f64())
        })
        .collect()
}

/// Evaluation throughput: the model at `--eval-batch`, forward only, over test batches (the
/// test set over and over where it is shorter; a last partial batch is padded, and counts as
/// the rows it computes).
fn evaluation(
    config: &Config,
    task: &dyn Task,
    test: &Dataset,
    gpu: Option<&kernels::Gpu>,
    args: &Args,
) -> Result<Vec<f64>> {
    let model = model::build(config, task, args.eval_batch)?;
    let mut exec = context::executor(gpu, false);
    for (name, value) in model.init.values() {
        exec.write_named(&name, &value)?;
    }
    let run = exec.prepare(&model.graph, Mode::Eval, &[model.loss, model.metric]).context("preparing evaluation")?;
    let batches = (0..).flat_map(|_| Batches::in_order(test, args.eval_batch));
    let feeds: Vec<Feed> = batches.take(args.eval_batches + 1).map(|b| task.feed(&b, test)).collect();
    let mut pass = |feeds: &[Feed]| -> Result<f64> {
        for feed in feeds {
            exec.run(run, feed, 0)?;
            exec.read(run, model.loss)?;
        }
        Ok((feeds.len() * args.eval_batch) as f64)
    };
    pass(&feeds[..1])?;
    timed(3, || pass(&feeds[1..]))
}

/// The process's peak resident memory (VmHWM), where the system says.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn report(args: &Args, m: &Measured) {
    let name = args.config.file_stem().and_then(|s| s.to_str()).unwrap_or("config");
    let (train, eval) = (median(&m.train), median(&m.eval));
    if args.json {
        let line = serde_json::json!({
            "bench": "dlcli", "config": name, "executor": m.executor, "batch": m.batch,
            "train_samples_per_s": train, "train_runs": m.train, "train_positions_per_s": train * m.positions as f64,
            "first_step_s": m.first_step, "eval_batch": args.eval_batch, "eval_samples_per_s": eval,
            "eval_runs": m.eval, "peak_rss_bytes": m.peak_rss,
        });
        println!("{line}");
        return;
    }
    let runs = |rates: &[f64]| rates.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(" ");
    let positions =
        if m.positions > 1 { format!(" ({:.0} positions/s)", train * m.positions as f64) } else { String::new() };
    println!("dlcli bench: {} on the {}, batch {}", args.config.display(), m.executor, m.batch);
    println!("first step   {:.3} s (building the model and trainer, and one step)", m.first_step);
    println!("training     {train:.0} samples/s{positions} (runs of {} steps: {})", args.steps, runs(&m.train));
    println!("evaluation   {eval:.0} samples/s at batch {} (passes: {})", args.eval_batch, runs(&m.eval));
    if let Some(bytes) = m.peak_rss {
        println!("peak RSS     {:.1} MB", bytes as f64 / 1e6);
    }
}
