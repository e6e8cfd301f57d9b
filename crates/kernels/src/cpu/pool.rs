//! Reference pooling.

use std::ops::Range;

use rayon::prelude::*;

use crate::pool::Pool2d;

/// The in-image rows and columns of output (oy, ox)'s window.
fn window(p: &Pool2d, oy: usize, ox: usize) -> (Range<usize>, Range<usize>) {
    let span = |o: usize, stride: usize, padding: usize, kernel: usize, size: usize| {
        let start = o * stride;
        start.saturating_sub(padding).min(size)..(start + kernel).saturating_sub(padding).min(size)
    };
    (span(oy, p.stride.0, p.padding.0, p.kernel.0, p.height), span(ox, p.stride.1, p.padding.1, p.kernel.1, p.width))
}

/// Calls `f(output index within the plane, rows, columns)` for every output of one plane.
fn for_each_window(p: &Pool2d, mut f: impl FnMut(usize, Range<usize>, Range<usize>)) {
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

/// Max pooling: each window's largest value, and the index of its first in `argmax` (for the backward).
pub fn max_pool(p: &Pool2d, x: &[f32], y: &mut [f32], argmax: &mut [u32]) {
    let out_plane = (p.out_height() * p.out_width()).max(1);
    let winners = argmax[..p.output_len()].par_chunks_mut(out_plane);
    planes(p, y, x).zip(winners).for_each(|((out, plane), at_of)| match p.padding {
        (0, 0) => max_pool_unpadded(p, plane, out, at_of),
        _ => for_each_window(p, |o, rows, cols| {
            let (best, at) = window_max(p, plane, rows, cols);
            (out[o], at_of[o]) = (best, at as u32);
        }),
    });
}

/// The largest value of one window of a plane and its index in the plane. The first maximum
/// wins; a NaN wins at once (it propagates, as in PyTorch). An empty window (all padding)
/// gives f32::MIN at index 0.
fn window_max(p: &Pool2d, plane: &[f32], rows: Range<usize>, cols: Range<usize>) -> (f32, usize) {
    let (mut best, mut at) = (f32::MIN, 0);
    let mut first = true;
    for yy in rows {
        let row = &plane[yy * p.width..(yy + 1) * p.width];
        for xx in cols.clone() {
            let v = row[xx];
            if first || v > best || v.is_nan() {
                (best, at, first) = (v, yy * p.width + xx, false);
                if v.is_nan() {
                    return (best, at);
                }
            }
        }
    }
    (best, at)
}

/// Max pooling of one plane without padding, where every window lies whole in the plane: a
/// row of outputs at a time, the window's cells in the same order (rows, then columns) each
/// against the whole row of outputs, without branches, so that the outputs' comparisons are
/// independent of one another rather than one chain per window. The winners of
/// [`window_max`]: the first maximum, or the first NaN, which nothing beats.
fn max_pool_unpadded(p: &Pool2d, plane: &[f32], out: &mut [f32], at_of: &mut [u32]) {
    let (ow, (kh, kw), (sy, sx)) = (p.out_width(), p.kernel, p.stride);
    for (oy, (best, at)) in out.chunks_exact_mut(ow).zip(at_of.chunks_exact_mut(ow)).enumerate() {
        for (cell, (dy, dx)) in (0..kh).flat_map(|dy| (0..kw).map(move |dx| (dy, dx))).enumerate() {
            let start = (oy * sy + dy) * p.width + dx;
            let row = &plane[start..start + (ow - 1) * sx + 1];
            for ox in 0..ow {
                let (v, b) = (row[ox * sx], best[ox]);
                let wins = (cell == 0) | (v > b) | (v.is_nan() & !b.is_nan());
                best[ox] = if wins { v } else { b };
                at[ox] = if wins { (start + ox * sx) as u32 } else { at[ox] };
            }
        }
    }
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

fn divisor(p: &Pool2d, rows: &Range<usize>, cols: &Range<usize>) -> f64 {
    if p.count_include_pad { (p.kernel.0 * p.kernel.1) as f64 } else { (rows.len() * cols.len()) as f64 }
}

/// Average pooling: each window's mean.
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

/// The gradient of [`avg_pool`]: each output's gradient spread evenly over its window.
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The unpadded path picks what the window-by-window loop picks, on planes full of ties
    /// and NaNs, for windows that overlap, abut and leave rows and columns out.
    #[test]
    fn unpadded_max_pooling_picks_the_winners_of_the_window_loop() {
        let value = |i: usize| match i % 7 {
            0 => f32::NAN,
            k => ((i * 31) % 5) as f32 - k as f32 % 2.0,
        };
        for (kernel, stride) in [((2, 2), (2, 2)), ((3, 3), (2, 2)), ((3, 2), (1, 3)), ((1, 1), (1, 1))] {
            let p =
                Pool2d { planes: 1, height: 11, width: 10, kernel, stride, padding: (0, 0), count_include_pad: true };
            for shift in 0..7 {
                let plane: Vec<f32> = (0..p.input_len()).map(|i| value(i + shift)).collect();
                let (mut best, mut at) = (vec![0.0; p.output_len()], vec![0u32; p.output_len()]);
                max_pool_unpadded(&p, &plane, &mut best, &mut at);
                let mut want = Vec::new();
                for_each_window(&p, |_, rows, cols| want.push(window_max(&p, &plane, rows, cols)));
                let got: Vec<(f32, usize)> = best.iter().zip(&at).map(|(&v, &i)| (v, i as usize)).collect();
                let same =
                    |(a, i): (f32, usize), (b, j): (f32, usize)| i == j && (a == b || (a.is_nan() && b.is_nan()));
                assert!(got.iter().zip(&want).all(|(&g, &w)| same(g, w)), "{kernel:?}/{stride:?}: {got:?} vs {want:?}");
            }
        }
    }
}
