//! Attention on the CPU: per (batch·head) slice, one parallel task each, the scores
//! S = scale · Q Kᵀ and the products with V, dO, Q and K as matrix products on the task's own
//! thread (the `gemm` crate; the slices fill the cores), the masked row softmax in between in
//! f32 on a vectorised eˣ. A slice's scores live in the task's scratch only, never in a
//! tensor. Causal attention runs the query rows in blocks, each with only the keys its rows
//! see: for 128 positions in blocks of 32, 5/8 of the products the full square would take.

use std::ops::Range;

use rayon::prelude::*;

use super::matmul::{Operand, dense_product};
use super::vector::{dot, exp, sum, wide};
use crate::attention::Attention;

/// Query rows per block of causal attention.
const CAUSAL_ROWS: usize = 32;

/// out [m, n] (+)= op(a) op(b) on this thread, op(a) [m, k] (stored transposed when `ta`),
/// op(b) [k, n] (stored transposed when `tb`).
fn product(a: &[f32], b: &[f32], (m, n, k): (usize, usize, usize), (ta, tb): (bool, bool), out: &mut [f32], add: bool) {
    let operand = |x, transposed| if transposed { Operand::Transposed(x) } else { Operand::Rows(x) };
    dense_product((m, n, k), operand(a, ta), operand(b, tb), out, add, false);
}

/// The blocks of query rows of a slice, each with the keys its rows can see (a prefix).
fn blocks(a: &Attention) -> impl Iterator<Item = (Range<usize>, usize)> {
    let rows = if a.causal { CAUSAL_ROWS } else { a.tq.max(1) };
    (0..a.tq).step_by(rows).map(move |r0| {
        let r1 = (r0 + rows).min(a.tq);
        (r0..r1, if a.causal { r1.min(a.tk) } else { a.tk })
    })
}

/// The probabilities P [rows, keys] of query rows `rows` of slice `bh` over its first `keys`
/// keys, from the slice's q [tq, d] and k [tk, d]; each row's log-sum-exp into `lse` (-inf
/// for a row with no visible key, whose P row is zero).
#[allow(clippy::too_many_arguments)]
fn probabilities(
    a: &Attention,
    (q, k): (&[f32], &[f32]),
    mask: Option<&[u32]>,
    bh: usize,
    (rows, keys): (Range<usize>, usize),
    p: &mut [f32],
    lse: &mut [f32],
) {
    let d = a.head_dim;
    product(&q[rows.start * d..rows.end * d], &k[..keys * d], (rows.len(), keys, d), (false, true), p, false);
    let mask = mask.map(|m| &m[(bh / a.heads) * a.tk..][..keys]);
    for ((i, row), lse) in rows.zip(p.chunks_mut(keys)).zip(lse.iter_mut()) {
        // Keys past a causal row's own position have probability 0 and take no eˣ; masked keys
        // are not seen either: exp(-inf) is 0.
        let seen = if a.causal { (i + 1).min(keys) } else { keys };
        let (row, unseen) = row.split_at_mut(seen);
        unseen.fill(0.0);
        if let Some(mask) = mask {
            row.iter_mut().zip(mask).filter(|(_, m)| **m == 0).for_each(|(s, _)| *s = f32::NEG_INFINITY);
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
    let forward = |bh: usize, o: &mut [f32], lse: &mut [f32], mut probs: Option<&mut [f32]>, p: &mut Vec<f32>| {
        let (qs, ks, vs) = (&q[bh * tq * d..][..tq * d], &k[bh * tk * d..][..tk * d], &v[bh * tk * d..][..tk * d]);
        for (rows, keys) in blocks(a) {
            p.resize(rows.len() * keys, 0.0);
            probabilities(a, (qs, ks), mask, bh, (rows.clone(), keys), p, &mut lse[rows.clone()]);
            product(
                p,
                &vs[..keys * d],
                (rows.len(), d, keys),
                (false, false),
                &mut o[rows.start * d..rows.end * d],
                false,
            );
            if let Some(probs) = probs.as_deref_mut() {
                for (full, row) in probs[rows.start * tk..rows.end * tk].chunks_mut(tk).zip(p.chunks(keys)) {
                    full[..keys].copy_from_slice(row);
                    full[keys..].fill(0.0);
                }
            }
        }
        lse.iter_mut().filter(|l| !l.is_finite()).for_each(|l| *l = -3.0e38);
    };
    let slices = o.par_chunks_mut(tq * d).zip(lse.par_chunks_mut(tq)).enumerate();
    match probs {
        Some(probs) => slices
            .zip(probs.par_chunks_mut(tq * tk))
            .for_each_init(Vec::new, |p, ((bh, (o, lse)), probs)| forward(bh, o, lse, Some(probs), p)),
        None => slices.for_each_init(Vec::new, |p, (bh, (o, lse))| forward(bh, o, lse, None, p)),
    }
}

/// dQ, dK, dV of attention from dO, recomputing the probabilities block by block: dP = dO Vᵀ,
/// dS = scale · P ∘ (dP - rowsum(P ∘ dP)), dQ = dS K, and dK += dSᵀ Q, dV += Pᵀ dO over the
/// blocks of query rows.
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
    let scratch = || (Vec::new(), Vec::new(), vec![0f32; tq]);
    slices.enumerate().for_each_init(scratch, |(p, ds, lse), (bh, (dq, (dk, dv)))| {
        let (qs, ks, vs, dos) = (
            &q[bh * tq * d..][..tq * d],
            &k[bh * tk * d..][..tk * d],
            &v[bh * tk * d..][..tk * d],
            &d_o[bh * tq * d..][..tq * d],
        );
        dk.fill(0.0);
        dv.fill(0.0);
        for (rows, keys) in blocks(a) {
            let n = rows.len();
            let (q_rows, do_rows) = (&qs[rows.start * d..rows.end * d], &dos[rows.start * d..rows.end * d]);
            p.resize(n * keys, 0.0);
            ds.resize(n * keys, 0.0);
            probabilities(a, (qs, ks), mask, bh, (rows.clone(), keys), p, &mut lse[rows.clone()]);
            product(do_rows, &vs[..keys * d], (n, keys, d), (false, true), ds, false);
            wide(|| {
                for (p_row, ds_row) in p.chunks(keys).zip(ds.chunks_mut(keys)) {
                    let delta = dot(p_row, ds_row);
                    ds_row.iter_mut().zip(p_row).for_each(|(ds, &p)| *ds = a.scale * p * (*ds - delta));
                }
            });
            product(ds, &ks[..keys * d], (n, d, keys), (false, false), &mut dq[rows.start * d..rows.end * d], false);
            product(ds, q_rows, (keys, d, n), (true, false), &mut dk[..keys * d], true);
            product(p, do_rows, (keys, d, n), (true, false), &mut dv[..keys * d], true);
        }
    });
}
