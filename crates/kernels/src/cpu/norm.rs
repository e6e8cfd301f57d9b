//! Reference batch norm and layer norm (f64 statistics).

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

pub fn layer_norm(ln: &LayerNorm, x: &[f32], gamma: &[f32], beta: &[f32], y: &mut [f32], saved: &mut [f32]) {
    let d_n = ln.features;
    for r in 0..ln.rows {
        let row = &x[r * d_n..][..d_n];
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / d_n as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d_n as f64;
        let invstd = 1.0 / (var + ln.eps as f64).sqrt();
        for d in 0..d_n {
            y[r * d_n + d] = ((row[d] as f64 - mean) * invstd * gamma[d] as f64 + beta[d] as f64) as f32;
        }
        saved[r] = mean as f32;
        saved[ln.rows + r] = invstd as f32;
    }
}

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
    let mut dg = vec![0f64; d_n];
    let mut db = vec![0f64; d_n];
    for r in 0..ln.rows {
        let (mean, invstd) = (saved[r] as f64, saved[ln.rows + r] as f64);
        let at = |d: usize| r * d_n + d;
        let xhat = |d: usize| (x[at(d)] as f64 - mean) * invstd;
        let g = |d: usize| dy[at(d)] as f64 * gamma[d] as f64;
        let g_mean = (0..d_n).map(g).sum::<f64>() / d_n as f64;
        let gx_mean = (0..d_n).map(|d| g(d) * xhat(d)).sum::<f64>() / d_n as f64;
        for d in 0..d_n {
            dx[at(d)] = (invstd * (g(d) - g_mean - xhat(d) * gx_mean)) as f32;
            dg[d] += dy[at(d)] as f64 * xhat(d);
            db[d] += dy[at(d)] as f64;
        }
    }
    for d in 0..d_n {
        dgamma[d] = dg[d] as f32;
        dbeta[d] = db[d] as f32;
    }
}
