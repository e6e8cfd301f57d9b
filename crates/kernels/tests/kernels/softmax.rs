use crate::common::*;
use kernels::softmax::{
    bce_with_logits_terms, cross_entropy, cross_entropy_backward, softmax, softmax_backward, top_k_hits,
};
use kernels::{CrossEntropy, cpu};

gpu_test!(softmax_and_log_softmax_match_reference, |gpu| {
    let mut rng = Rng::new(40);
    for log in [false, true] {
        for (rows, cols) in [(1, 1), (3, 7), (33, 257), (257, 3), (2, 1000)] {
            let x = rng.vec(rows * cols, -20.0, 20.0);
            let dy = rng.vec(rows * cols, -1.0, 1.0);
            let (mut y, mut dx) = (vec![0.0; rows * cols], vec![0.0; rows * cols]);
            cpu::softmax(log, rows, cols, &x, &mut y);
            cpu::softmax_backward(log, rows, cols, &y, &dy, &mut dx);
            let (xg, yg, dyg, dxg) =
                (upload(gpu, &x), poisoned(gpu, rows * cols), upload(gpu, &dy), poisoned(gpu, rows * cols));
            run(
                gpu,
                &[
                    &softmax(gpu, log, rows, cols, &xg, &yg).unwrap(),
                    &softmax_backward(gpu, log, rows, cols, &yg, &dyg, &dxg).unwrap(),
                ],
            );
            assert_close(&format!("softmax log={log} {rows}x{cols}"), &read(gpu, &yg), &y);
            // dy - sum(y dy) cancels when one probability nears 1 (logits span 40 here).
            assert_close_to_max(&format!("softmax' log={log} {rows}x{cols}"), &read(gpu, &dxg), &dx, 1e-5);
        }
    }
});

#[test]
fn softmax_backward_matches_finite_differences() {
    let mut rng = Rng::new(41);
    let (rows, cols) = (3, 7);
    for log in [false, true] {
        let x = rng.vec(rows * cols, -3.0, 3.0);
        let r = rng.vec(rows * cols, -1.0, 1.0);
        let f = |x: &[f32]| {
            let mut y = vec![0.0; rows * cols];
            cpu::softmax(log, rows, cols, x, &mut y);
            dot(&y, &r)
        };
        let (mut y, mut dx) = (vec![0.0; rows * cols], vec![0.0; rows * cols]);
        cpu::softmax(log, rows, cols, &x, &mut y);
        cpu::softmax_backward(log, rows, cols, &y, &r, &mut dx);
        check_gradient(&format!("softmax log={log}"), &x, &dx, 1e-2, 1e-3, 21, f);
    }
}

fn ce_cases() -> Vec<CrossEntropy> {
    vec![
        CrossEntropy { rows: 1, classes: 1, label_smoothing: 0.0, ignore_index: None },
        CrossEntropy { rows: 33, classes: 10, label_smoothing: 0.0, ignore_index: None },
        CrossEntropy { rows: 257, classes: 7, label_smoothing: 0.1, ignore_index: Some(3) },
        CrossEntropy { rows: 300, classes: 65, label_smoothing: 0.0, ignore_index: Some(0) },
        // Every target ignored: loss 0 and zero gradient, not NaN.
        CrossEntropy { rows: 5, classes: 4, label_smoothing: 0.0, ignore_index: Some(2) },
    ]
}

fn targets(rng: &mut Rng, ce: &CrossEntropy, all_ignored: bool) -> Vec<u32> {
    (0..ce.rows).map(|_| if all_ignored { ce.ignore_index.unwrap() } else { rng.below(ce.classes) as u32 }).collect()
}

gpu_test!(cross_entropy_matches_reference, |gpu| {
    let mut rng = Rng::new(42);
    for (i, ce) in ce_cases().into_iter().enumerate() {
        let logits = rng.vec(ce.rows * ce.classes, -8.0, 8.0);
        let t = targets(&mut rng, &ce, i == 4);
        let (mut rows, mut loss, mut dl) = (vec![0.0; 2 * ce.rows], vec![0.0; 2], vec![0.0; ce.rows * ce.classes]);
        cpu::cross_entropy(&ce, &logits, &t, &mut rows, &mut loss);
        cpu::cross_entropy_backward(&ce, &logits, &t, &rows, &loss, 0.5, &mut dl);
        let (lg, tg) = (upload(gpu, &logits), gpu.upload(&t).unwrap());
        let (rg, lossg, dlossg, dlg) =
            (poisoned(gpu, 2 * ce.rows), poisoned(gpu, 2), upload(gpu, &[0.5]), poisoned(gpu, ce.rows * ce.classes));
        let [a, b] = cross_entropy(gpu, &ce, &lg, &tg, &rg, &lossg).unwrap();
        let c = cross_entropy_backward(gpu, &ce, &lg, &tg, &rg, &lossg, &dlossg, &dlg).unwrap();
        run(gpu, &[&a, &b, &c]);
        assert_close(&format!("ce loss {ce:?}"), &read(gpu, &lossg), &loss);
        assert_close(&format!("ce dlogits {ce:?}"), &read(gpu, &dlg), &dl);
        if i == 4 {
            assert_eq!(loss, [0.0, 0.0]);
        }
    }
});

#[test]
fn cross_entropy_gradient_matches_finite_differences() {
    let mut rng = Rng::new(43);
    for ce in ce_cases().into_iter().take(4) {
        let logits = rng.vec(ce.rows * ce.classes, -3.0, 3.0);
        let t = targets(&mut rng, &ce, false);
        let f = |x: &[f32]| {
            let (mut rows, mut loss) = (vec![0.0; 2 * ce.rows], vec![0.0; 2]);
            cpu::cross_entropy(&ce, x, &t, &mut rows, &mut loss);
            // The mean of f32 row losses summed in f64: the f32 mean itself rounds too coarsely.
            rows.iter().step_by(2).map(|&l| l as f64).sum::<f64>() / loss[1] as f64
        };
        let (mut rows, mut loss, mut dl) = (vec![0.0; 2 * ce.rows], vec![0.0; 2], vec![0.0; ce.rows * ce.classes]);
        cpu::cross_entropy(&ce, &logits, &t, &mut rows, &mut loss);
        cpu::cross_entropy_backward(&ce, &logits, &t, &rows, &loss, 1.0, &mut dl);
        check_gradient(&format!("{ce:?}"), &logits, &dl, 1e-2, 2e-2, 30, f);
    }
}

#[test]
fn cross_entropy_equals_minus_log_softmax_at_the_target() {
    let ce = CrossEntropy { rows: 2, classes: 3, label_smoothing: 0.0, ignore_index: None };
    let logits = [1.0, 2.0, 3.0, 0.5, 0.5, -1.0];
    let (mut rows, mut loss) = (vec![0.0; 4], vec![0.0; 2]);
    cpu::cross_entropy(&ce, &logits, &[2, 0], &mut rows, &mut loss);
    let lse1 = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
    let lse2 = (2.0 * 0.5f64.exp() + (-1f64).exp()).ln();
    let want = ((lse1 - 3.0) + (lse2 - 0.5)) / 2.0;
    assert!((loss[0] as f64 - want).abs() < 1e-6, "{} vs {want}", loss[0]);
}

#[test]
fn top_k_hits_rank_the_target_and_count_ties_against_it() {
    let logits = [1.0, 3.0, 2.0, /* tie */ 5.0, 5.0, 0.0];
    let mut hits = [0.0; 2];
    cpu::top_k_hits(2, 3, 1, &logits, &[1, 0], &mut hits);
    assert_eq!(hits, [1.0, 0.0]);
    cpu::top_k_hits(2, 3, 2, &logits, &[2, 0], &mut hits);
    assert_eq!(hits, [1.0, 1.0]);
    cpu::top_k_hits(2, 3, 1, &logits, &[0, 2], &mut hits);
    assert_eq!(hits, [0.0, 0.0]);
}

gpu_test!(top_k_hits_match_reference, |gpu| {
    let mut rng = Rng::new(44);
    for (rows, classes, k) in [(1, 1, 1), (33, 10, 1), (257, 7, 3), (300, 65, 5)] {
        // Logits on a coarse grid so ties happen.
        let logits: Vec<f32> = rng.vec(rows * classes, -4.0, 4.0).iter().map(|v| v.round()).collect();
        let t: Vec<u32> = (0..rows).map(|_| rng.below(classes) as u32).collect();
        let mut hits = vec![0.0; rows];
        cpu::top_k_hits(rows, classes, k, &logits, &t, &mut hits);
        let (lg, tg, hg) = (upload(gpu, &logits), gpu.upload(&t).unwrap(), poisoned(gpu, rows));
        run(gpu, &[&top_k_hits(gpu, rows, classes, k, &lg, &tg, &hg).unwrap()]);
        assert_eq!(read(gpu, &hg), hits, "top-{k} of {rows}x{classes}");
    }
});

gpu_test!(bce_with_logits_matches_reference_and_stays_finite, |gpu| {
    let mut rng = Rng::new(45);
    for n in [1, 7, 257, 4099] {
        // Logits up to ±200: the naive log(sigmoid) form overflows there.
        let x = rng.vec(n, -200.0, 200.0);
        let t = rng.vec(n, 0.0, 1.0);
        let mut terms = vec![0.0; n];
        cpu::bce_with_logits_terms(&x, &t, &mut terms);
        assert!(terms.iter().all(|v| v.is_finite()));
        let (xg, tg, og) = (upload(gpu, &x), upload(gpu, &t), poisoned(gpu, n));
        run(gpu, &[&bce_with_logits_terms(gpu, n, &xg, &tg, &og).unwrap()]);
        assert_close(&format!("bce terms n={n}"), &read(gpu, &og), &terms);
    }
    // Against the definition -(t log σ(x) + (1 - t) log(1 - σ(x))) where that is stable.
    let (x, t) = ([0.3f32, -1.2, 2.5], [1.0f32, 0.25, 0.0]);
    let mut terms = [0.0; 3];
    cpu::bce_with_logits_terms(&x, &t, &mut terms);
    for i in 0..3 {
        let s = 1.0 / (1.0 + (-(x[i] as f64)).exp());
        let want = -(t[i] as f64 * s.ln() + (1.0 - t[i] as f64) * (1.0 - s).ln()) / 3.0;
        assert!((terms[i] as f64 - want).abs() < 1e-7, "{} vs {want}", terms[i]);
    }
});
