use crate::common::*;
use kernels::norm::{batch_norm, batch_norm_backward, layer_norm, layer_norm_backward};
use kernels::{BatchNorm, LayerNorm, cpu};

fn bn_cases() -> Vec<BatchNorm> {
    let base = BatchNorm { batch: 3, channels: 7, spatial: 33, eps: 1e-5, momentum: 0.1, train: true };
    vec![
        base,
        BatchNorm { batch: 64, channels: 3, spatial: 1, ..base },
        BatchNorm { batch: 2, channels: 1, spatial: 257, ..base },
        BatchNorm { batch: 5, channels: 17, spatial: 121, momentum: 0.3, ..base },
        BatchNorm { train: false, ..base },
    ]
}

gpu_test!(batch_norm_matches_reference, |gpu| {
    let mut rng = Rng::new(60);
    for bn in bn_cases() {
        let c = bn.channels;
        let x = rng.vec(bn.len(), -2.0, 3.0);
        let (gamma, beta, dy) = (rng.vec(c, 0.5, 1.5), rng.vec(c, -0.5, 0.5), rng.vec(bn.len(), -1.0, 1.0));
        let (mean0, var0) = (rng.vec(c, -0.2, 0.2), rng.vec(c, 0.5, 2.0));
        let (mut mean, mut var) = (mean0.clone(), var0.clone());
        let (mut saved, mut y) = (vec![0.0; 2 * c], vec![0.0; bn.len()]);
        cpu::batch_norm(&bn, &x, &gamma, &beta, &mut mean, &mut var, &mut saved, &mut y);
        let (mut dg, mut db, mut dx) = (vec![0.0; c], vec![0.0; c], vec![0.0; bn.len()]);
        cpu::batch_norm_backward(&bn, &x, &dy, &saved, &gamma, &mut dg, &mut db, &mut dx);

        let (xg, gg, bg, dyg) = (upload(gpu, &x), upload(gpu, &gamma), upload(gpu, &beta), upload(gpu, &dy));
        let (mg, vg) = (upload(gpu, &mean0), upload(gpu, &var0));
        let (sg, yg, dgg, dbg, dxg) = (
            poisoned(gpu, 2 * c),
            poisoned(gpu, bn.len()),
            poisoned(gpu, c),
            poisoned(gpu, c),
            poisoned(gpu, bn.len()),
        );
        let fwd = batch_norm(gpu, &bn, &xg, &gg, &bg, &mg, &vg, &sg, &yg).unwrap();
        let bwd = batch_norm_backward(gpu, &bn, &xg, &dyg, &sg, &gg, &dgg, &dbg, &dxg).unwrap();
        run(gpu, &fwd.iter().chain(&bwd).collect::<Vec<_>>());
        assert_close(&format!("bn y {bn:?}"), &read(gpu, &yg), &y);
        assert_close(&format!("bn running_mean {bn:?}"), &read(gpu, &mg), &mean);
        assert_close(&format!("bn running_var {bn:?}"), &read(gpu, &vg), &var);
        assert_close(&format!("bn dgamma {bn:?}"), &read(gpu, &dgg), &dg);
        assert_close(&format!("bn dbeta {bn:?}"), &read(gpu, &dbg), &db);
        assert_close(&format!("bn dx {bn:?}"), &read(gpu, &dxg), &dx);
    }
});

#[test]
fn batch_norm_gradients_match_finite_differences() {
    let mut rng = Rng::new(61);
    for bn in [bn_cases()[0], bn_cases()[4]] {
        let c = bn.channels;
        let x = rng.vec(bn.len(), -2.0, 3.0);
        let (gamma, beta, r) = (rng.vec(c, 0.5, 1.5), rng.vec(c, -0.5, 0.5), rng.vec(bn.len(), -1.0, 1.0));
        let forward = |x: &[f32], gamma: &[f32]| {
            let (mut mean, mut var) = (vec![0.1; c], vec![1.5; c]);
            let (mut saved, mut y) = (vec![0.0; 2 * c], vec![0.0; bn.len()]);
            cpu::batch_norm(&bn, x, gamma, &beta, &mut mean, &mut var, &mut saved, &mut y);
            (dot(&y, &r), saved)
        };
        let saved = forward(&x, &gamma).1;
        let (mut dg, mut db, mut dx) = (vec![0.0; c], vec![0.0; c], vec![0.0; bn.len()]);
        cpu::batch_norm_backward(&bn, &x, &r, &saved, &gamma, &mut dg, &mut db, &mut dx);
        check_gradient(&format!("bn dx train={}", bn.train), &x, &dx, 1e-2, 1e-2, 40, |x| forward(x, &gamma).0);
        check_gradient(&format!("bn dgamma train={}", bn.train), &gamma, &dg, 1e-2, 1e-2, 7, |g| forward(&x, g).0);
    }
}

gpu_test!(layer_norm_matches_reference, |gpu| {
    let mut rng = Rng::new(62);
    for (rows, features) in [(1, 1), (3, 7), (33, 64), (257, 33), (5, 1000)] {
        let ln = LayerNorm { rows, features, eps: 1e-5 };
        let n = rows * features;
        let x = rng.vec(n, -2.0, 3.0);
        let (gamma, beta, dy) = (rng.vec(features, 0.5, 1.5), rng.vec(features, -0.5, 0.5), rng.vec(n, -1.0, 1.0));
        let (mut y, mut saved) = (vec![0.0; n], vec![0.0; 2 * rows]);
        cpu::layer_norm(&ln, &x, &gamma, &beta, &mut y, &mut saved);
        let (mut dg, mut db, mut dx) = (vec![0.0; features], vec![0.0; features], vec![0.0; n]);
        cpu::layer_norm_backward(&ln, &x, &dy, &saved, &gamma, &mut dg, &mut db, &mut dx);
        let (xg, gg, bg, dyg) = (upload(gpu, &x), upload(gpu, &gamma), upload(gpu, &beta), upload(gpu, &dy));
        let (yg, sg, dgg, dbg, dxg) = (
            poisoned(gpu, n),
            poisoned(gpu, 2 * rows),
            poisoned(gpu, features),
            poisoned(gpu, features),
            poisoned(gpu, n),
        );
        let fwd = layer_norm(gpu, &ln, &xg, &gg, &bg, &yg, &sg).unwrap();
        let bwd = layer_norm_backward(gpu, &ln, &xg, &dyg, &sg, &gg, &dgg, &dbg, &dxg).unwrap();
        run(gpu, &[&fwd, &bwd[0], &bwd[1]]);
        assert_close(&format!("ln y {rows}x{features}"), &read(gpu, &yg), &y);
        assert_close(&format!("ln dx {rows}x{features}"), &read(gpu, &dxg), &dx);
        assert_close(&format!("ln dgamma {rows}x{features}"), &read(gpu, &dgg), &dg);
        assert_close(&format!("ln dbeta {rows}x{features}"), &read(gpu, &dbg), &db);
    }
});

#[test]
fn layer_norm_gradients_match_finite_differences() {
    let mut rng = Rng::new(63);
    let ln = LayerNorm { rows: 4, features: 9, eps: 1e-5 };
    let x = rng.vec(36, -2.0, 3.0);
    let (gamma, beta, r) = (rng.vec(9, 0.5, 1.5), rng.vec(9, -0.5, 0.5), rng.vec(36, -1.0, 1.0));
    let forward = |x: &[f32], gamma: &[f32]| {
        let (mut y, mut saved) = (vec![0.0; 36], vec![0.0; 8]);
        cpu::layer_norm(&ln, x, gamma, &beta, &mut y, &mut saved);
        (dot(&y, &r), saved)
    };
    let saved = forward(&x, &gamma).1;
    let (mut dg, mut db, mut dx) = (vec![0.0; 9], vec![0.0; 9], vec![0.0; 36]);
    cpu::layer_norm_backward(&ln, &x, &r, &saved, &gamma, &mut dg, &mut db, &mut dx);
    check_gradient("ln dx", &x, &dx, 1e-2, 1e-2, 36, |x| forward(x, &gamma).0);
    check_gradient("ln dgamma", &gamma, &dg, 1e-2, 1e-2, 9, |g| forward(&x, g).0);
}
