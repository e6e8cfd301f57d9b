//! A training step stops being finite, in the forward or only in the backward pass: the step's
//! statistics say so (the loss, or the gradient norm alone), and a trainer that detects
//! anomalies names the layer and node where the first NaN or infinity appeared, on both
//! executors.

#[macro_use]
mod common;

use common::{ROWS, feed, gpu, two_layers, values};
use graph::{CpuExecutor, Executor, GpuExecutor, Pass, Trainer, Training};

/// Sets layer `a`'s weight to 0 and bias to 1 (so h = 1 whatever x is) and layer `b`'s
/// weight to `b_weight`.
fn set_weights<E: Executor>(trainer: &mut Trainer<E>, b_weight: f32) {
    let mut state = trainer.state().unwrap();
    state.params.insert("a.weight".into(), vec![0.0; 15]);
    state.params.insert("a.bias".into(), vec![1.0; 5]);
    state.params.insert("b.weight".into(), vec![b_weight; 5]);
    trainer.restore(&state).unwrap();
}

fn check<E: Executor>(exec: impl Fn() -> E) {
    let training = Training::adam(1e-3);
    // A healthy step: everything finite, nothing to name.
    let mut trainer = Trainer::detecting_anomalies(exec(), &two_layers(), training).unwrap();
    let stats = trainer.train_step(&feed(values(1, ROWS * 3, 1.0), 0.5)).unwrap();
    assert!(stats.is_finite() && stats.grad_norm.unwrap() > 0.0, "{stats:?}");
    assert_eq!(trainer.first_non_finite().unwrap(), None);

    // A finite forward whose backward overflows: x holds 1e34 where layer a's weight is 0, so
    // the loss is finite (about 1e12) but dL/d(a.weight) = Σ dL/dh · x is about 1e39.
    let mut trainer = Trainer::detecting_anomalies(exec(), &two_layers(), training).unwrap();
    set_weights(&mut trainer, 0.5);
    let stats = trainer.train_step(&feed(vec![1e34; ROWS * 3], 1e6)).unwrap();
    assert!(stats.loss.is_finite(), "{stats:?}");
    assert!(!stats.grad_norm.unwrap().is_finite() && !stats.is_finite(), "{stats:?}");
    let anomaly = trainer.first_non_finite().unwrap().expect("a non-finite gradient");
    assert_eq!((anomaly.layer.as_deref(), anomaly.pass, anomaly.op.as_str()), (Some("a"), Pass::Backward, "matmul"));
    assert_eq!((anomaly.shape.as_slice(), anomaly.count), (&[5, 3][..], 15), "{anomaly}");
    let message = anomaly.to_string();
    assert!(message.starts_with("layer \"a\", backward (matmul#"), "{message}");

    // A forward that overflows in layer b: h = 1 and every weight of b is 3e38.
    let mut trainer = Trainer::detecting_anomalies(exec(), &two_layers(), training).unwrap();
    set_weights(&mut trainer, 3e38);
    let stats = trainer.train_step(&feed(values(2, ROWS * 3, 1.0), 0.5)).unwrap();
    assert!(!stats.loss.is_finite(), "{stats:?}");
    let anomaly = trainer.first_non_finite().unwrap().expect("a non-finite output");
    assert_eq!((anomaly.layer.as_deref(), anomaly.pass), (Some("b"), Pass::Forward), "{anomaly}");
    assert_eq!((anomaly.first, anomaly.count), ((0, f32::INFINITY), ROWS), "{anomaly}");

    // Data holding a NaN is named as such, before any layer.
    let mut x = values(3, ROWS * 3, 1.0);
    x[4] = f32::NAN;
    let stats = trainer.train_step(&feed(x, 0.5)).unwrap();
    assert!(!stats.is_finite());
    let anomaly = trainer.first_non_finite().unwrap().expect("the NaN fed");
    assert_eq!((anomaly.pass, anomaly.layer, anomaly.count, anomaly.first.0), (Pass::Input, None, 1, 4));
}

#[test]
fn the_first_non_finite_value_is_named_on_the_cpu() {
    check(CpuExecutor::new);
}

#[test]
fn the_first_non_finite_value_is_named_on_the_gpu() {
    let Some(gpu) = gpu() else { return };
    check(|| GpuExecutor::new(gpu));
}

/// A trainer that keeps only what a step needs cannot name anything, and says so.
#[test]
fn a_trainer_without_anomaly_detection_refuses_to_look() {
    let trainer = Trainer::new(CpuExecutor::new(), &two_layers(), Training::adam(1e-3)).unwrap();
    assert!(!trainer.detects_anomalies());
    let e = trainer.first_non_finite().unwrap_err().to_string();
    assert!(e.contains("Trainer::detecting_anomalies"), "{e}");
}

on_the_gl_backend_too!();
