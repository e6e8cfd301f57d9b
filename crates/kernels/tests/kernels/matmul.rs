use crate::common::*;
use kernels::matmul::{Tiling, matmul, matmul_tiled};
use kernels::{Bias, Matmul, MatrixView, Unary, cpu};

/// Both tilings, with tile shapes that differ from the defaults, run on every adapter.
fn tilings() -> [Tiling; 4] {
    [
        Tiling { shared: false, wg_x: 8, wg_y: 8, tm: 16, tn: 16, bk: 1 },
        Tiling { shared: false, wg_x: 4, wg_y: 2, tm: 16, tn: 16, bk: 1 },
        Tiling { shared: true, wg_x: 16, wg_y: 16, tm: 4, tn: 4, bk: 16 },
        Tiling { shared: true, wg_x: 8, wg_y: 4, tm: 2, tn: 3, bk: 5 },
    ]
}

fn check(gpu: &kernels::Gpu, mm: &Matmul, tiling: Tiling, rng: &mut Rng, what: &str) {
    let a = rng.vec(mm.a.extent(mm.batch, mm.m, mm.k), -1.0, 1.0);
    let b = rng.vec(mm.b.extent(mm.batch, mm.k, mm.n), -1.0, 1.0);
    let bias_len = match mm.bias {
        Bias::None => 0,
        Bias::PerColumn => mm.n,
        Bias::PerRow => mm.m,
    };
    let bias = rng.vec(bias_len, -1.0, 1.0);
    let c_len = mm.c.extent(mm.batch, mm.m, mm.n);
    // With beta != 0 C is an input; otherwise poison it.
    let c0 = if mm.beta != 0.0 { rng.vec(c_len, -1.0, 1.0) } else { vec![f32::NAN; c_len] };
    let mut want = c0.clone();
    cpu::matmul(mm, &a, &b, (bias_len > 0).then_some(&bias[..]), &mut want);
    let (ag, bg, cg) = (upload(gpu, &a), upload(gpu, &b), upload(gpu, &c0));
    let biasg = (bias_len > 0).then(|| upload(gpu, &bias));
    run_all(gpu, &matmul_tiled(gpu, mm, tiling, &ag, &bg, biasg.as_ref(), &cg).unwrap());
    let got = read(gpu, &cg);
    // Only the elements the view covers are outputs (C may be a strided sub-view).
    let idx: Vec<usize> = (0..mm.batch)
        .flat_map(|z| (0..mm.m).flat_map(move |i| (0..mm.n).map(move |j| (z, i, j))))
        .map(|(z, i, j)| mm.c.offset + z * mm.c.batch_stride + i * mm.c.row_stride + j)
        .collect();
    let pick = |v: &[f32]| idx.iter().map(|&i| v[i]).collect::<Vec<_>>();
    assert_close(&format!("{what} {tiling:?}"), &pick(&got), &pick(&want));
}

gpu_test!(matmul_matches_reference_at_odd_sizes, |gpu| {
    let mut rng = Rng::new(10);
    for tiling in tilings() {
        for (m, n, k) in [(1, 1, 1), (3, 7, 5), (33, 1, 127), (127, 33, 7), (257, 127, 33), (1, 257, 64), (70, 3, 257)]
        {
            check(gpu, &Matmul::new(m, n, k), tiling, &mut rng, &format!("{m}x{n}x{k}"));
        }
    }
});

gpu_test!(matmul_handles_transposes_batches_and_views, |gpu| {
    let mut rng = Rng::new(11);
    for tiling in tilings() {
        check(gpu, &Matmul::new(33, 17, 65).transpose_a(), tiling, &mut rng, "Aᵀ");
        check(gpu, &Matmul::new(33, 17, 65).transpose_b(), tiling, &mut rng, "Bᵀ");
        check(gpu, &Matmul::new(9, 31, 13).transpose_a().transpose_b().batched(5), tiling, &mut rng, "batched AᵀBᵀ");
        // Broadcast B over the batch (stride 0), as a shared weight.
        let mut shared_b = Matmul::new(7, 9, 11).batched(3);
        shared_b.b.batch_stride = 0;
        check(gpu, &shared_b, tiling, &mut rng, "shared B");
        // A time step of x: [B=4, T=6, F=10] at t = 2, into a slice of a [4, 6, 12] output.
        let mut step = Matmul::new(4, 12, 10);
        step.a = MatrixView { offset: 2 * 10, batch_stride: 0, row_stride: 6 * 10, col_stride: 1 };
        step.c = MatrixView { offset: 2 * 12, batch_stride: 0, row_stride: 6 * 12, col_stride: 1 };
        check(gpu, &step, tiling, &mut rng, "time-step view");
    }
});

gpu_test!(matmul_epilogue_bias_activation_and_accumulate, |gpu| {
    let mut rng = Rng::new(12);
    for tiling in tilings() {
        for (bias, act) in [(Bias::PerColumn, Unary::Relu), (Bias::PerRow, Unary::GeluErf), (Bias::None, Unary::Tanh)] {
            let mut mm = Matmul::new(37, 29, 23).transpose_b();
            mm.bias = bias;
            mm.activation = act;
            mm.alpha = 0.7;
            check(gpu, &mm, tiling, &mut rng, &format!("{bias:?} {act:?}"));
        }
        let mut acc = Matmul::new(19, 21, 40);
        acc.beta = 1.0;
        check(gpu, &acc, tiling, &mut rng, "beta = 1");
    }
});

gpu_test!(matmul_default_tiling_runs_large_k, |gpu| {
    let mut rng = Rng::new(13);
    let mm = Matmul::new(65, 130, 1000);
    let a = rng.vec(65 * 1000, -1.0, 1.0);
    let b = rng.vec(1000 * 130, -1.0, 1.0);
    let mut want = vec![0.0; 65 * 130];
    cpu::matmul(&mm, &a, &b, None, &mut want);
    let (ag, bg, cg) = (upload(gpu, &a), upload(gpu, &b), poisoned(gpu, 65 * 130));
    run_all(gpu, &matmul(gpu, &mm, &ag, &bg, None, &cg).unwrap());
    assert_close("k = 1000", &read(gpu, &cg), &want);
});

gpu_test!(matmul_names_the_short_operand, |gpu| {
    let mm = Matmul::new(4, 5, 6);
    let (a, b, c) = (upload(gpu, &[0.0; 24]), upload(gpu, &[0.0; 29]), poisoned(gpu, 20));
    let err = matmul(gpu, &mm, &a, &b, None, &c).err().unwrap().to_string();
    assert!(err.contains("B (1 x 6 x 5) holds 29 elements but the shape needs 30"), "{err}");
});

gpu_test!(matmul_splits_a_k_longer_than_the_loop_budget, |gpu| {
    // k = 70,000 exceeds lavapipe's 65,535 loop iterations per invocation: the product must be
    // split into chunks accumulated in C (a conv weight gradient at batch 64 on 32x32 images
    // has k = 65,536). On GPUs it is one dispatch.
    let mut rng = Rng::new(14);
    let (m, n, k) = (3, 5, 70_000);
    let mut mm = Matmul::new(m, n, k).transpose_b();
    mm.bias = Bias::PerColumn;
    let (a, b, bias) = (rng.vec(m * k, -1.0, 1.0), rng.vec(n * k, -1.0, 1.0), rng.vec(n, -1.0, 1.0));
    let mut want = vec![0.0; m * n];
    cpu::matmul(&mm, &a, &b, Some(&bias), &mut want);
    let (ag, bg, biasg, cg) = (upload(gpu, &a), upload(gpu, &b), upload(gpu, &bias), poisoned(gpu, m * n));
    let dispatches = matmul(gpu, &mm, &ag, &bg, Some(&biasg), &cg).unwrap();
    if gpu.loop_budget().is_some() {
        assert!(dispatches.len() > 1, "expected a split on a loop-capped adapter");
    }
    run_all(gpu, &dispatches);
    // Summing 70,000 products in chunks: the error grows with sqrt(k).
    assert_close_tol("k = 70000", &read(gpu, &cg), &want, 1e-3);
});

gpu_test!(matmul_with_empty_k_still_writes_the_epilogue, |gpu| {
    // k = 0: A.B is zero, so C = act(bias) + beta * C must still be written.
    let mut rng = Rng::new(15);
    for tiling in tilings() {
        let mut mm = Matmul::new(3, 5, 0);
        mm.bias = Bias::PerColumn;
        mm.activation = Unary::Relu;
        check(gpu, &mm, tiling, &mut rng, "k = 0");
    }
});
