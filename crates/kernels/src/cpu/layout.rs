//! Reference strided copy, reductions and convolution.

use crate::conv::Conv2d;
use crate::layout::StridedCopy;
use crate::matmul::{Bias, Matmul, MatrixView};
use crate::reduce::{ReduceOp, Reduction};
use rayon::prelude::*;

use super::vector::wide;
use crate::shape::{collapse, for_each_row, last_axis};

/// Copies row by row after collapsing the shape ([`collapse`]): a row contiguous on both
/// sides (a slice's, a concatenation's, most permutations') is one `copy_from_slice`.
pub fn strided_copy(copy: &StridedCopy, src: &[f32], dst: &mut [f32]) {
    let (src, dst) = (&src[copy.src_offset..], &mut dst[copy.dst_offset..]);
    let (dims, ss, ds) = collapse(&copy.shape, &copy.src_strides, &copy.dst_strides);
    let (len, is, id) = last_axis(&dims, &ss, &ds);
    for_each_row(&dims, &ss, &ds, |s, d| match (is, id) {
        (1, 1) => dst[d..d + len].copy_from_slice(&src[s..s + len]),
        _ => (0..len).for_each(|k| dst[d + k * id] = src[s + k * is]),
    });
}

/// Sums (in f64), means or maxima along the middle axis. Column runs in parallel; each walks
/// the reduced axis row by row, reading contiguous memory.
pub fn reduce(op: ReduceOp, r: &Reduction, x: &[f32], y: &mut [f32]) {
    const COLUMNS: usize = 512;
    if r.inner == 0 {
        return;
    }
    let start = if op == ReduceOp::Max { f64::NEG_INFINITY } else { 0.0 };
    let count = if op == ReduceOp::Mean { r.axis as f64 } else { 1.0 };
    y.par_chunks_mut(r.inner).enumerate().for_each(|(o, y)| {
        y.par_chunks_mut(COLUMNS).enumerate().for_each(|(c, y)| {
            wide(|| {
                let mut acc = [start; COLUMNS];
                let acc = &mut acc[..y.len()];
                for a in 0..r.axis {
                    let row = &x[(o * r.axis + a) * r.inner + c * COLUMNS..][..y.len()];
                    let pairs = acc.iter_mut().zip(row);
                    match op {
                        ReduceOp::Max => pairs.for_each(|(acc, &v)| *acc = acc.max(v as f64)),
                        ReduceOp::Sum | ReduceOp::Mean => pairs.for_each(|(acc, &v)| *acc += v as f64),
                    }
                }
                y.iter_mut().zip(acc).for_each(|(y, acc)| *y = (*acc / count) as f32);
            })
        });
    });
}

pub fn argmax(r: &Reduction, x: &[f32], y: &mut [u32]) {
    for o in 0..r.outer {
        for i in 0..r.inner {
            let at = |a: usize| x[(o * r.axis + a) * r.inner + i];
            let mut best = 0;
            for a in 1..r.axis {
                if at(a) > at(best) || (at(best).is_nan() && !at(a).is_nan()) {
                    best = a;
                }
            }
            y[o * r.inner + i] = best as u32;
        }
    }
}

/// The input coordinate that output coordinate `o` reads through kernel tap `k`, if inside
/// the image (None on padding).
fn tap(o: usize, k: usize, stride: usize, dilation: usize, padding: usize, size: usize) -> Option<usize> {
    (o * stride + k * dilation).checked_sub(padding).filter(|&v| v < size)
}

/// Row `row` = (c, i, j) of the column matrix: for every column (n, oy, ox), the pixel of
/// channel c that tap (i, j) reads, as `f(column, pixel index within image n's channel c)`.
fn for_each_tap(conv: &Conv2d, row: usize, n: usize, mut f: impl FnMut(usize, usize)) {
    let (oh, ow) = (conv.out_height(), conv.out_width());
    let (kh, kw) = conv.kernel;
    let (i, j) = ((row / kw) % kh, row % kw);
    for oy in 0..oh {
        let Some(y) = tap(oy, i, conv.stride.0, conv.dilation.0, conv.padding.0, conv.height) else { continue };
        for ox in 0..ow {
            if let Some(x) = tap(ox, j, conv.stride.1, conv.dilation.1, conv.padding.1, conv.width) {
                f((n * oh + oy) * ow + ox, y * conv.width + x);
            }
        }
    }
}

/// col [C·KH·KW, N·OH·OW]: each row one tap of one channel over every output position. Rows
/// are filled in parallel.
pub fn im2col(conv: &Conv2d, x: &[f32], col: &mut [f32]) {
    let (taps, plane) = (conv.kernel.0 * conv.kernel.1, conv.height * conv.width);
    col[..conv.col_rows() * conv.col_cols()].par_chunks_mut(conv.col_cols()).enumerate().for_each(|(row, out)| {
        out.fill(0.0);
        let c = row / taps;
        for n in 0..conv.batch {
            let image = &x[(n * conv.in_channels + c) * plane..][..plane];
            for_each_tap(conv, row, n, |e, i| out[e] = image[i]);
        }
    });
}

/// The adjoint of [`im2col`]: scatter-add the columns back onto the image, one (n, c) plane
/// per task. Each pixel sums at most KH·KW terms, so f32 accumulation loses nothing that
/// matters here.
pub fn col2im(conv: &Conv2d, col: &[f32], dx: &mut [f32]) {
    let (taps, plane) = (conv.kernel.0 * conv.kernel.1, conv.height * conv.width);
    dx[..conv.input_len()].par_chunks_mut(plane).enumerate().for_each(|(nc, image)| {
        image.fill(0.0);
        let (n, c) = (nc / conv.in_channels, nc % conv.in_channels);
        for row in c * taps..(c + 1) * taps {
            let columns = &col[row * conv.col_cols()..][..conv.col_cols()];
            for_each_tap(conv, row, n, |e, i| image[i] += columns[e]);
        }
    });
}

/// y [N, OC, OH, OW] = conv(x, w) + bias, by im2col into `col` and one product into `tmp`
/// [OC, N·OH·OW], as on the GPU ([`crate::conv::forward`]).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_forward(
    conv: &Conv2d,
    x: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    col: &mut [f32],
    tmp: &mut [f32],
    y: &mut [f32],
) {
    im2col(conv, x, col);
    let mut product = Matmul::new(conv.out_channels, conv.col_cols(), conv.col_rows());
    product.bias = if bias.is_some() { Bias::PerRow } else { Bias::None };
    super::matmul(&product, w, col, bias, tmp);
    strided_copy(&conv.output_to_nchw(), tmp, y);
}

/// dw and dbias of a convolution from `col` = im2col(x) and the output gradient dy, which is
/// permuted into `dyt` [OC, N·OH·OW] for [`conv2d_backward_input`], as on the GPU.
pub fn conv2d_backward_weight(
    conv: &Conv2d,
    dy: &[f32],
    col: &[f32],
    dyt: &mut [f32],
    dw: &mut [f32],
    dbias: Option<&mut [f32]>,
) {
    strided_copy(&conv.grad_from_nchw(), dy, dyt);
    let product = Matmul::new(conv.out_channels, conv.col_rows(), conv.col_cols()).transpose_b();
    super::matmul(&product, dyt, col, None, dw);
    if let Some(dbias) = dbias {
        reduce(ReduceOp::Sum, &Reduction { outer: conv.out_channels, axis: conv.col_cols(), inner: 1 }, dyt, dbias);
    }
}

/// dx of a convolution from its weight and `dyt` (from [`conv2d_backward_weight`]), with
/// `dcol` as workspace.
pub fn conv2d_backward_input(conv: &Conv2d, w: &[f32], dyt: &[f32], dcol: &mut [f32], dx: &mut [f32]) {
    let mut product = Matmul::new(conv.col_rows(), conv.col_cols(), conv.out_channels);
    product.a = MatrixView::transposed(conv.col_rows(), conv.out_channels);
    super::matmul(&product, w, dyt, None, dcol);
    col2im(conv, dcol, dx);
}
