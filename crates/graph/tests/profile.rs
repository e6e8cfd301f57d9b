//! A profiled training step: each executor times every node, and the profile places the time
//! in the model's layers, forward and backward, the optimizer, and by op kind.

#[macro_use]
mod common;

use common::{ROWS, feed, gpu, two_layers, values};
use graph::{CpuExecutor, Executor, GpuExecutor, Trainer, Training};

fn check<E: Executor>(exec: E) {
    let mut trainer = Trainer::new(exec, &two_layers(), Training::adam(1e-3)).unwrap();
    for step in 0..3 {
        trainer.train_step(&feed(values(step, ROWS * 3, 1.0), 0.5)).unwrap();
    }
    let profile = trainer.profile();
    assert_eq!(profile.steps(), 3);
    let layers = profile.by_layer();
    let names: Vec<&str> = layers.iter().map(|row| row.layer.as_str()).collect();
    assert_eq!(names, ["a", "b", "(outside the layers)", "(optimizer)"]);
    for row in &layers[..2] {
        assert!(row.forward > 0.0 && row.backward > 0.0 && row.optimizer == 0.0, "{row:?}");
    }
    let optimizer = &layers[3];
    assert!(optimizer.optimizer > 0.0 && optimizer.forward == 0.0 && optimizer.backward == 0.0, "{optimizer:?}");
    // Every node's time is in one row of each table.
    let by_layer: f64 = layers.iter().map(|row| row.total()).sum();
    let by_op: f64 = profile.by_op().iter().map(|row| row.seconds).sum();
    for total in [by_layer, by_op] {
        assert!((total - profile.step_seconds()).abs() <= 1e-9 * profile.step_seconds().max(1.0), "{total}");
    }
    // The two layers' products forward and backward, the update of each of the 4 parameters.
    let count = |op: &str| profile.by_op().iter().find(|row| row.op == op).map_or(0, |row| row.nodes);
    assert!(count("matmul") >= 5, "{profile}");
    assert_eq!(count("update"), 4, "{profile}");
    let text = profile.to_string();
    assert!(text.starts_with("time per training step over 3 steps:") && text.contains("(optimizer)"), "{text}");
}

#[test]
fn the_cpu_executor_profiles_each_layer_and_op() {
    check(CpuExecutor::profiled());
}

#[test]
fn the_gpu_executor_profiles_each_layer_and_op() {
    let Some(gpu) = gpu() else { return };
    check(GpuExecutor::profiled(gpu));
}

#[test]
fn an_executor_not_built_to_profile_has_an_empty_profile() {
    let mut trainer = Trainer::new(CpuExecutor::new(), &two_layers(), Training::adam(1e-3)).unwrap();
    trainer.train_step(&feed(values(1, ROWS * 3, 1.0), 0.5)).unwrap();
    assert!(trainer.profile().is_empty());
}

on_the_gl_backend_too!();
