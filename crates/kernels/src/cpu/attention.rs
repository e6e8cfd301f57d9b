//! Reference attention: the unfused definition (each query row's scores, softmax, weighted
//! values), in f64, one (batch·head) slice per parallel task.

use rayon::prelude::*;

use crate::attention::Attention;

fn visible(a: &Attention, mask: Option<&[u32]>, bh: usize, i: usize, j: usize) -> bool {
    !(a.causal && j > i) && mask.is_none_or(|m| m[(bh / a.heads) * a.tk + j] != 0)
}

/// Row r of a [rows, d] slice.
fn row(t: &[f32], r: usize, d: usize) -> &[f32] {
    &t[r * d..][..d]
}

fn dot(x: &[f32], y: &[f32]) -> f64 {
    x.iter().zip(y).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// Row i's probabilities into `p` [tk] (all zero when no key is visible) and its log-sum-exp
/// (-inf then).
fn probabilities(a: &Attention, q: &[f32], k: &[f32], mask: Option<&[u32]>, bh: usize, i: usize, p: &mut [f64]) -> f64 {
    let d_n = a.head_dim;
    let qi = &q[(bh * a.tq + i) * d_n..][..d_n];
    for (j, p) in p.iter_mut().enumerate() {
        *p = if visible(a, mask, bh, i, j) {
            dot(qi, &k[(bh * a.tk + j) * d_n..][..d_n]) * a.scale as f64
        } else {
            f64::NEG_INFINITY
        };
    }
    let m = p.iter().fold(f64::NEG_INFINITY, |m, &s| m.max(s));
    if m == f64::NEG_INFINITY {
        p.fill(0.0);
        return m;
    }
    let sum: f64 = p
        .iter_mut()
        .map(|s| {
            *s = (*s - m).exp();
            *s
        })
        .sum();
    p.iter_mut().for_each(|s| *s /= sum);
    m + sum.ln()
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
    let d_n = a.head_dim;
    let mut probs = probs.map(|p| p.par_chunks_mut(a.tq * a.tk));
    let slices = o.par_chunks_mut(a.tq * d_n).zip(lse.par_chunks_mut(a.tq)).enumerate();
    let forward = |(bh, (o, lse)): (usize, (&mut [f32], &mut [f32])), mut probs: Option<&mut [f32]>| {
        let (mut p, mut acc) = (vec![0f64; a.tk], vec![0f64; d_n]);
        for i in 0..a.tq {
            let l = probabilities(a, q, k, mask, bh, i, &mut p);
            lse[i] = if l.is_finite() { l as f32 } else { -3.0e38 };
            acc.fill(0.0);
            for (j, &pj) in p.iter().enumerate() {
                acc.iter_mut().zip(&v[(bh * a.tk + j) * d_n..][..d_n]).for_each(|(acc, &vj)| *acc += pj * vj as f64);
            }
            o[i * d_n..][..d_n].iter_mut().zip(&acc).for_each(|(o, &s)| *o = s as f32);
            if let Some(probs) = probs.as_deref_mut() {
                probs[i * a.tk..][..a.tk].iter_mut().zip(&p).for_each(|(out, &pj)| *out = pj as f32);
            }
        }
    };
    match probs.take() {
        Some(chunks) => slices.zip(chunks).for_each(|(s, p)| forward(s, Some(p))),
        None => slices.for_each(|s| forward(s, None)),
    }
}

/// dQ, dK, dV of attention from dO (recomputing the probabilities).
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
    let d_n = a.head_dim;
    let scale = a.scale as f64;
    let slices = dq.par_chunks_mut(a.tq * d_n).zip(dk.par_chunks_mut(a.tk * d_n).zip(dv.par_chunks_mut(a.tk * d_n)));
    slices.enumerate().for_each(|(bh, (dq, (dk, dv)))| {
        let (qs, ks, vs, dos) =
            (&q[bh * a.tq * d_n..], &k[bh * a.tk * d_n..], &v[bh * a.tk * d_n..], &d_o[bh * a.tq * d_n..]);
        // dS = P * (dP - rowsum(P * dP)), dP = dO Vᵀ, row by row; dQ, dK and dV accumulate.
        let (mut p, mut acc_k, mut acc_v) = (vec![0f64; a.tk], vec![0f64; a.tk * d_n], vec![0f64; a.tk * d_n]);
        let (mut acc_q, mut dp) = (vec![0f64; d_n], vec![0f64; a.tk]);
        for i in 0..a.tq {
            probabilities(a, q, k, mask, bh, i, &mut p);
            let doi = row(dos, i, d_n);
            dp.iter_mut().enumerate().for_each(|(j, dp)| *dp = dot(doi, row(vs, j, d_n)));
            let delta: f64 = p.iter().zip(&dp).map(|(p, dp)| p * dp).sum();
            acc_q.fill(0.0);
            for j in 0..a.tk {
                let ds = p[j] * (dp[j] - delta);
                let (kj, qi) = (row(ks, j, d_n), row(qs, i, d_n));
                for d in 0..d_n {
                    acc_q[d] += ds * kj[d] as f64;
                    acc_k[j * d_n + d] += ds * qi[d] as f64;
                    acc_v[j * d_n + d] += p[j] * doi[d] as f64;
                }
            }
            dq[i * d_n..][..d_n].iter_mut().zip(&acc_q).for_each(|(out, &s)| *out = (s * scale) as f32);
        }
        dk.iter_mut().zip(&acc_k).for_each(|(out, &s)| *out = (s * scale) as f32);
        dv.iter_mut().zip(&acc_v).for_each(|(out, &s)| *out = s as f32);
    });
}
