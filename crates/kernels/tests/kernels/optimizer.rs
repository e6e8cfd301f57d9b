use crate::common::*;
use kernels::optimizer::{grad_norm, norm_partials, set_step, update};
use kernels::{Adam, Optimizer, Sgd, cpu};

gpu_test!(optimizers_match_reference_over_several_steps, |gpu| {
    let mut rng = Rng::new(90);
    let sgd = Sgd { lr: 0.1, momentum: 0.9, dampening: 0.1, weight_decay: 1e-2, nesterov: false };
    let optimizers = [
        Optimizer::Sgd(Sgd { momentum: 0.0, ..sgd }),
        Optimizer::Sgd(sgd),
        Optimizer::Sgd(Sgd { nesterov: true, dampening: 0.0, ..sgd }),
        Optimizer::Adam(Adam { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: false }),
        Optimizer::Adam(Adam { lr: 1e-2, beta1: 0.8, beta2: 0.99, eps: 1e-6, weight_decay: 0.1, decoupled: false }),
        Optimizer::Adam(Adam { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.05, decoupled: true }),
    ];
    for opt in optimizers {
        for n in [1, 257, 5000] {
            let mut param = rng.vec(n, -1.0, 1.0);
            let mut state = vec![vec![0.0; n]; 2];
            let (pg, gg) = (upload(gpu, &param), upload(gpu, &vec![0.0; n]));
            let sg: Vec<_> = (0..opt.state_count()).map(|_| upload(gpu, &vec![0.0; n])).collect();
            let d = update(gpu, &opt, 1, &pg, &gg, &sg.iter().collect::<Vec<_>>()).unwrap();
            for step in 1..=3 {
                let grad = rng.vec(n, -1.0, 1.0);
                gpu.write(&gg, &grad).unwrap();
                set_step(gpu, &d, &opt, step, n);
                run(gpu, &[&d]);
                let [m, v] = &mut state[..] else { unreachable!() };
                match &opt {
                    Optimizer::Sgd(s) => cpu::sgd(s, step, &mut param, &grad, m),
                    Optimizer::Adam(a) => cpu::adam(a, step, &mut param, &grad, m, v),
                }
            }
            assert_close(&format!("{opt:?} n={n}"), &read(gpu, &pg), &param);
            for (i, s) in sg.iter().enumerate() {
                assert_close(&format!("{opt:?} state {i}"), &read(gpu, s), &state[i]);
            }
        }
    }
});

#[test]
fn first_adam_step_moves_each_weight_by_about_lr() {
    // With bias correction, m/sqrt(v) = sign(g) on step 1: the textbook sanity check.
    let a = Adam { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: false };
    let (mut p, g) = (vec![1.0, -2.0, 0.5], vec![3.0, -0.001, 40.0]);
    let (mut m, mut v) = (vec![0.0; 3], vec![0.0; 3]);
    cpu::adam(&a, 1, &mut p, &g, &mut m, &mut v);
    for (got, want) in p.iter().zip([0.99, -1.99, 0.49]) {
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }
}

gpu_test!(grad_norm_and_clipping_match_reference, |gpu| {
    let mut rng = Rng::new(91);
    for clip_to in [Some(0.5f32), Some(1e6), None] {
        let lens = [1usize, 5000, 9001];
        let grads: Vec<Vec<f32>> = lens.iter().map(|&n| rng.vec(n, -0.1, 0.1)).collect();
        let mut want = grads.clone();
        let norm = match clip_to {
            Some(max_norm) => {
                cpu::clip_grad_norm(&mut want.iter_mut().map(|g| &mut g[..]).collect::<Vec<_>>(), max_norm)
            }
            None => cpu::grad_norm(&grads.iter().map(|g| &g[..]).collect::<Vec<_>>()),
        };
        let gg: Vec<_> = grads.iter().map(|g| upload(gpu, g)).collect();
        let (partials, out) = (poisoned(gpu, norm_partials(&lens)), poisoned(gpu, 2));
        let d = grad_norm(gpu, &gg.iter().collect::<Vec<_>>(), clip_to, &partials, &out).unwrap();
        run(gpu, &d.iter().collect::<Vec<_>>());
        assert_close("norm", &read(gpu, &out)[..1], &[norm]);
        for (g, w) in gg.iter().zip(&want) {
            assert_close(&format!("clipped to {clip_to:?}"), &read(gpu, g), w);
        }
    }
});

// Training stops on a non-finite gradient norm: one NaN or infinity anywhere must reach it.
gpu_test!(grad_norm_is_not_finite_when_one_gradient_element_is_not, |gpu| {
    let lens = [300usize, 9001];
    for (tensor, at, bad) in [(0, 7, f32::NAN), (1, 9000, f32::INFINITY), (1, 4096, f32::NEG_INFINITY)] {
        let mut grads: Vec<Vec<f32>> = lens.iter().map(|&n| vec![0.01; n]).collect();
        grads[tensor][at] = bad;
        let gg: Vec<_> = grads.iter().map(|g| upload(gpu, g)).collect();
        // Finite to start with: a kernel that wrote nothing would fail the test.
        let (partials, out) = (poisoned(gpu, norm_partials(&lens)), upload(gpu, &[1.0, 1.0]));
        let d = grad_norm(gpu, &gg.iter().collect::<Vec<_>>(), None, &partials, &out).unwrap();
        run(gpu, &d.iter().collect::<Vec<_>>());
        let norm = read(gpu, &out)[0];
        assert!(!norm.is_finite(), "{bad} at {at} of gradient {tensor}: norm {norm}");
        let cpu_norm = cpu::grad_norm(&grads.iter().map(|g| &g[..]).collect::<Vec<_>>());
        assert!(!cpu_norm.is_finite(), "CPU: {cpu_norm}");
    }
});
