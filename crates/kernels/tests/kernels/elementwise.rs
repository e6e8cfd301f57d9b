use crate::common::*;
use kernels::{Binary, Broadcast, Unary, cpu, elementwise};

const UNARY_OPS: [Unary; 12] = [
    Unary::Identity,
    Unary::Relu,
    Unary::LeakyRelu(0.1),
    Unary::GeluTanh,
    Unary::GeluErf,
    Unary::Sigmoid,
    Unary::Tanh,
    Unary::Silu,
    Unary::Exp,
    Unary::Log,
    Unary::Sqrt,
    Unary::Scale(-2.5),
];

/// Inputs inside each function's domain.
fn inputs(op: Unary, rng: &mut Rng, n: usize) -> Vec<f32> {
    match op {
        Unary::Log | Unary::Sqrt => rng.vec(n, 0.05, 8.0),
        _ => rng.vec(n, -6.0, 6.0),
    }
}

gpu_test!(unary_matches_reference, |gpu| {
    let mut rng = Rng::new(1);
    for op in UNARY_OPS {
        for n in ODD_SIZES.into_iter().chain([70_001]) {
            let x = inputs(op, &mut rng, n);
            let mut want = vec![0.0; n];
            cpu::unary(op, &x, &mut want);
            let (xg, yg) = (upload(gpu, &x), poisoned(gpu, n));
            run(gpu, &[&elementwise::unary(gpu, op, &xg, &yg, n).unwrap()]);
            assert_close(&format!("{op:?} n={n}"), &read(gpu, &yg), &want);
        }
    }
});

gpu_test!(unary_backward_matches_reference, |gpu| {
    let mut rng = Rng::new(2);
    for op in UNARY_OPS {
        for n in ODD_SIZES {
            let x = inputs(op, &mut rng, n);
            let dy = rng.vec(n, -1.0, 1.0);
            let mut want = vec![0.0; n];
            cpu::unary_backward(op, &x, &dy, &mut want);
            let (xg, dyg, dxg) = (upload(gpu, &x), upload(gpu, &dy), poisoned(gpu, n));
            run(gpu, &[&elementwise::unary_backward(gpu, op, &xg, &dyg, &dxg, n).unwrap()]);
            assert_close(&format!("{op:?}' n={n}"), &read(gpu, &dxg), &want);
        }
    }
});

#[test]
fn unary_derivatives_match_finite_differences() {
    let mut rng = Rng::new(3);
    for op in UNARY_OPS {
        for x in inputs(op, &mut rng, 50) {
            let x = x as f64;
            if matches!(op, Unary::Relu | Unary::LeakyRelu(_)) && x.abs() < 1e-3 {
                continue; // the kink
            }
            let h = 1e-5;
            let fd = (cpu::activation::apply(op, x + h) - cpu::activation::apply(op, x - h)) / (2.0 * h);
            let d = cpu::activation::derivative(op, x);
            assert!((fd - d).abs() <= 1e-6 * (1.0 + d.abs()), "{op:?} at {x}: derivative {d}, finite difference {fd}");
        }
    }
}

#[test]
fn gelu_erf_matches_the_exact_normal_cdf() {
    // Known values of x * Phi(x).
    for (x, want) in [
        (-3.0, -0.004_049_694_094_890),
        (-1.0, -0.158_655_253_931_457),
        (0.5, 0.345_731_230_637_007),
        (2.0, 1.954_499_736_103_642),
    ] {
        let got = cpu::activation::apply(Unary::GeluErf, x);
        assert!((got - want).abs() < 1e-6 * want.abs().max(1e-3), "gelu({x}) = {got}, want {want}");
    }
}

gpu_test!(binary_broadcasts_like_the_reference, |gpu| {
    let mut rng = Rng::new(4);
    let cases: [(&[usize], &[usize]); 6] = [
        (&[257], &[257]),
        (&[33, 7], &[7]),
        (&[3, 1, 5], &[1, 7, 1]),
        (&[2, 3, 4, 5, 6], &[3, 1, 5, 1]),
        (&[127, 1], &[1, 33]),
        (&[1], &[2, 1, 3, 1, 2, 1, 3, 2]),
    ];
    for op in [Binary::Add, Binary::Sub, Binary::Mul, Binary::Div] {
        for (sa, sb) in cases {
            let shape = Broadcast::new(sa, sb).unwrap();
            let a = rng.vec(sa.iter().product(), -2.0, 2.0);
            let b: Vec<f32> = rng
                .vec(sb.iter().product(), 0.5, 2.0)
                .into_iter()
                .map(|v| if rng.below(2) == 0 { v } else { -v })
                .collect();
            let mut want = vec![0.0; shape.len()];
            cpu::binary(op, &shape, &a, &b, &mut want);
            let (ag, bg, og) = (upload(gpu, &a), upload(gpu, &b), poisoned(gpu, shape.len()));
            run(gpu, &[&elementwise::binary(gpu, op, &shape, &ag, &bg, &og).unwrap()]);
            assert_close(&format!("{op:?} {sa:?} {sb:?}"), &read(gpu, &og), &want);
        }
    }
});

gpu_test!(binary_rejects_short_tensors, |gpu| {
    let shape = Broadcast::new(&[4, 5], &[5]).unwrap();
    let (a, b) = (upload(gpu, &[0.0; 20]), upload(gpu, &[0.0; 4]));
    let err = elementwise::binary(gpu, Binary::Add, &shape, &a, &b, &poisoned(gpu, 20)).err().unwrap();
    assert!(err.to_string().contains("b holds 4 elements but the shape needs 5"), "{err}");
});
