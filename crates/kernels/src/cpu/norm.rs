//! Reference batch norm (f64 statistics) and layer norm (f64 statistics, f32 elementwise,
//! rows in parallel).

use rayon::prelude::*;

use super::vector::wide;
use crate::norm::{BatchNorm, LayerNorm};

fn channel(bn: &BatchNorm, c: usize) -> impl Iterator<Item = usize> + '_ {
    (0..bn.batch).flat_map(move |n| (0..bn.spatial).map(move |s| (n * bn.channels + c) * bn.spatial + s))
}

/// As the GPU: running statistics updated in training, `saved` = [mean; invstd].
#[allow(clippy::too_many_arguments)]
pub fn batch_norm(
    bn: &BatchNorm,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    running_mean: &mut [f32],
    running_var: &mut [f32],
    saved: &mut [f32],
    y: &mut [f32],
) {
    let c_n = bn.channels;
    let m = bn.batch * bn.spatial;
    for c in 0..c_n {
        let (mean, invstd) = if bn.train {
            let mean = channel(bn, c).map(|i| x[i] as f64).sum::<f64>() / m as f64;
            let sq: f64 = channel(bn, c).map(|i| (x[i] as f64 - mean).powi(2)).sum();
            let m1 = (m.max(2) - 1) as f64;
            let momentum = bn.momentum as f64;
            running_mean[c] = ((1.0 - momentum) * running_mean[c] as f64 + momentum * mean) as f32;
            running_var[c] = ((1.0 - momentum) * running_var[c] as f64 + momentum * sq / m1) as f32;
            (mean, 1.0 / (sq / m as f64 + bn.eps as f64).sqrt())
        } else {
            (running_mean[c] as f64, 1.0 / (running_var[c] as f64 + bn.eps as f64).sqrt())
        };
        saved[c] = mean as f32;
        saved[c_n + c] = invstd as f32;
        for i in channel(bn, c) {
            y[i] = ((x[i] as f64 - mean) * invstd * gamma[c] as f64 + beta[c] as f64) as f32;
        }
    }
}

/// Batch norm's gradient: dx, dgamma, dbeta from x, dy and the mean and 1/std the forward saved.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward(
    bn: &BatchNorm,
    x: &[f32],
    dy: &[f32],
    saved: &[f32],
    gamma: &[f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
    dx: &mut [f32],
) {
    let m = (bn.batch * bn.spatial) as f64;
    for c in 0..bn.channels {
        let (mean, invstd) = (saved[c] as f64, saved[bn.channels + c] as f64);
        let xhat = |i: usize| (x[i] as f64 - mean) * invstd;
        let db: f64 = channel(bn, c).map(|i| dy[i] as f64).sum();
        let dg: f64 = channel(bn, c).map(|i| dy[i] as f64 * xhat(i)).sum();
        dgamma[c] = dg as f32;
        dbeta[c] = db as f32;
        for i in channel(bn, c) {
            let g = if bn.train { dy[i] as f64 - db / m - xhat(i) * dg / m } else { dy[i] as f64 };
            dx[i] = (gamma[c] as f64 * invstd * g) as f32;
        }
    }
}

/// Rows of layer norm one parallel task takes.
const ROWS_PER_TASK: usize = 32;

/// The mean and 1 / sqrt(variance + eps) of `row`, its sums in f64 over eight lanes.
#[inline(always)]
fn row_statistics(row: &[f32], eps: f32) -> (f32, f32) {
    let lanes = |f: &dyn Fn(f32) -> f64| {
        let mut lanes = [0f64; 8];
        row.chunks(8).for_each(|c| lanes.iter_mut().zip(c).for_each(|(l, &v)| *l += f(v)));
        lanes.iter().sum::<f64>()
    };
    let n = row.len() as f64;
    let mean = lanes(&|v| v as f64) / n;
    let var = lanes(&|v| (v as f64 - mean) * (v as f64 - mean)) / n;
    (mean as f32, (1.0 / (var + eps as f64).sqrt()) as f32)
}

/// y = (x - mean) / sqrt(var + eps) · gamma + beta per row; `saved` = [mean; invstd] per row.
/// Rows run in parallel, each vectorised.
pub fn layer_norm(ln: &LayerNorm, x: &[f32], gamma: &[f32], beta: &[f32], y: &mut [f32], saved: &mut [f32]) {
    let d_n = ln.features;
    if d_n == 0 || ln.rows == 0 {
        return;
    }
    let (means, invstds) = saved[..2 * ln.rows].split_at_mut(ln.rows);
    let tasks = y[..ln.rows * d_n].par_chunks_mut(ROWS_PER_TASK * d_n).zip(means.par_chunks_mut(ROWS_PER_TASK));
    tasks.zip(invstds.par_chunks_mut(ROWS_PER_TASK)).enumerate().for_each(|(t, ((y, means), invstds))| {
        wide(|| {
            let rows = y.chunks_mut(d_n).zip(means.iter_mut().zip(invstds));
            for (r, (y, (mean, invstd))) in rows.enumerate() {
                let row = &x[(t * ROWS_PER_TASK + r) * d_n..][..d_n];
                (*mean, *invstd) = row_statistics(row, ln.eps);
                let (m, s) = (*mean, *invstd);
                for (((y, &v), &g), &b) in y.iter_mut().zip(row).zip(gamma).zip(beta) {
                    *y = (v - m) * s * g + b;
                }
            }
        })
    });
}

/// dx, dgamma and dbeta of layer norm. Rows run in parallel in tasks, each task summing its
/// rows' dgamma and dbeta terms, the tasks' sums added in f64 at the end.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_backward(
    ln: &LayerNorm,
    x: &[f32],
    dy: &[f32],
    saved: &[f32],
    gamma: &[f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
    dx: &mut [f32],
) {
    let d_n = ln.features;
    dgamma[..d_n].fill(0.0);
    dbeta[..d_n].fill(0.0);
    if d_n == 0 || ln.rows == 0 {
        return;
    }
    let task = |t: usize, dx: &mut [f32]| {
        let (mut dg, mut db) = (vec![0f32; d_n], vec![0f32; d_n]);
        wide(|| {
            for (r, dx) in dx.chunks_mut(d_n).enumerate() {
                let row = t * ROWS_PER_TASK + r;
                let (x, dy) = (&x[row * d_n..][..d_n], &dy[row * d_n..][..d_n]);
                let (mean, invstd) = (saved[row], saved[ln.rows + row]);
                // g = dy · gamma and x̂ = (x - mean) · invstd: their means, over eight lanes.
                let (mut g, mut gx) = ([0f32; 8], [0f32; 8]);
                let lanes = x.chunks(8).zip(dy.chunks(8)).zip(gamma.chunks(8));
                for ((x, dy), gamma) in lanes {
                    for (k, ((&v, &d), &gm)) in x.iter().zip(dy).zip(gamma).enumerate() {
                        g[k] += d * gm;
                        gx[k] += d * gm * (v - mean) * invstd;
                    }
                }
                let n = d_n as f32;
                let (g_mean, gx_mean) = (g.iter().sum::<f32>() / n, gx.iter().sum::<f32>() / n);
                let terms = dx.iter_mut().zip(x).zip(dy).zip(gamma).zip(dg.iter_mut().zip(db.iter_mut()));
                for ((((dx, &v), &d), &gm), (dg, db)) in terms {
                    let xhat = (v - mean) * invstd;
                    *dx = invstd * (d * gm - g_mean - xhat * gx_mean);
                    *dg += d * xhat;
                    *db += d;
                }
            }
        });
        (dg, db)
    };
    let sums: Vec<(Vec<f32>, Vec<f32>)> =
        dx[..ln.rows * d_n].par_chunks_mut(ROWS_PER_TASK * d_n).enumerate().map(|(t, dx)| task(t, dx)).collect();
    let (mut dg, mut db) = (vec![0f64; d_n], vec![0f64; d_n]);
    for (g, b) in &sums {
        dg.iter_mut().zip(g).for_each(|(s, &v)| *s += v as f64);
        db.iter_mut().zip(b).for_each(|(s, &v)| *s += v as f64);
    }
    dgamma.iter_mut().zip(&dg).for_each(|(d, &s)| *d = s as f32);
    dbeta.iter_mut().zip(&db).for_each(|(d, &s)| *d = s as f32);
}
