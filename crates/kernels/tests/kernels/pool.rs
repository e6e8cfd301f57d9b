use crate::common::*;
use kernels::pool::{avg_pool, avg_pool_backward, max_pool, max_pool_backward};
use kernels::{Pool2d, cpu};

fn cases() -> Vec<Pool2d> {
    let base = Pool2d {
        planes: 6,
        height: 7,
        width: 9,
        kernel: (2, 2),
        stride: (2, 2),
        padding: (0, 0),
        count_include_pad: true,
    };
    vec![
        base,
        Pool2d { kernel: (3, 3), stride: (1, 1), padding: (1, 1), ..base },
        Pool2d { kernel: (3, 2), stride: (2, 3), padding: (1, 1), count_include_pad: false, ..base },
        Pool2d { planes: 33, height: 13, width: 13, kernel: (3, 3), stride: (2, 2), ..base },
        Pool2d::global(5, 7, 3),
    ]
}

gpu_test!(pooling_matches_reference, |gpu| {
    let mut rng = Rng::new(50);
    for p in cases() {
        let x = rng.vec(p.input_len(), -2.0, 2.0);
        let dy = rng.vec(p.output_len(), -1.0, 1.0);
        let (mut y, mut idx, mut dx) =
            (vec![0.0; p.output_len()], vec![0u32; p.output_len()], vec![0.0; p.input_len()]);
        cpu::max_pool(&p, &x, &mut y, &mut idx);
        cpu::max_pool_backward(&p, &dy, &idx, &mut dx);
        let (xg, dyg) = (upload(gpu, &x), upload(gpu, &dy));
        let (yg, ig, dxg) =
            (poisoned(gpu, p.output_len()), poisoned(gpu, p.output_len()), poisoned(gpu, p.input_len()));
        run(gpu, &[&max_pool(gpu, &p, &xg, &yg, &ig).unwrap(), &max_pool_backward(gpu, &p, &dyg, &ig, &dxg).unwrap()]);
        assert_close(&format!("max {p:?}"), &read(gpu, &yg), &y);
        assert_eq!(gpu.read::<u32>(&ig).unwrap(), idx, "argmax {p:?}");
        assert_close(&format!("max' {p:?}"), &read(gpu, &dxg), &dx);

        let (mut y, mut dx) = (vec![0.0; p.output_len()], vec![0.0; p.input_len()]);
        cpu::avg_pool(&p, &x, &mut y);
        cpu::avg_pool_backward(&p, &dy, &mut dx);
        let (yg, dxg) = (poisoned(gpu, p.output_len()), poisoned(gpu, p.input_len()));
        run(gpu, &[&avg_pool(gpu, &p, &xg, &yg).unwrap(), &avg_pool_backward(gpu, &p, &dyg, &dxg).unwrap()]);
        assert_close(&format!("avg {p:?}"), &read(gpu, &yg), &y);
        assert_close(&format!("avg' {p:?}"), &read(gpu, &dxg), &dx);
    }
});

#[test]
fn pooling_gradients_match_finite_differences() {
    let mut rng = Rng::new(51);
    for p in cases() {
        // Distinct values keep max pooling away from ties, where it is not differentiable.
        let x: Vec<f32> = (0..p.input_len()).map(|i| i as f32 * 0.37 % 5.0 + rng.uniform(0.0, 0.01)).collect();
        let r = rng.vec(p.output_len(), -1.0, 1.0);
        let (mut y, mut idx, mut dx) =
            (vec![0.0; p.output_len()], vec![0u32; p.output_len()], vec![0.0; p.input_len()]);
        cpu::max_pool(&p, &x, &mut y, &mut idx);
        cpu::max_pool_backward(&p, &r, &idx, &mut dx);
        let f = |x: &[f32]| {
            let (mut y, mut idx) = (vec![0.0; p.output_len()], vec![0u32; p.output_len()]);
            cpu::max_pool(&p, x, &mut y, &mut idx);
            dot(&y, &r)
        };
        check_gradient(&format!("max {p:?}"), &x, &dx, 1e-3, 1e-2, 40, f);
        cpu::avg_pool_backward(&p, &r, &mut dx);
        let f = |x: &[f32]| {
            let mut y = vec![0.0; p.output_len()];
            cpu::avg_pool(&p, x, &mut y);
            dot(&y, &r)
        };
        check_gradient(&format!("avg {p:?}"), &x, &dx, 0.5, 1e-3, 40, f);
    }
}
