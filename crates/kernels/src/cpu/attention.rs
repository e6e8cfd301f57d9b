//! Reference attention: the unfused definition, with the full score matrix, in f64.

use crate::attention::Attention;

fn visible(a: &Attention, mask: Option<&[u32]>, bh: usize, i: usize, j: usize) -> bool {
    !(a.causal && j > i) && mask.is_none_or(|m| m[(bh / a.heads) * a.tk + j] != 0)
}

/// Probabilities [tq, tk] of one (batch*head) slice; rows with no visible key are all zero.
fn probabilities(a: &Attention, q: &[f32], k: &[f32], mask: Option<&[u32]>, bh: usize) -> (Vec<f64>, Vec<f64>) {
    let d_n = a.head_dim;
    let mut p = vec![0f64; a.tq * a.tk];
    let mut lse = vec![f64::NEG_INFINITY; a.tq];
    for i in 0..a.tq {
        let qi = &q[(bh * a.tq + i) * d_n..][..d_n];
        let scores: Vec<Option<f64>> = (0..a.tk)
            .map(|j| {
                visible(a, mask, bh, i, j).then(|| {
                    let kj = &k[(bh * a.tk + j) * d_n..][..d_n];
                    qi.iter().zip(kj).map(|(&x, &y)| x as f64 * y as f64).sum::<f64>() * a.scale as f64
                })
            })
            .collect();
        let m = scores.iter().flatten().fold(f64::NEG_INFINITY, |m, &s| m.max(s));
        if m == f64::NEG_INFINITY {
            continue;
        }
        let sum: f64 = scores.iter().flatten().map(|s| (s - m).exp()).sum();
        lse[i] = m + sum.ln();
        for (j, s) in scores.iter().enumerate() {
            if let Some(s) = s {
                p[i * a.tk + j] = (s - lse[i]).exp();
            }
        }
    }
    (p, lse)
}

/// O, the log-sum-exp per row (a large negative number for rows with no visible key, as on
/// the GPU) and the probabilities [bh, tq, tk].
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
    let mut all_probs = vec![0f32; a.rows() * a.tk];
    for bh in 0..a.bh() {
        let (p, l) = probabilities(a, q, k, mask, bh);
        for i in 0..a.tq {
            lse[bh * a.tq + i] = if l[i].is_finite() { l[i] as f32 } else { -3.0e38 };
            for d in 0..d_n {
                o[(bh * a.tq + i) * d_n + d] =
                    (0..a.tk).map(|j| p[i * a.tk + j] * v[(bh * a.tk + j) * d_n + d] as f64).sum::<f64>() as f32;
            }
            for j in 0..a.tk {
                all_probs[(bh * a.tq + i) * a.tk + j] = p[i * a.tk + j] as f32;
            }
        }
    }
    if let Some(out) = probs {
        out[..all_probs.len()].copy_from_slice(&all_probs);
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
    for bh in 0..a.bh() {
        let (p, _) = probabilities(a, q, k, mask, bh);
        let row = |t: &[f32], r: usize| -> Vec<f64> { t[r * d_n..][..d_n].iter().map(|&x| x as f64).collect() };
        let dot = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(a, b)| a * b).sum::<f64>();
        // dP = dO Vᵀ; dS = P * (dP - rowsum(P * dP)).
        let mut ds = vec![0f64; a.tq * a.tk];
        for i in 0..a.tq {
            let doi = row(d_o, bh * a.tq + i);
            let dp: Vec<f64> = (0..a.tk).map(|j| dot(&doi, &row(v, bh * a.tk + j))).collect();
            let delta: f64 = (0..a.tk).map(|j| p[i * a.tk + j] * dp[j]).sum();
            for j in 0..a.tk {
                ds[i * a.tk + j] = p[i * a.tk + j] * (dp[j] - delta);
            }
        }
        for d in 0..d_n {
            for i in 0..a.tq {
                let s: f64 = (0..a.tk).map(|j| ds[i * a.tk + j] * k[(bh * a.tk + j) * d_n + d] as f64).sum();
                dq[(bh * a.tq + i) * d_n + d] = (s * scale) as f32;
            }
            for j in 0..a.tk {
                let sk: f64 = (0..a.tq).map(|i| ds[i * a.tk + j] * q[(bh * a.tq + i) * d_n + d] as f64).sum();
                let sv: f64 = (0..a.tq).map(|i| p[i * a.tk + j] * d_o[(bh * a.tq + i) * d_n + d] as f64).sum();
                dk[(bh * a.tk + j) * d_n + d] = (sk * scale) as f32;
                dv[(bh * a.tk + j) * d_n + d] = sv as f32;
            }
        }
    }
}
