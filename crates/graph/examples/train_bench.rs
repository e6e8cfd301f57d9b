//! Training throughput of a reference model on MNIST-shaped input, per executor: the CNN
//! (Conv 1→32 3×3, ReLU, MaxPool 2, Conv 32→64 3×3, ReLU, MaxPool 2, Flatten, Linear 1600→128,
//! ReLU, Linear 128→10) or, with `--model lstm|gru`, the row-by-row recurrent classifier
//! (28 steps, 128 hidden, last step → Linear 128→10); Adam 1e-3; batch 64.
//!
//! `cargo run --release -p graph --example train_bench [-- --model cnn|lstm|gru] [--steps N] [--cpu-only]`
//! prints samples/s (median of 3 timed runs of N steps after a warm-up step), the time to the
//! first step (building, planning, compiling included) and the planned device memory, as text
//! and as one JSON line per executor. `scripts/torch_train_bench.py` measures PyTorch on the
//! same model and batch.

use std::time::Instant;

use graph::{CellKind, CpuExecutor, Executor, Feed, GpuExecutor, Supervised, Trainer, Training};
use kernels::{AdapterClass, Gpu};

const BATCH: usize = 64;

fn reference_model(model: &str) -> Supervised {
    let built = match model {
        "cnn" => graph::zoo::mnist_cnn(0, BATCH),
        "lstm" => graph::zoo::mnist_rnn(CellKind::Lstm, 0, BATCH),
        "gru" => graph::zoo::mnist_rnn(CellKind::Gru, 0, BATCH),
        other => panic!("--model {other:?}: expected cnn, lstm or gru"),
    }
    .unwrap();
    Supervised::classifier(built.model, built.input, built.logits, 0.0).unwrap()
}

/// MNIST-shaped batches: pixel values in [0, 1) and labels from a fixed generator.
fn batches(n: usize) -> Vec<Feed> {
    let mut s = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    (0..n)
        .map(|_| {
            let mut feed = Feed::default();
            feed.inputs.insert("x".into(), (0..BATCH * 784).map(|_| (next() >> 40) as f32 / 16_777_216.0).collect());
            feed.labels.insert("y".into(), (0..BATCH).map(|_| (next() % 10) as u32).collect());
            feed
        })
        .collect()
}

/// Builds a trainer, times its first step, then the median of 3 runs of `steps` steps;
/// returns the trainer and prints samples/s.
fn measure<E: Executor>(name: &str, model: &str, make: impl FnOnce() -> Trainer<E>, steps: usize) -> Trainer<E> {
    let feeds = batches(steps);
    let start = Instant::now();
    let mut trainer = make();
    trainer.train_step(&feeds[0]).unwrap();
    let first = start.elapsed().as_secs_f64();
    let mut rates = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        for feed in &feeds {
            trainer.train_step(feed).unwrap();
        }
        rates.push((steps * BATCH) as f64 / t.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    println!("{name}: {:.0} samples/s (runs: {rates:.0?}), first step {first:.2} s", rates[1]);
    println!(
        "{{\"bench\":\"train_reference_{model}\",\"executor\":\"{name}\",\"batch\":{BATCH},\"samples_per_s\":{:.1},\"first_step_s\":{first:.3}}}",
        rates[1]
    );
    trainer
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let steps = args.iter().position(|a| a == "--steps").map_or(20, |i| args[i + 1].parse().expect("--steps N"));
    let model = args.iter().position(|a| a == "--model").map_or("cnn", |i| args[i + 1].as_str());
    let training = Training::adam(1e-3);
    measure("cpu", model, || Trainer::new(CpuExecutor::new(), &reference_model(model), training).unwrap(), steps);
    if args.iter().any(|a| a == "--cpu-only") {
        return;
    }
    let gpu = match Gpu::open() {
        Ok(gpu) => gpu,
        Err(e) => return println!("gpu: skipped ({e})"),
    };
    // A software adapter is orders of magnitude slower: a few steps tell its rate.
    let gpu_steps = if gpu.class() == AdapterClass::Cpu { steps.min(3) } else { steps };
    let name = format!("gpu ({})", gpu.summary().name);
    let trainer = measure(
        &name,
        model,
        || Trainer::new(GpuExecutor::new(&gpu), &reference_model(model), training).unwrap(),
        gpu_steps,
    );
    let (train, eval) = trainer.runs();
    let (train, eval) = (trainer.executor().memory(train), trainer.executor().memory(eval));
    println!(
        "gpu memory: planned {:.1} MiB for a training step (one buffer per tensor: {:.1} MiB), evaluation {:.1} MiB \
         (shared with training), parameters and fed data {:.1} MiB",
        mib(train.planned),
        mib(train.unshared),
        mib(eval.planned),
        mib(train.persistent)
    );
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
