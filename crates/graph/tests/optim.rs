//! Learning-rate schedules, and SGD with clipping and a schedule on both executors.

#[macro_use]
mod common;

use common::{assert_close, gpu, values};
use graph::{
    CellKind, CpuExecutor, Executor, Feed, GpuExecutor, Model, Optimizer, Schedule, Sgd, Supervised, Trainer, Training,
};
use kernels::Unary;

fn factors(schedule: Schedule, steps: u64) -> Vec<f32> {
    (0..steps).map(|s| schedule.factor(s)).collect()
}

fn close(got: &[f32], want: &[f64]) -> bool {
    got.len() == want.len() && got.iter().zip(want).all(|(&g, &w)| (g as f64 - w).abs() < 1e-6)
}

#[test]
fn schedules_follow_pytorch() {
    let step = factors(Schedule::Step { every: 3, gamma: 0.5 }, 7);
    assert!(close(&step, &[1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]), "{step:?}");

    let cosine = factors(Schedule::WarmupCosine { warmup: 2, total: 6, floor: 0.0 }, 7);
    let c = |t: f64| 0.5 * (1.0 + (std::f64::consts::PI * t).cos());
    assert!(close(&cosine, &[0.5, 1.0, c(0.0), c(0.25), c(0.5), c(0.75), 0.0]), "{cosine:?}");

    // PyTorch 2.15's OneCycleLR(max_lr=1, total_steps=10, pct_start=0.3, div_factor=25,
    // final_div_factor=1e4) printed [0.04, 0.52, 1.0, 0.950485, 0.811746, 0.611262, 0.388742,
    // 0.188258, 0.049519, 4e-06]: this formula, checked to 1e-6.
    let one_cycle = Schedule::OneCycle { total: 10, pct_start: 0.3, div_factor: 25.0, final_div_factor: 1e4 };
    let (initial, last) = (1.0 / 25.0, 1.0 / 25.0 / 1e4);
    let up = |t: f64| 1.0 + (initial - 1.0) * c(t);
    let down = |t: f64| last + (1.0 - last) * c(t);
    let want: Vec<f64> =
        (0..10).map(|s| if s <= 2 { up(s as f64 / 2.0) } else { down((s as f64 - 2.0) / 7.0) }).collect();
    let got = factors(one_cycle, 10);
    assert!(close(&got, &want), "{got:?} vs {want:?}");
    assert!((got[0] as f64 - initial).abs() < 1e-7 && (got[2] - 1.0).abs() < 1e-7);
}

fn small_mlp() -> Supervised {
    let mut m = Model::new(2);
    let x = m.graph.input("x", &[6, 5]);
    let h = m.linear("fc1", x, 5, 7, true).unwrap();
    let h = m.graph.unary(Unary::Tanh, h).unwrap();
    let logits = m.linear("fc2", h, 7, 3, true).unwrap();
    Supervised::classifier(m, x, logits, 0.1).unwrap()
}

#[test]
fn sgd_with_clipping_and_a_schedule_matches_between_executors() {
    let Some(gpu) = gpu() else { return };
    let sgd = Sgd { lr: 0.5, momentum: 0.9, dampening: 0.0, weight_decay: 1e-2, nesterov: true };
    let training = Training {
        optimizer: Optimizer::Sgd(sgd),
        schedule: Schedule::Step { every: 2, gamma: 0.1 },
        // Small enough that every step clips.
        clip_grad_norm: Some(0.05),
    };
    let mut cpu = Trainer::new(CpuExecutor::new(), &small_mlp(), training).unwrap();
    let mut on_gpu = Trainer::new(GpuExecutor::new(gpu), &small_mlp(), training).unwrap();
    for i in 0..4 {
        let mut feed = Feed::default();
        feed.inputs.insert("x".into(), values(90 + i, 30, 1.0));
        feed.labels.insert("y".into(), vec![0, 1, 2, 0, 1, 2]);
        let (want, got) = (cpu.train_step(&feed).unwrap(), on_gpu.train_step(&feed).unwrap());
        assert_close("loss", &[got.loss], &[want.loss]);
    }
    let (want, got) = (cpu.params().unwrap(), on_gpu.params().unwrap());
    for (name, w) in &want {
        assert_close(&format!("{name} after 4 clipped, scheduled SGD steps"), &got[name], w);
    }
    // Clipping did something: without it the parameters end elsewhere.
    let mut unclipped =
        Trainer::new(CpuExecutor::new(), &small_mlp(), Training { clip_grad_norm: None, ..training }).unwrap();
    for i in 0..4 {
        let mut feed = Feed::default();
        feed.inputs.insert("x".into(), values(90 + i, 30, 1.0));
        feed.labels.insert("y".into(), vec![0, 1, 2, 0, 1, 2]);
        unclipped.train_step(&feed).unwrap();
    }
    assert_ne!(unclipped.params().unwrap()["fc1.weight"], want["fc1.weight"]);
}

/// An LSTM's two biases share one gradient tensor (they are added before use). Clipping
/// scales every gradient in place, so each must be scaled once: with plain SGD the step moves
/// the parameters by exactly lr · clip in norm, and both biases by the same amount.
#[test]
fn a_gradient_shared_by_two_parameters_is_clipped_once() {
    let Some(gpu) = gpu() else { return };
    let (lr, clip) = (0.5, 0.05);
    let sgd = Sgd { lr, momentum: 0.0, dampening: 0.0, weight_decay: 0.0, nesterov: false };
    let training =
        Training { optimizer: Optimizer::Sgd(sgd), schedule: Schedule::Constant, clip_grad_norm: Some(clip) };
    let built = graph::zoo::mnist_rnn(CellKind::Lstm, 0, 3).unwrap();
    let model = Supervised::classifier(built.model, built.input, built.logits, 0.0).unwrap();
    clipped_once("cpu", Trainer::new(CpuExecutor::new(), &model, training).unwrap(), lr * clip);
    clipped_once("gpu", Trainer::new(GpuExecutor::new(gpu), &model, training).unwrap(), lr * clip);
}

fn clipped_once<E: Executor>(name: &str, mut trainer: Trainer<E>, step_norm: f32) {
    let mut feed = Feed::default();
    feed.inputs.insert("x".into(), values(5, 3 * 28 * 28, 1.0));
    feed.labels.insert("y".into(), vec![3, 1, 4]);
    let before = trainer.params().unwrap();
    let stats = trainer.train_step(&feed).unwrap();
    let after = trainer.params().unwrap();
    let moved = |p: &str| -> Vec<f32> { after[p].iter().zip(&before[p]).map(|(a, b)| a - b).collect() };
    let norm = before.keys().flat_map(|p| moved(p)).map(|d| (d as f64).powi(2)).sum::<f64>().sqrt();
    let grad_norm = stats.grad_norm.expect("a training step reports its gradient norm");
    assert!(grad_norm > 10.0 * step_norm, "{name}: the step must clip (gradient norm {grad_norm})");
    assert!((norm / step_norm as f64 - 1.0).abs() < 1e-3, "{name}: the step moved {norm}, not {step_norm}");
    // Equal steps, to the rounding of `param - step` at |param| <= 1/sqrt(128) (2^-27 a unit).
    let (hh, ih) = (moved("rnn.bias_hh_l0"), moved("rnn.bias_ih_l0"));
    let apart = hh.iter().zip(&ih).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(apart <= 2.0 * 2f32.powi(-27), "{name}: the biases' steps differ by up to {apart}");
    assert!(hh.iter().any(|&d| d.abs() > 1e-7), "{name}: the biases did not move");
}

on_the_gl_backend_too!();
