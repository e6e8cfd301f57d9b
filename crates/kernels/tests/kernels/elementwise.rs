use crate::common::*;
use kernels::{Binary, Broadcast, Unary, cpu, elementwise};

/// Every row of the unary table, those with a parameter also at a non-default one, with the
/// domain its inputs come from.
fn unary_ops() -> Vec<(Unary, (f64, f64))> {
    let mut ops = Vec::new();
    for row in Unary::ALL {
        ops.push((row.op, row.domain));
        if row.parameter.is_some() {
            ops.push((row.op.with_parameter(-0.35), row.domain));
        }
    }
    ops
}

fn inputs(rng: &mut Rng, (lo, hi): (f64, f64), n: usize) -> Vec<f32> {
    rng.vec(n, lo as f32, hi as f32)
}

gpu_test!(unary_matches_reference, |gpu| {
    let mut rng = Rng::new(1);
    for (op, domain) in unary_ops() {
        for n in ODD_SIZES.into_iter().chain([70_001]) {
            let x = inputs(&mut rng, domain, n);
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
    for (op, domain) in unary_ops() {
        for n in ODD_SIZES {
            let x = inputs(&mut rng, domain, n);
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
    for (op, domain) in unary_ops() {
        for x in inputs(&mut rng, domain, 50) {
            let x = x as f64;
            if x.abs() < 1e-3 {
                continue; // ReLU's kink
            }
            let h = 1e-5;
            let fd = (op.apply(x + h) - op.apply(x - h)) / (2.0 * h);
            let d = op.derivative(x);
            // GELU's derivative is the exact Φ + xφ, its forward a rational approximation of
            // erf whose slope departs from it by up to 6.7e-6 (at the clamp, |x| = 4√2).
            let tolerance = if op == Unary::GeluErf { 7e-6 } else { 1e-6 };
            assert!(
                (fd - d).abs() <= tolerance * (1.0 + d.abs()),
                "{op:?} at {x}: derivative {d}, finite difference {fd}"
            );
        }
    }
}

/// The CPU kernels evaluate each formula in f32 (`cpu::vector`'s exp and tanh): every row
/// within a few f32 rounding errors of the f64 formula: f relative to |f| + 1e-3 |x| (GELU's
/// x Φ(x) is tiny where Φ is), f' relative to max(|f'|, 1) (its terms cancel where GELU's
/// slope crosses 0). The exact GELU's Φ = (1 + erf)/2 cancels in f32 where erf nears -1, so
/// its f is held to an absolute error in Φ: relative to |f| + |x|.
#[test]
fn f32_kernels_match_the_f64_formulas() {
    let mut rng = Rng::new(5);
    for (op, domain) in unary_ops() {
        let mut x = inputs(&mut rng, domain, 20_001);
        x.extend([domain.0 as f32, domain.1 as f32, 1e-6, -1e-6, 3e-4, -3e-4]);
        x.retain(|&v| v >= domain.0 as f32 && v <= domain.1 as f32);
        let dy = vec![1.0; x.len()];
        let (mut y, mut d) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        cpu::unary(op, &x, &mut y);
        cpu::unary_backward(op, &x, &dy, &mut d);
        let (mut worst_y, mut worst_d) = (0f64, 0f64);
        for ((&x, &y), &d) in x.iter().zip(&y).zip(&d) {
            let (want_y, want_d) = (op.apply(x as f64), op.derivative(x as f64));
            let tail = if op == Unary::GeluErf { 1.0 } else { 1e-3 };
            worst_y = worst_y.max((y as f64 - want_y).abs() / (want_y.abs() + tail * (x as f64).abs()).max(1e-30));
            worst_d = worst_d.max((d as f64 - want_d).abs() / want_d.abs().max(1.0));
        }
        assert!(worst_y <= 1e-6 && worst_d <= 1e-6, "{op:?}: f within {worst_y:e}, f' within {worst_d:e}");
    }
}

/// Every row against PyTorch (f64, autograd for the derivative) on the grid of
/// `fixtures/unary.json`, written by `scripts/torch_activations.py`.
#[test]
fn unary_functions_match_pytorch() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/unary.json")).unwrap();
    let fixture: serde_json::Value = serde_json::from_str(&text).unwrap();
    let functions = fixture["functions"].as_object().unwrap();
    let numbers =
        |v: &serde_json::Value| -> Vec<f64> { v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect() };
    for row in Unary::ALL {
        let golden = functions.get(row.name).unwrap_or_else(|| {
            panic!("{:?} has no golden values: add it to scripts/torch_activations.py and run it", row.name)
        });
        let op = golden["parameter"].as_f64().map_or(row.op, |p| row.op.with_parameter(p as f32));
        let (xs, ys, ds) = (numbers(&golden["x"]), numbers(&golden["y"]), numbers(&golden["dydx"]));
        assert!(xs.len() > 30, "{}: {} points", row.name, xs.len());
        for ((x, y), d) in xs.into_iter().zip(ys).zip(ds) {
            assert!(x >= row.domain.0 && x <= row.domain.1, "{}: fixture x = {x} outside the row's domain", row.name);
            // GELU's erf approximation is within 6.5e-8 of erf; the rest are exact.
            let close = |got: f64, want: f64| (got - want).abs() <= 3e-7 * (1.0 + want.abs());
            assert!(close(op.apply(x), y), "{} at {x}: {} vs torch {y}", row.name, op.apply(x));
            assert!(close(op.derivative(x), d), "{}' at {x}: {} vs torch {d}", row.name, op.derivative(x));
        }
    }
    let names: Vec<&str> = Unary::ALL.iter().map(|r| r.name).collect();
    for name in functions.keys() {
        assert!(names.contains(&name.as_str()), "fixture entry {name:?} is no row of the unary table");
    }
}

/// The rational erf within the 6.5e-8 its comment claims, at known values, and GELU's Φ
/// within half that.
#[test]
fn gelu_erf_matches_the_exact_normal_cdf() {
    for (x, want) in [
        (0.1, 0.112_462_916_018_284_9),
        (0.5, 0.520_499_877_813_046_5),
        (1.0, 0.842_700_792_949_714_9),
        (-1.5, -0.966_105_146_475_310_7),
        (2.0, 0.995_322_265_018_952_7),
        (3.0, 0.999_977_909_503_001_4),
        (5.0, 0.999_999_999_998_462_5),
    ] {
        let got: f64 = kernels::cpu::activation::erf(x);
        assert!((got - want).abs() <= 6.5e-8, "erf({x}) = {got}, want {want}");
    }
    // Known values of x Φ(x).
    for (x, want) in [
        (-3.0, -0.004_049_694_094_890),
        (-1.0, -0.158_655_253_931_457),
        (0.5, 0.345_731_230_637_007),
        (2.0, 1.954_499_736_103_642),
    ] {
        let got = Unary::GeluErf.apply(x);
        assert!((got - want).abs() <= 3.3e-8 * x.abs(), "gelu({x}) = {got}, want {want}");
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
