//! Attention on the CPU: per (batch·head) slice, one parallel task each, the scores
//! S = scale · Q Kᵀ and the products with V, dO, Q and K as matrix products (the `gemm`
//! crate, through [`matmul`]), the masked row softmax in between in f32. The T × T scores of a
//! slice live in the task's scratch only, never in a tensor.

use rayon::prelude::*;

use super::matmul::matmul;
use crate::attention::Attention;
use crate::matmul::Matmul;

/// out [m, n] = alpha · op(a) op(b), op(a) [m, k] (stored transposed when `ta`), op(b) [k, n]
/// (stored transposed when `tb`).
#[allow(clippy::too_many_arguments)]
fn product(a: &[f32], b: &[f32], (m, n, k): (usize, usize, usize), ta: bool, tb: bool, alpha: f32, out: &mut [f32]) {
    let mut mm = Matmul::new(m, n, k);
    if ta {
        mm = mm.transpose_a();
    }
    if tb {
        mm = mm.transpose_b();
    }
    mm.alpha = alpha;
    matmul(&mm, a, b, None, out);
}

/// The probabilities P [tq, tk] of slice `bh` from its q [tq, d] and k [tk, d], each row's
/// log-sum-exp into `lse` (-inf for a row with no visible key, whose P row is zero).
fn probabilities(a: &Attention, q: &[f32], k: &[f32], mask: Option<&[u32]>, bh: usize, p: &mut [f32], lse: &mut [f32]) {
    product(q, k, (a.tq, a.tk, a.head_dim), false, true, a.scale, p);
    let keys = mask.map(|m| &m[(bh / a.heads) * a.tk..][..a.tk]);
    for (i, (row, lse)) in p.chunks_mut(a.tk).zip(lse.iter_mut()).enumerate() {
        let visible = |j: usize| !(a.causal && j > i) && keys.is_none_or(|m| m[j] != 0);
        let mut top = f32::NEG_INFINITY;
        for (j, s) in row.iter_mut().enumerate() {
            if visible(j) {
                top = top.max(*s);
            } else {
                *s = f32::NEG_INFINITY;
            }
        }
        if top == f32::NEG_INFINITY {
            row.fill(0.0);
            *lse = f32::NEG_INFINITY;
            continue;
        }
        let mut sum = 0f64;
        for s in row.iter_mut() {
            *s = (*s - top).exp();
            sum += *s as f64;
        }
        let inv = (1.0 / sum) as f32;
        row.iter_mut().for_each(|s| *s *= inv);
        *lse = top + sum.ln() as f32;
    }
}

/// O, the log-sum-exp per row (a large negative number for rows with no visible key, as on
/// the GPU) and, when asked, the probabilities [bh, tq, tk].
#[allow(clippy::too_many_arguments)]
pub fn attention(
    a: &Attention,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: Option<&[u32]>,
    o: &mut [f32],
    lse: &mut [f32],
    probs: Option<&mut [f32]>,
) {
    let (d, tq, tk) = (a.head_dim, a.tq, a.tk);
    let forward = |bh: usize, o: &mut [f32], lse: &mut [f32], p: &mut [f32]| {
        probabilities(a, &q[bh * tq * d..][..tq * d], &k[bh * tk * d..][..tk * d], mask, bh, p, lse);
        product(p, &v[bh * tk * d..][..tk * d], (tq, d, tk), false, false, 1.0, o);
        lse.iter_mut().filter(|l| !l.is_finite()).for_each(|l| *l = -3.0e38);
    };
    let slices = o.par_chunks_mut(tq * d).zip(lse.par_chunks_mut(tq)).enumerate();
    match probs {
        Some(probs) => slices.zip(probs.par_chunks_mut(tq * tk)).for_each(|((bh, (o, lse)), p)| forward(bh, o, lse, p)),
        None => slices.for_each_init(|| vec![0f32; tq * tk], |p, (bh, (o, lse))| forward(bh, o, lse, p)),
    }
}

/// dQ, dK, dV of attention from dO, recomputing the probabilities: dP = dO Vᵀ,
/// dS = P ∘ (dP - rowsum(P ∘ dP)), dQ = scale · dS K, dK = scale · dSᵀ Q, dV = Pᵀ dO.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    a: &Attention,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: Option<&[u32]>,
    d_o: &[f32],
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
) {
    let (d, tq, tk) = (a.head_dim, a.tq, a.tk);
    let slices = dq.par_chunks_mut(tq * d).zip(dk.par_chunks_mut(tk * d).zip(dv.par_chunks_mut(tk * d)));
    let scratch = || (vec![0f32; tq * tk], vec![0f32; tq * tk], vec![0f32; tq]);
    slices.enumerate().for_each_init(scratch, |(p, ds, lse), (bh, (dq, (dk, dv)))| {
        let (qs, ks, vs, dos) = (
            &q[bh * tq * d..][..tq * d],
            &k[bh * tk * d..][..tk * d],
            &v[bh * tk * d..][..tk * d],
            &d_o[bh * tq * d..][..tq * d],
        );
        probabilities(a, qs, ks, mask, bh, p, lse);
        product(dos, vs, (tq, tk, d), false, true, 1.0, ds);
        for (p_row, ds_row) in p.chunks(tk).zip(ds.chunks_mut(tk)) {
            let delta: f64 = p_row.iter().zip(ds_row.iter()).map(|(&p, &dp)| p as f64 * dp as f64).sum();
            ds_row.iter_mut().zip(p_row).for_each(|(ds, &p)| *ds = p * (*ds - delta as f32));
        }
        product(ds, ks, (tq, d, tk), false, false, a.scale, dq);
        product(ds, qs, (tk, d, tq), true, false, a.scale, dk);
        product(p, dos, (tk, d, tq), true, false, 1.0, dv);
    });
}
