use crate::common::*;
use kernels::attention::{attention, attention_backward};
use kernels::{Attention, cpu};

fn case(batch: usize, heads: usize, tq: usize, tk: usize, head_dim: usize, causal: bool) -> Attention {
    Attention { batch, heads, tq, tk, head_dim, scale: 1.0 / (head_dim as f32).sqrt(), causal }
}

/// Key-padding masks that hide a random tail of each batch's keys; batch 0 hides every key,
/// which must give zero outputs and gradients rather than NaN.
fn padding_mask(rng: &mut Rng, a: &Attention) -> Vec<u32> {
    (0..a.batch)
        .flat_map(|b| {
            let keep = if b == 0 { 0 } else { 1 + rng.below(a.tk) };
            (0..a.tk).map(move |j| (j < keep) as u32)
        })
        .collect()
}

gpu_test!(fused_attention_matches_the_unfused_reference, |gpu| {
    let mut rng = Rng::new(100);
    let cases = [
        (case(1, 1, 1, 1, 1, false), false),
        (case(2, 3, 33, 33, 16, false), false),
        (case(2, 3, 33, 33, 16, true), false),
        (case(3, 2, 7, 65, 64, false), true),
        (case(2, 2, 65, 65, 64, true), true),
        (case(1, 2, 257, 257, 33, true), false),
        (case(2, 1, 17, 40, 127, false), true),
    ];
    for (a, masked) in cases {
        let (q, k, v) = (rng.vec(a.q_len(), -1.0, 1.0), rng.vec(a.kv_len(), -1.0, 1.0), rng.vec(a.kv_len(), -1.0, 1.0));
        let d_o = rng.vec(a.q_len(), -1.0, 1.0);
        let mask = masked.then(|| padding_mask(&mut rng, &a));
        let (mut o, mut lse, mut probs) = (vec![0.0; a.q_len()], vec![0.0; a.rows()], vec![0.0; a.rows() * a.tk]);
        cpu::attention(&a, &q, &k, &v, mask.as_deref(), &mut o, &mut lse, Some(&mut probs));
        let (mut dq, mut dk, mut dv) = (vec![0.0; a.q_len()], vec![0.0; a.kv_len()], vec![0.0; a.kv_len()]);
        cpu::attention_backward(&a, &q, &k, &v, mask.as_deref(), &d_o, &mut dq, &mut dk, &mut dv);

        let (qg, kg, vg, dog) = (upload(gpu, &q), upload(gpu, &k), upload(gpu, &v), upload(gpu, &d_o));
        let maskg = mask.as_ref().map(|m| gpu.upload(m).unwrap());
        let (og, lseg, pg, delta) = (
            poisoned(gpu, a.q_len()),
            poisoned(gpu, a.rows()),
            poisoned(gpu, a.rows() * a.tk),
            poisoned(gpu, a.rows()),
        );
        let (dqg, dkg, dvg) = (poisoned(gpu, a.q_len()), poisoned(gpu, a.kv_len()), poisoned(gpu, a.kv_len()));
        let fwd = attention(gpu, &a, &qg, &kg, &vg, maskg.as_ref(), &og, &lseg, Some(&pg)).unwrap();
        let bwd =
            attention_backward(gpu, &a, &qg, &kg, &vg, maskg.as_ref(), &og, &dog, &lseg, &delta, &dqg, &dkg, &dvg)
                .unwrap();
        run(gpu, &[&fwd, &bwd[0], &bwd[1], &bwd[2]]);
        let what = format!("{a:?} masked={masked}");
        assert_close(&format!("O {what}"), &read(gpu, &og), &o);
        assert_close(&format!("lse {what}"), &read(gpu, &lseg), &lse);
        assert_close(&format!("probs {what}"), &read(gpu, &pg), &probs);
        assert_close(&format!("dQ {what}"), &read(gpu, &dqg), &dq);
        assert_close(&format!("dK {what}"), &read(gpu, &dkg), &dk);
        assert_close(&format!("dV {what}"), &read(gpu, &dvg), &dv);
        // Without the probabilities the forward gives the same O.
        let o2 = poisoned(gpu, a.q_len());
        run(gpu, &[&attention(gpu, &a, &qg, &kg, &vg, maskg.as_ref(), &o2, &lseg, None).unwrap()]);
        assert_close(&format!("O without probs {what}"), &read(gpu, &o2), &o);
    }
});

#[test]
fn reference_attention_backward_matches_finite_differences() {
    let mut rng = Rng::new(101);
    // 37 causal positions run as two blocks of query rows on the CPU, the second partial.
    for (t, causal) in [(5, false), (5, true), (37, true)] {
        let a = case(1, 2, t, t, 3, causal);
        let (q, k, v) = (rng.vec(a.q_len(), -1.0, 1.0), rng.vec(a.kv_len(), -1.0, 1.0), rng.vec(a.kv_len(), -1.0, 1.0));
        let r = rng.vec(a.q_len(), -1.0, 1.0);
        let loss = |q: &[f32], k: &[f32], v: &[f32]| {
            let (mut o, mut lse) = (vec![0.0; a.q_len()], vec![0.0; a.rows()]);
            cpu::attention(&a, q, k, v, None, &mut o, &mut lse, None);
            dot(&o, &r)
        };
        let (mut dq, mut dk, mut dv) = (vec![0.0; a.q_len()], vec![0.0; a.kv_len()], vec![0.0; a.kv_len()]);
        cpu::attention_backward(&a, &q, &k, &v, None, &r, &mut dq, &mut dk, &mut dv);
        check_gradient("attention dQ", &q, &dq, 1e-2, 1e-2, 30, |x| loss(x, &k, &v));
        check_gradient("attention dK", &k, &dk, 1e-2, 1e-2, 30, |x| loss(&q, x, &v));
        check_gradient("attention dV", &v, &dv, 1e-2, 1e-2, 30, |x| loss(&q, &k, x));
    }
}

gpu_test!(attention_forward_at_t1024_allocates_no_score_matrix, |_shared| {
    // A device of its own: the pool counter must not see the other tests' allocations.
    let own = kernels::Gpu::open().unwrap();
    let gpu = &own;
    let a = case(1, 1, 1024, 1024, 64, true);
    let mut rng = Rng::new(102);
    let (q, k, v) = (
        upload(gpu, &rng.vec(a.q_len(), -1.0, 1.0)),
        upload(gpu, &rng.vec(a.kv_len(), -1.0, 1.0)),
        upload(gpu, &rng.vec(a.kv_len(), -1.0, 1.0)),
    );
    let (o, lse) = (poisoned(gpu, a.q_len()), poisoned(gpu, a.rows()));
    let before = gpu.pool_stats().bytes_created;
    let d = attention(gpu, &a, &q, &k, &v, None, &o, &lse, None).unwrap();
    run(gpu, &[&d]);
    let allocated = gpu.pool_stats().bytes_created - before;
    assert!(allocated < 4096, "attention allocated {allocated} bytes; a 1024x1024 score matrix would be 4 MiB");
    let out = read(gpu, &o);
    let bad: Vec<usize> = (0..out.len()).filter(|&i| !out[i].is_finite()).collect();
    assert!(bad.is_empty(), "{} non-finite outputs, first at {:?}", bad.len(), &bad[..bad.len().min(5)]);
});

gpu_test!(long_attention_is_exact_or_refused_never_truncated, |gpu| {
    // Past the adapter's loop budget the kernel must refuse, not return truncated sums.
    let mut rng = Rng::new(103);
    for (t, head_dim) in [(2048, 64), (2048, 128)] {
        let a = case(1, 1, t, t, head_dim, false);
        let (q, k, v) = (rng.vec(a.q_len(), -1.0, 1.0), rng.vec(a.kv_len(), -1.0, 1.0), rng.vec(a.kv_len(), -1.0, 1.0));
        let (qg, kg, vg) = (upload(gpu, &q), upload(gpu, &k), upload(gpu, &v));
        let (og, lseg) = (poisoned(gpu, a.q_len()), poisoned(gpu, a.rows()));
        match attention(gpu, &a, &qg, &kg, &vg, None, &og, &lseg, None) {
            Ok(dispatch) => {
                run(gpu, &[&dispatch]);
                // Check a sample of rows against the reference on a slice of queries.
                let (mut o, mut lse) = (vec![0.0; a.q_len()], vec![0.0; a.rows()]);
                cpu::attention(&a, &q, &k, &v, None, &mut o, &mut lse, None);
                assert_close(&format!("T={t} D={head_dim}"), &read(gpu, &og), &o);
            }
            Err(e) => {
                assert!(gpu.loop_budget().is_some(), "only loop-capped adapters may refuse: {e}");
                assert!(e.to_string().contains("loop iterations"), "{e}");
            }
        }
    }
});
