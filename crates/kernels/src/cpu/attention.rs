//! Attention on the CPU: per (batch·head) slice, one parallel task each, the scores
//! S = scale · Q Kᵀ and the products with V, dO, Q and K as matrix products on the task's own
//! thread (the `gemm` crate; the slices fill the cores), the masked row softmax in between in
//! f32 on a vectorised eˣ. The T × T scores of a slice live in the task's scratch only, never
//! in a tensor.

use rayon::prelude::*;

use super::matmul::{Operand, dense_product};
use super::vector::{dot, exp, sum, wide};
use crate::attention::Attention;

/// out [m, n] = op(a) op(b) on this thread, op(a) [m, k] (stored transposed when `ta`), op(b)
/// [k, n] (stored transposed when `tb`).
fn product(a: &[f32], b: &[f32], (m, n, k): (usize, usize, usize), ta: bool, tb: bool, out: &mut [f32]) {
    let operand = |x, transposed| if transposed { Operand::Transposed(x) } else { Operand::Rows(x) };
    dense_product((m, n, k), operand(a, ta), operand(b, tb), out, false, false);
}

/// The probabilities P [tq, tk] of slice `bh` from its q [tq, d] and k [tk, d], each row's
/// log-sum-exp into `lse` (-inf for a row with no visible key, whose P row is zero).
fn probabilities(a: &Attention, q: &[f32], k: &[f32], mask: Option<&[u32]>, bh: usize, p: &mut [f32], lse: &mut [f32]) {
    product(q, k, (a.tq, a.tk, a.head_dim), false, true, p);
    let keys = mask.map(|m| &m[(bh / a.heads) * a.tk..][..a.tk]);
    for (i, (row, lse)) in p.chunks_mut(a.tk).zip(lse.iter_mut()).enumerate() {
        // Keys past a causal row's own position, and masked keys, are not seen: exp(-inf) is 0.
        let seen = if a.causal { (i + 1).min(a.tk) } else { a.tk };
        row[seen..].fill(f32::NEG_INFINITY);
        if let Some(keys) = keys {
            row.iter_mut().zip(keys).filter(|(_, m)| **m == 0).for_each(|(s, _)| *s = f32::NEG_INFINITY);
        }
        // The scale is positive: the largest scaled score is the scaled largest.
        let top = a.scale * row.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
        if top == f32::NEG_INFINITY {
            row.fill(0.0);
            *lse = f32::NEG_INFINITY;
            continue;
        }
        let total = wide(|| {
            row.iter_mut().for_each(|s| *s = exp(*s * a.scale - top));
            sum(row)
        });
        let inv = 1.0 / total;
        wide(|| row.iter_mut().for_each(|s| *s *= inv));
        *lse = top + total.ln();
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
        product(p, &v[bh * tk * d..][..tk * d], (tq, d, tk), false, false, o);
        lse.iter_mut().filter(|l| !l.is_finite()).for_each(|l| *l = -3.0e38);
    };
    let slices = o.par_chunks_mut(tq * d).zip(lse.par_chunks_mut(tq)).enumerate();
    match probs {
        Some(probs) => slices.zip(probs.par_chunks_mut(tq * tk)).for_each(|((bh, (o, lse)), p)| forward(bh, o, lse, p)),
        None => slices.for_each_init(|| vec![0f32; tq * tk], |p, (bh, (o, lse))| forward(bh, o, lse, p)),
    }
}

/// dQ, dK, dV of attention from dO, recomputing the probabilities: dP = dO Vᵀ,
/// dS = scale · P ∘ (dP - rowsum(P ∘ dP)), dQ = dS K, dK = dSᵀ Q, dV = Pᵀ dO.
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
        product(dos, vs, (tq, tk, d), false, true, ds);
        wide(|| {
            for (p_row, ds_row) in p.chunks(tk).zip(ds.chunks_mut(tk)) {
                let delta = dot(p_row, ds_row);
                ds_row.iter_mut().zip(p_row).for_each(|(ds, &p)| *ds = a.scale * p * (*ds - delta));
            }
        });
        product(ds, ks, (tq, d, tk), false, false, dq);
        product(ds, qs, (tk, d, tq), true, false, dk);
        product(p, dos, (tk, d, tq), true, false, dv);
    });
}
