//! The convolution on the CPU, image by image: one image's columns (C·KH·KW × OH·OW, small
//! enough to stay in cache) are formed, multiplied and scattered back on one thread, the
//! images in parallel, and the products read and write NCHW as it lies. The GPU forms the
//! whole batch's columns in one matrix and permutes around its products (`crate::conv`); both
//! compute the same sums.

use rayon::prelude::*;

use super::matmul::{Operand, dense_product};
use crate::conv::Conv2d;

/// The output positions `lo..hi` (of `out`) whose tap at offset `k` (kernel index × dilation)
/// lands inside `0..size`, for stride `stride` and padding `padding`.
fn inside(out: usize, k: usize, stride: usize, padding: usize, size: usize) -> (usize, usize) {
    let lo = padding.saturating_sub(k).div_ceil(stride);
    let hi = (size + padding).saturating_sub(k).div_ceil(stride);
    (lo.min(out), hi.min(out).max(lo.min(out)))
}

/// Calls `f(row, oy, lo, hi, source)` for every row (c, i, j) of an image's column matrix and
/// every output row `oy`: output columns `lo..hi` read the image from index `source` (of
/// `lo`'s pixel) on, stepping by the stride; the others, and every `oy` whose tap lies in the
/// padding (`source` None), read zeros.
fn for_each_tap_row(conv: &Conv2d, mut f: impl FnMut(usize, usize, usize, usize, Option<usize>)) {
    let (oh, ow) = (conv.out_height(), conv.out_width());
    let (kh, kw) = conv.kernel;
    for row in 0..conv.col_rows() {
        let (c, i, j) = (row / (kh * kw), (row / kw) % kh, row % kw);
        let (lo, hi) = inside(ow, j * conv.dilation.1, conv.stride.1, conv.padding.1, conv.width);
        for oy in 0..oh {
            let y = (oy * conv.stride.0 + i * conv.dilation.0).checked_sub(conv.padding.0).filter(|&y| y < conv.height);
            let x = (lo * conv.stride.1 + j * conv.dilation.1).wrapping_sub(conv.padding.1);
            f(row, oy, lo, hi, y.map(|y| (c * conv.height + y) * conv.width + x));
        }
    }
}

/// One image's column matrix: row r = (c, i, j) of `col` (row stride `stride`) holds, at
/// each output position of the image, the pixel of channel c that tap (i, j) reads (0 on
/// padding). `image` is [C, H, W].
pub fn im2col_image(conv: &Conv2d, image: &[f32], col: &mut [f32], stride: usize) {
    let (ow, step) = (conv.out_width(), conv.stride.1);
    for_each_tap_row(conv, |row, oy, lo, hi, source| {
        let out = &mut col[row * stride + oy * ow..][..ow];
        let Some(s) = source else { return out.fill(0.0) };
        out[..lo].fill(0.0);
        out[hi..].fill(0.0);
        match step {
            1 => out[lo..hi].copy_from_slice(&image[s..s + hi - lo]),
            _ => out[lo..hi].iter_mut().enumerate().for_each(|(k, v)| *v = image[s + k * step]),
        }
    });
}

/// The adjoint of [`im2col_image`]: adds each column entry onto the pixel it was read from.
/// `image` is [C, H, W], zeroed by the caller.
pub fn col2im_image(conv: &Conv2d, col: &[f32], stride: usize, image: &mut [f32]) {
    let (ow, step) = (conv.out_width(), conv.stride.1);
    for_each_tap_row(conv, |row, oy, lo, hi, source| {
        let Some(s) = source else { return };
        let out = &col[row * stride + oy * ow..][..ow];
        match step {
            1 => image[s..s + hi - lo].iter_mut().zip(&out[lo..hi]).for_each(|(p, v)| *p += v),
            _ => out[lo..hi].iter().enumerate().for_each(|(k, v)| image[s + k * step] += v),
        }
    });
}

/// Sizes of one image: its input, its output and its column matrix, in elements.
fn image_sizes(conv: &Conv2d) -> (usize, usize, usize) {
    let positions = conv.out_height() * conv.out_width();
    (conv.in_channels * conv.height * conv.width, conv.out_channels * positions, conv.col_rows() * positions)
}

/// Whether each image's products run on one thread (the images fill the cores) or on all.
fn products_in_parallel(conv: &Conv2d) -> bool {
    conv.batch < rayon::current_num_threads()
}

/// y [N, OC, OH, OW] = conv(x, w) + bias. `col` is workspace of at least
/// [`Conv2d::col_rows`] · [`Conv2d::col_cols`] elements.
pub fn conv2d_forward(conv: &Conv2d, x: &[f32], w: &[f32], bias: Option<&[f32]>, col: &mut [f32], y: &mut [f32]) {
    let (input, output, columns) = image_sizes(conv);
    let (positions, rows, parallel) = (output / conv.out_channels.max(1), conv.col_rows(), products_in_parallel(conv));
    if output == 0 {
        return;
    }
    let images = y[..conv.batch * output].par_chunks_mut(output).zip(col.par_chunks_mut(columns.max(1)));
    images.enumerate().for_each(|(n, (y, col))| {
        im2col_image(conv, &x[n * input..][..input], col, positions);
        dense_product((conv.out_channels, positions, rows), Operand::Rows(w), Operand::Rows(col), y, false, parallel);
        if let Some(bias) = bias {
            y.chunks_mut(positions).zip(bias).for_each(|(row, b)| row.iter_mut().for_each(|v| *v += b));
        }
    });
}

/// Elements of the backward's workspace `partials`: one partial weight and bias gradient per
/// task (as many tasks as threads, at most one per image), which fits in a tensor of the
/// output's size unless the images are few and small beside the weight.
pub fn backward_partials(conv: &Conv2d) -> usize {
    backward_tasks(conv, usize::MAX) * conv.out_channels * (conv.col_rows() + 1)
}

fn backward_tasks(conv: &Conv2d, room: usize) -> usize {
    let per_task = conv.out_channels * (conv.col_rows() + 1);
    rayon::current_num_threads().min(conv.batch).min(room / per_task.max(1)).max(1)
}

/// dw, dbias and (where asked) dx of a convolution with output gradient dy. Each task takes a
/// run of images and, image by image, forms its columns in `col`, adds dy · colᵀ to its own
/// partial weight gradient in `partials`, and scatters wᵀ · dy back onto dx; the partials are
/// summed at the end. `col` is workspace as in [`conv2d_forward`]; `partials` is the
/// backward's (any size: fewer tasks run where it holds fewer than [`backward_partials`]).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward(
    conv: &Conv2d,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    col: &mut [f32],
    partials: &mut [f32],
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    dbias: Option<&mut [f32]>,
) {
    let (input, output, columns) = image_sizes(conv);
    let (oc, rows) = (conv.out_channels, conv.col_rows());
    let positions = output / oc.max(1);
    let per_task = conv.batch.div_ceil(backward_tasks(conv, partials.len()));
    // Every task has an image: ceil(N / per_task) of them.
    let tasks = conv.batch.div_ceil(per_task.max(1));
    let parallel = products_in_parallel(conv);
    let partial = oc * (rows + 1);
    let mut dx_runs: Vec<Option<&mut [f32]>> = match dx {
        Some(dx) => dx[..conv.batch * input].chunks_mut((per_task * input).max(1)).map(Some).collect(),
        None => Vec::new(),
    };
    dx_runs.resize_with(tasks, || None);
    let col_runs = col.chunks_mut((per_task * columns).max(1));
    let work = partials[..tasks * partial].par_chunks_mut(partial).zip(col_runs.collect::<Vec<_>>()).zip(dx_runs);
    work.enumerate().for_each(|(t, ((partial, col), mut dx))| {
        let (dw_part, db_part) = partial.split_at_mut(oc * rows);
        db_part.fill(0.0);
        for (k, n) in (t * per_task..((t + 1) * per_task).min(conv.batch)).enumerate() {
            let col = &mut col[k * columns..][..columns];
            let dy = &dy[n * output..][..output];
            im2col_image(conv, &x[n * input..][..input], col, positions);
            let shape = (oc, rows, positions);
            dense_product(shape, Operand::Rows(dy), Operand::Transposed(col), dw_part, k > 0, parallel);
            db_part.iter_mut().zip(dy.chunks(positions.max(1))).for_each(|(b, row)| *b += row.iter().sum::<f32>());
            if let Some(dx) = dx.as_deref_mut() {
                dense_product((rows, positions, oc), Operand::Transposed(w), Operand::Rows(dy), col, false, parallel);
                let image = &mut dx[k * input..][..input];
                image.fill(0.0);
                col2im_image(conv, col, positions, image);
            }
        }
    });
    dw[..oc * rows].copy_from_slice(&partials[..oc * rows]);
    for part in partials[partial..tasks * partial].chunks(partial) {
        dw.iter_mut().zip(&part[..oc * rows]).for_each(|(d, p)| *d += p);
    }
    if let Some(dbias) = dbias {
        dbias.fill(0.0);
        for part in partials[..tasks * partial].chunks(partial) {
            dbias.iter_mut().zip(&part[oc * rows..]).for_each(|(d, p)| *d += p);
        }
    }
}
