//! Learning-rate schedules, and SGD with clipping and a schedule on both executors.

#[macro_use]
mod common;

use common::{assert_close, gpu, values};
use graph::{CpuExecutor, Feed, GpuExecutor, Model, Optimizer, Schedule, Sgd, Supervised, Trainer, Training};
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

on_the_gl_backend_too!();
