//! Reference pooling.

use crate::pool::Pool2d;

/// The in-image pixels (y, x) of output (oy, ox)'s window.
fn window(p: &Pool2d, oy: usize, ox: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
    (0..p.kernel.0).flat_map(move |i| (0..p.kernel.1).map(move |j| (i, j))).filter_map(move |(i, j)| {
        let y = (oy * p.stride.0 + i).checked_sub(p.padding.0)?;
        let x = (ox * p.stride.1 + j).checked_sub(p.padding.1)?;
        (y < p.height && x < p.width).then_some((y, x))
    })
}

fn outputs(p: &Pool2d) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
    let (oh, ow) = (p.out_height(), p.out_width());
    (0..p.planes).flat_map(move |n| (0..oh).flat_map(move |oy| (0..ow).map(move |ox| (n, oy, ox))))
}

pub fn max_pool(p: &Pool2d, x: &[f32], y: &mut [f32], argmax: &mut [u32]) {
    for (o, (n, oy, ox)) in outputs(p).enumerate() {
        let plane = &x[n * p.height * p.width..];
        let mut best: Option<(f32, usize)> = None;
        for (yy, xx) in window(p, oy, ox) {
            let idx = yy * p.width + xx;
            let v = plane[idx];
            if best.is_none_or(|(b, _)| v > b || v.is_nan()) {
                best = Some((v, idx));
                if v.is_nan() {
                    break;
                }
            }
        }
        let (v, idx) = best.unwrap_or((f32::MIN, 0));
        y[o] = v;
        argmax[o] = idx as u32;
    }
}

pub fn max_pool_backward(p: &Pool2d, dy: &[f32], argmax: &[u32], dx: &mut [f32]) {
    let mut acc = vec![0f64; p.input_len()];
    for (o, (n, _, _)) in outputs(p).enumerate() {
        acc[n * p.height * p.width + argmax[o] as usize] += dy[o] as f64;
    }
    for (d, a) in dx.iter_mut().zip(acc) {
        *d = a as f32;
    }
}

fn divisor(p: &Pool2d, oy: usize, ox: usize) -> f64 {
    if p.count_include_pad { (p.kernel.0 * p.kernel.1) as f64 } else { window(p, oy, ox).count() as f64 }
}

pub fn avg_pool(p: &Pool2d, x: &[f32], y: &mut [f32]) {
    for (o, (n, oy, ox)) in outputs(p).enumerate() {
        let plane = &x[n * p.height * p.width..];
        let sum: f64 = window(p, oy, ox).map(|(yy, xx)| plane[yy * p.width + xx] as f64).sum();
        y[o] = (sum / divisor(p, oy, ox)) as f32;
    }
}

pub fn avg_pool_backward(p: &Pool2d, dy: &[f32], dx: &mut [f32]) {
    let mut acc = vec![0f64; p.input_len()];
    for (o, (n, oy, ox)) in outputs(p).enumerate() {
        let share = dy[o] as f64 / divisor(p, oy, ox);
        for (yy, xx) in window(p, oy, ox) {
            acc[n * p.height * p.width + yy * p.width + xx] += share;
        }
    }
    for (d, a) in dx.iter_mut().zip(acc) {
        *d = a as f32;
    }
}
