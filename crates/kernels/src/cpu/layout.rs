//! Reference strided copy, reductions and convolution.

use crate::conv::Conv2d;
use crate::layout::StridedCopy;
use crate::matmul::{Bias, Matmul, MatrixView};
use crate::reduce::{ReduceOp, Reduction};
use crate::shape::strided_offsets;

pub fn strided_copy(copy: &StridedCopy, src: &[f32], dst: &mut [f32]) {
    for (s, d) in strided_offsets(&copy.shape, &copy.src_strides, &copy.dst_strides) {
        dst[copy.dst_offset + d] = src[copy.src_offset + s];
    }
}

pub fn reduce(op: ReduceOp, r: &Reduction, x: &[f32], y: &mut [f32]) {
    for o in 0..r.outer {
        for i in 0..r.inner {
            let along = (0..r.axis).map(|a| x[(o * r.axis + a) * r.inner + i] as f64);
            y[o * r.inner + i] = match op {
                ReduceOp::Sum => along.sum::<f64>(),
                ReduceOp::Mean => along.sum::<f64>() / r.axis as f64,
                ReduceOp::Max => along.fold(f64::NEG_INFINITY, f64::max),
            } as f32;
        }
    }
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

/// Every (column-matrix index, input index) pair of im2col; the input index is None where
/// the receptive field falls on padding.
fn receptive_fields(conv: &Conv2d) -> impl Iterator<Item = (usize, Option<usize>)> + '_ {
    let (oh, ow) = (conv.out_height(), conv.out_width());
    let (kh, kw) = conv.kernel;
    (0..conv.col_rows()).flat_map(move |row| {
        let (c, i, j) = (row / (kh * kw), (row / kw) % kh, row % kw);
        (0..conv.col_cols()).map(move |col| {
            let (n, oy, ox) = (col / (oh * ow), (col / ow) % oh, col % ow);
            let y = (oy * conv.stride.0 + i * conv.dilation.0).checked_sub(conv.padding.0);
            let x = (ox * conv.stride.1 + j * conv.dilation.1).checked_sub(conv.padding.1);
            let at = match (y, x) {
                (Some(y), Some(x)) if y < conv.height && x < conv.width => {
                    Some(((n * conv.in_channels + c) * conv.height + y) * conv.width + x)
                }
                _ => None,
            };
            (row * conv.col_cols() + col, at)
        })
    })
}

pub fn im2col(conv: &Conv2d, x: &[f32], col: &mut [f32]) {
    for (e, at) in receptive_fields(conv) {
        col[e] = at.map_or(0.0, |i| x[i]);
    }
}

/// The adjoint of [`im2col`]: scatter-add the columns back onto the image.
pub fn col2im(conv: &Conv2d, col: &[f32], dx: &mut [f32]) {
    let mut acc = vec![0f64; conv.input_len()];
    for (e, at) in receptive_fields(conv) {
        if let Some(i) = at {
            acc[i] += col[e] as f64;
        }
    }
    for (d, a) in dx.iter_mut().zip(acc) {
        *d = a as f32;
    }
}

/// y [N, OC, OH, OW] = conv(x, w) + bias, by im2col and one product, as on the GPU.
pub fn conv2d_forward(conv: &Conv2d, x: &[f32], w: &[f32], bias: Option<&[f32]>, y: &mut [f32]) {
    let mut col = vec![0.0; conv.col_rows() * conv.col_cols()];
    im2col(conv, x, &mut col);
    let mut product = Matmul::new(conv.out_channels, conv.col_cols(), conv.col_rows());
    product.bias = if bias.is_some() { Bias::PerRow } else { Bias::None };
    let mut tmp = vec![0.0; conv.output_len()];
    super::matmul(&product, w, &col, bias, &mut tmp);
    strided_copy(&conv.output_to_nchw(), &tmp, y);
}

/// dw and dbias of a convolution from its input x and output gradient dy.
pub fn conv2d_backward_weight(conv: &Conv2d, x: &[f32], dy: &[f32], dw: &mut [f32], dbias: Option<&mut [f32]>) {
    let mut col = vec![0.0; conv.col_rows() * conv.col_cols()];
    im2col(conv, x, &mut col);
    let mut dyt = vec![0.0; conv.output_len()];
    strided_copy(&conv.grad_from_nchw(), dy, &mut dyt);
    let product = Matmul::new(conv.out_channels, conv.col_rows(), conv.col_cols()).transpose_b();
    super::matmul(&product, &dyt, &col, None, dw);
    if let Some(dbias) = dbias {
        reduce(ReduceOp::Sum, &Reduction { outer: conv.out_channels, axis: conv.col_cols(), inner: 1 }, &dyt, dbias);
    }
}

/// dx of a convolution from its weight and output gradient dy.
pub fn conv2d_backward_input(conv: &Conv2d, w: &[f32], dy: &[f32], dx: &mut [f32]) {
    let mut dyt = vec![0.0; conv.output_len()];
    strided_copy(&conv.grad_from_nchw(), dy, &mut dyt);
    let mut product = Matmul::new(conv.col_rows(), conv.col_cols(), conv.out_channels);
    product.a = MatrixView::transposed(conv.col_rows(), conv.out_channels);
    let mut dcol = vec![0.0; conv.col_rows() * conv.col_cols()];
    super::matmul(&product, w, &dyt, None, &mut dcol);
    col2im(conv, &dcol, dx);
}
