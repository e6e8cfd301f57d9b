//! Reference pooling.

use rayon::prelude::*;

use crate::pool::Pool2d;

/// The in-image rows and columns of output (oy, ox)'s window.
fn window(p: &Pool2d, oy: usize, ox: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
    let span = |o: usize, stride: usize, padding: usize, kernel: usize, size: usize| {
        let start = o * stride;
        start.saturating_sub(padding).min(size)..(start + kernel).saturating_sub(padding).min(size)
    };
    (span(oy, p.stride.0, p.padding.0, p.kernel.0, p.height), span(ox, p.stride.1, p.padding.1, p.kernel.1, p.width))
}

/// Calls `f(output index within the plane, rows, columns)` for every output of one plane.
fn for_each_window(p: &Pool2d, mut f: impl FnMut(usize, std::ops::Range<usize>, std::ops::Range<usize>)) {
    let (oh, ow) = (p.out_height(), p.out_width());
    for oy in 0..oh {
        for ox in 0..ow {
            let (rows, cols) = window(p, oy, ox);
            f(oy * ow + ox, rows, cols);
        }
    }
}

/// Each output plane with its input plane, as parallel tasks.
fn planes<'a, T: Send>(
    p: &Pool2d,
    out: &'a mut [T],
    x: &'a [f32],
) -> impl IndexedParallelIterator<Item = (&'a mut [T], &'a [f32])> {
    let (out_plane, in_plane) = (p.out_height() * p.out_width(), p.height * p.width);
    out[..p.planes * out_plane]
        .par_chunks_mut(out_plane.max(1))
        .zip(x[..p.planes * in_plane].par_chunks(in_plane.max(1)))
}

pub fn max_pool(p: &Pool2d, x: &[f32], y: &mut [f32], argmax: &mut [u32]) {
    let out_plane = (p.out_height() * p.out_width()).max(1);
    let winners = argmax[..p.output_len()].par_chunks_mut(out_plane);
    planes(p, y, x).zip(winners).for_each(|((out, plane), at_of)| {
        for_each_window(p, |o, rows, cols| {
            // The first maximum wins; a NaN wins at once (it propagates, as in PyTorch). An
            // empty window (all padding) gives f32::MIN at index 0.
            let (mut best, mut at) = (f32::MIN, 0);
            let mut first = true;
            'window: for yy in rows {
                let row = &plane[yy * p.width..(yy + 1) * p.width];
                for xx in cols.clone() {
                    let v = row[xx];
                    if first || v > best || v.is_nan() {
                        (best, at, first) = (v, yy * p.width + xx, false);
                        if v.is_nan() {
                            break 'window;
                        }
                    }
                }
            }
            (out[o], at_of[o]) = (best, at as u32);
        });
    });
}

/// Each window's gradient to its winner, one plane per task. A pixel sums at most KH·KW terms
/// (windows overlap only when the stride is below the kernel), so f32 loses nothing that
/// matters, and nothing is allocated.
pub fn max_pool_backward(p: &Pool2d, dy: &[f32], argmax: &[u32], dx: &mut [f32]) {
    let (out_plane, in_plane) = (p.out_height() * p.out_width(), p.height * p.width);
    dx[..p.planes * in_plane].par_chunks_mut(in_plane.max(1)).enumerate().for_each(|(n, plane)| {
        plane.fill(0.0);
        for o in n * out_plane..(n + 1) * out_plane {
            plane[argmax[o] as usize] += dy[o];
        }
    });
}

fn divisor(p: &Pool2d, rows: &std::ops::Range<usize>, cols: &std::ops::Range<usize>) -> f64 {
    if p.count_include_pad { (p.kernel.0 * p.kernel.1) as f64 } else { (rows.len() * cols.len()) as f64 }
}

pub fn avg_pool(p: &Pool2d, x: &[f32], y: &mut [f32]) {
    planes(p, y, x).for_each(|(out, plane)| {
        for_each_window(p, |o, rows, cols| {
            let d = divisor(p, &rows, &cols);
            let sum: f64 =
                rows.flat_map(|yy| cols.clone().map(move |xx| yy * p.width + xx)).map(|i| plane[i] as f64).sum();
            out[o] = (sum / d) as f32;
        });
    });
}

pub fn avg_pool_backward(p: &Pool2d, dy: &[f32], dx: &mut [f32]) {
    let (out_plane, in_plane) = (p.out_height() * p.out_width(), p.height * p.width);
    // As max pooling's: at most KH·KW terms a pixel, summed in f32 in place.
    dx[..p.planes * in_plane].par_chunks_mut(in_plane.max(1)).enumerate().for_each(|(n, plane)| {
        plane.fill(0.0);
        for_each_window(p, |o, rows, cols| {
            let share = (dy[n * out_plane + o] as f64 / divisor(p, &rows, &cols)) as f32;
            for yy in rows {
                for xx in cols.clone() {
                    plane[yy * p.width + xx] += share;
                }
            }
        });
    });
}
