//! Learning works: a small CNN trained on the shipped digits set reaches the accuracy floor.

#[macro_use]
mod common;

use std::path::Path;

use data::{Batches, Dataset, load_digits};
use graph::{
    ConvGeometry, CpuExecutor, Executor, Feed, GpuExecutor, Model, PoolGeometry, Supervised, Trainer, Training,
};
use kernels::Unary;

const BATCH: usize = 32;

/// Conv 1→16 3×3 pad 1, ReLU, MaxPool 2, Conv 16→32 3×3 pad 1, ReLU, MaxPool 2, Flatten,
/// Linear 128→10: the digits counterpart of the reference MNIST CNN.
fn digits_cnn(seed: u64) -> Supervised {
    let mut m = Model::new(seed);
    let x = m.graph.input("x", &[BATCH, 1, 8, 8]);
    let same = ConvGeometry { stride: (1, 1), padding: (1, 1), dilation: (1, 1) };
    let pool = PoolGeometry { kernel: (2, 2), stride: (2, 2), padding: (0, 0), count_include_pad: true };
    let h = m.conv2d("conv1", x, 16, (3, 3), same, true).unwrap();
    let h = m.graph.unary(Unary::Relu, h).unwrap();
    let h = m.graph.max_pool2d(h, pool).unwrap();
    let h = m.conv2d("conv2", h, 32, (3, 3), same, true).unwrap();
    let h = m.graph.unary(Unary::Relu, h).unwrap();
    let h = m.graph.max_pool2d(h, pool).unwrap();
    let h = m.graph.flatten(h).unwrap();
    let logits = m.linear("fc", h, 128, 10, true).unwrap();
    Supervised::classifier(m, x, logits, 0.0).unwrap()
}

fn digits() -> (Dataset, Dataset) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets/digits/digits.csv.gz");
    load_digits(&path).unwrap().split(0.2, 0)
}

fn feed(batch: &data::Batch) -> Feed {
    let mut feed = Feed::default();
    feed.inputs.insert("x".into(), batch.samples.clone());
    feed.labels.insert("y".into(), batch.labels.clone());
    feed
}

/// Trains for `epochs` and returns the test accuracy.
fn train_and_test(trainer: &mut Trainer<impl Executor>, epochs: u64) -> f64 {
    let (train, test) = digits();
    for epoch in 0..epochs {
        for batch in Batches::shuffled(&train, BATCH, 1, epoch) {
            trainer.train_step(&feed(&batch)).unwrap();
        }
    }
    let correct: f32 =
        Batches::in_order(&test, BATCH).map(|b| trainer.evaluate(&feed(&b)).unwrap().metric("correct").unwrap()).sum();
    correct as f64 / test.len() as f64
}

#[test]
fn padding_labels_agree_between_data_and_graph() {
    assert_eq!(data::PADDING_LABEL, graph::PADDING_LABEL);
}

#[test]
fn cpu_trainer_learns_digits_to_97_percent() {
    let mut trainer = Trainer::new(CpuExecutor::new(), &digits_cnn(0), Training::adam(3e-3)).unwrap();
    let accuracy = train_and_test(&mut trainer, 15);
    println!("digits CNN, CPU executor: test accuracy {:.2}%", 100.0 * accuracy);
    assert!(accuracy >= 0.97, "test accuracy {accuracy}");
}

#[test]
fn gpu_trainer_learns_digits_to_97_percent() {
    let Some(gpu) = common::gpu() else { return };
    let mut trainer = Trainer::new(GpuExecutor::new(gpu), &digits_cnn(0), Training::adam(3e-3)).unwrap();
    let accuracy = train_and_test(&mut trainer, 15);
    println!("digits CNN, GPU executor on {}: test accuracy {:.2}%", gpu.summary(), 100.0 * accuracy);
    assert!(accuracy >= 0.97, "test accuracy {accuracy}");
}

on_the_gl_backend_too!();
