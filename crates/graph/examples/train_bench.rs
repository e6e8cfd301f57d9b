//! Training throughput of a reference model (`graph::zoo`) per executor, Adam 1e-3: on
//! MNIST-shaped input at batch 64 the CNN (`configs/cnn.toml`), with `--model lstm|gru` the
//! row-by-row recurrent classifier (28 steps, 128 hidden, last step → Linear 128→10), with
//! `--model vit` the Vision Transformer of `configs/vit-mnist.toml`; on windows of 128
//! character ids (a 78-character vocabulary) at batch 32, `--model char-lstm|gpt-char`, the
//! language models of those configs.
//!
//! `cargo run --release -p graph --example train_bench [-- --model M] [--steps N] [--cpu-only]
//! [--profile]`
//! prints samples/s (windows/s for the language models, and characters/s) as the median of 3
//! timed runs of N steps after a warm-up step, the time to the first step (building, planning,
//! compiling included) and the planned device memory, as text and as one JSON line per
//! executor; `--profile` adds each executor's step time by layer and pass and by op kind. `scripts/torch_train_bench.py` measures PyTorch on the same model and batch.

use std::time::Instant;

use graph::{CellKind, CpuExecutor, Executor, Feed, GpuExecutor, Supervised, Trainer, Training};
use kernels::{AdapterClass, Gpu};

/// The language models' windows and vocabulary (the shipped Shakespeare's).
const CONTEXT: usize = 128;
const VOCAB: usize = 78;

/// Whether `model` reads character windows rather than images.
fn is_text(model: &str) -> bool {
    model.starts_with("char") || model.starts_with("gpt")
}

fn batch_of(model: &str) -> usize {
    if is_text(model) { 32 } else { 64 }
}

fn reference_model(model: &str) -> Supervised {
    let batch = batch_of(model);
    let built = match model {
        "cnn" => graph::zoo::mnist_cnn(0, batch),
        "lstm" => graph::zoo::mnist_rnn(CellKind::Lstm, 0, batch),
        "gru" => graph::zoo::mnist_rnn(CellKind::Gru, 0, batch),
        "vit" => graph::zoo::mnist_vit(0, batch),
        "char-lstm" => graph::zoo::char_lstm(0, batch, CONTEXT, VOCAB),
        "gpt-char" => graph::zoo::char_gpt(0, batch, CONTEXT, VOCAB),
        other => panic!("--model {other:?}: expected cnn, lstm, gru, vit, char-lstm or gpt-char"),
    }
    .unwrap();
    Supervised::classifier(built.model, built.input, built.logits, 0.0).unwrap()
}

/// Batches from a fixed generator: MNIST-shaped pixels in [0, 1) with labels, or windows of
/// character ids with a next id at each position.
fn batches(model: &str, n: usize) -> Vec<Feed> {
    let batch = batch_of(model);
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
            if is_text(model) {
                let ids = |next: &mut dyn FnMut() -> u64| {
                    (0..batch * CONTEXT).map(|_| (next() % VOCAB as u64) as u32).collect()
                };
                feed.labels.insert("x".into(), ids(&mut next));
                feed.labels.insert("y".into(), ids(&mut next));
            } else {
                feed.inputs
                    .insert("x".into(), (0..batch * 784).map(|_| (next() >> 40) as f32 / 16_777_216.0).collect());
                feed.labels.insert("y".into(), (0..batch).map(|_| (next() % 10) as u32).collect());
            }
            feed
        })
        .collect()
}

/// Builds a trainer, times its first step, then the median of 3 runs of `steps` steps;
/// returns the trainer and prints samples/s.
fn measure<E: Executor>(name: &str, model: &str, make: impl FnOnce() -> Trainer<E>, steps: usize) -> Trainer<E> {
    let (feeds, batch) = (batches(model, steps), batch_of(model));
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
        rates.push((steps * batch) as f64 / t.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    let characters =
        if is_text(model) { format!(" ({:.0} characters/s)", rates[1] * CONTEXT as f64) } else { String::new() };
    println!("{name}: {:.0} samples/s{characters} (runs: {rates:.0?}), first step {first:.2} s", rates[1]);
    println!(
        "{{\"bench\":\"train_reference_{model}\",\"executor\":\"{name}\",\"batch\":{batch},\"samples_per_s\":{:.1},\"first_step_s\":{first:.3}}}",
        rates[1]
    );
    trainer
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let steps = args.iter().position(|a| a == "--steps").map_or(20, |i| args[i + 1].parse().expect("--steps N"));
    let model = args.iter().position(|a| a == "--model").map_or("cnn", |i| args[i + 1].as_str());
    let training = Training::adam(1e-3);
    let profiling = args.iter().any(|a| a == "--profile");
    let cpu = if profiling { CpuExecutor::profiled() } else { CpuExecutor::new() };
    let trainer = measure("cpu", model, || Trainer::new(cpu, &reference_model(model), training).unwrap(), steps);
    if profiling {
        println!("{}", trainer.profile());
    }
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
    let executor = || if profiling { GpuExecutor::profiled(&gpu) } else { GpuExecutor::new(&gpu) };
    let trainer =
        measure(&name, model, || Trainer::new(executor(), &reference_model(model), training).unwrap(), gpu_steps);
    if profiling {
        println!("{}", trainer.profile());
    }
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
