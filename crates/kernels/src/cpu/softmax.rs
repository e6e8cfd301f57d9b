//! Reference softmax, log-softmax and cross-entropy (f64 inside).

use crate::softmax::CrossEntropy;

fn logsumexp(row: &[f32]) -> f64 {
    let m = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    m + row.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln()
}

/// Softmax (or log-softmax with `log`) of each row of x [rows, cols].
pub fn softmax(log: bool, rows: usize, cols: usize, x: &[f32], y: &mut [f32]) {
    for r in 0..rows {
        let row = &x[r * cols..][..cols];
        let lse = logsumexp(row);
        for c in 0..cols {
            let z = row[c] as f64 - lse;
            y[r * cols + c] = if log { z } else { z.exp() } as f32;
        }
    }
}

/// The gradient of [`softmax`] (or log-softmax) from its output y and the output's gradient dy.
pub fn softmax_backward(log: bool, rows: usize, cols: usize, y: &[f32], dy: &[f32], dx: &mut [f32]) {
    for r in 0..rows {
        let (y, dy) = (&y[r * cols..][..cols], &dy[r * cols..][..cols]);
        let s: f64 = if log {
            dy.iter().map(|&d| d as f64).sum()
        } else {
            y.iter().zip(dy).map(|(&y, &d)| y as f64 * d as f64).sum()
        };
        for c in 0..cols {
            let (yv, d) = (y[c] as f64, dy[c] as f64);
            dx[r * cols + c] = if log { d - yv.exp() * s } else { yv * (d - s) } as f32;
        }
    }
}

fn ignored(ce: &CrossEntropy, t: u32) -> bool {
    Some(t) == ce.ignore_index || t as usize >= ce.classes
}

/// Fills `row_stats` [rows, 2] with (loss, logsumexp) and `loss` [2] with (mean, counted rows).
pub fn cross_entropy(ce: &CrossEntropy, logits: &[f32], targets: &[u32], row_stats: &mut [f32], loss: &mut [f32]) {
    let (mut total, mut counted) = (0f64, 0usize);
    for r in 0..ce.rows {
        let row = &logits[r * ce.classes..][..ce.classes];
        let lse = logsumexp(row);
        let t = targets[r];
        let mut l = 0.0;
        if !ignored(ce, t) {
            let eps = ce.label_smoothing as f64;
            let sum: f64 = row.iter().map(|&v| v as f64).sum();
            l = lse - (1.0 - eps) * row[t as usize] as f64 - eps / ce.classes as f64 * sum;
            counted += 1;
        }
        total += l;
        row_stats[2 * r] = l as f32;
        row_stats[2 * r + 1] = lse as f32;
    }
    loss[0] = if counted == 0 { 0.0 } else { (total / counted as f64) as f32 };
    loss[1] = counted as f32;
}

/// d(mean loss)/d(logits) · dloss, from the forward's `row_stats` (each row's log-sum-exp) and
/// `loss` (its count of rows), as on the GPU.
pub fn cross_entropy_backward(
    ce: &CrossEntropy,
    logits: &[f32],
    targets: &[u32],
    row_stats: &[f32],
    loss: &[f32],
    dloss: f32,
    dlogits: &mut [f32],
) {
    let counted = loss[1] as f64;
    let eps = ce.label_smoothing as f64;
    for r in 0..ce.rows {
        let row = &logits[r * ce.classes..][..ce.classes];
        let lse = row_stats[2 * r + 1] as f64;
        let t = targets[r];
        for c in 0..ce.classes {
            let g = if ignored(ce, t) || counted == 0.0 {
                0.0
            } else {
                let target = if c == t as usize { 1.0 - eps } else { 0.0 } + eps / ce.classes as f64;
                ((row[c] as f64 - lse).exp() - target) * dloss as f64 / counted
            };
            dlogits[r * ce.classes + c] = g as f32;
        }
    }
}

/// `hits` [rows] = 1.0 where the row's target is among its `k` largest logits (a tie counts
/// against the target), else 0.0.
pub fn top_k_hits(rows: usize, classes: usize, k: usize, logits: &[f32], targets: &[u32], hits: &mut [f32]) {
    for r in 0..rows {
        let row = &logits[r * classes..][..classes];
        let t = targets[r] as usize;
        let hit = t < classes && row.iter().enumerate().filter(|&(c, &v)| c != t && v >= row[t]).count() < k;
        hits[r] = if hit { 1.0 } else { 0.0 };
    }
}

/// Each element's binary cross-entropy with logits, divided by the element count (stable
/// form max(x, 0) - x t + log(1 + exp(-|x|)), in f64).
pub fn bce_with_logits_terms(x: &[f32], t: &[f32], terms: &mut [f32]) {
    let n = x.len() as f64;
    for ((term, &x), &t) in terms.iter_mut().zip(x).zip(t) {
        let x = x as f64;
        *term = ((x.max(0.0) - x * t as f64 + (-x.abs()).exp().ln_1p()) / n) as f32;
    }
}
