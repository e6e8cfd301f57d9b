//! Reference elementwise ops.

use rayon::prelude::*;

use super::vector::wide;
use crate::shape::{collapse, last_axis, row_offsets};
use crate::{Binary, Broadcast, Unary};

/// Elements per parallel task of the elementwise ops.
const CHUNK: usize = 1 << 14;

/// y = f(x), in f32 (within a few ulp of the table's f64 formula).
pub fn unary(op: Unary, x: &[f32], y: &mut [f32]) {
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(y, x)| wide(|| op.apply_f32(x, y)));
}

/// dx = dy · f'(x), in f32 as [`unary`].
pub fn unary_backward(op: Unary, x: &[f32], dy: &[f32], dx: &mut [f32]) {
    dx.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK)))
        .for_each(|(dx, (x, dy))| wide(|| op.derivative_f32(x, dy, dx)));
}

/// out = a ∘ b under NumPy broadcasting. The shapes are collapsed first ([`collapse`]), so
/// that one shape is a single contiguous loop and a bias is a loop per row; each row's loop is
/// specialised for unit and zero strides, so that it vectorises.
pub fn binary(op: Binary, shape: &Broadcast, a: &[f32], b: &[f32], out: &mut [f32]) {
    match op {
        Binary::Add => broadcast(shape, a, b, out, |x, y| x + y),
        Binary::Sub => broadcast(shape, a, b, out, |x, y| x - y),
        Binary::Mul => broadcast(shape, a, b, out, |x, y| x * y),
        Binary::Div => broadcast(shape, a, b, out, |x, y| x / y),
    }
}

fn broadcast(shape: &Broadcast, a: &[f32], b: &[f32], out: &mut [f32], f: impl Fn(f32, f32) -> f32 + Sync + Copy) {
    let (dims, sa, sb) = collapse(&shape.out, &shape.a_strides, &shape.b_strides);
    let (len, ia, ib) = last_axis(&dims, &sa, &sb);
    let n = shape.len();
    out[..n].par_chunks_mut(len.max(1)).with_min_len((CHUNK / len.max(1)).max(1)).enumerate().for_each(|(r, row)| {
        let (oa, ob) = row_offsets(&dims, &sa, &sb, r);
        row.par_chunks_mut(CHUNK).enumerate().for_each(|(c, part)| {
            let (a, b) = (&a[oa + c * CHUNK * ia..], &b[ob + c * CHUNK * ib..]);
            wide(|| strided_run(part, a, ia, b, ib, f));
        });
    });
}

/// out[k] = f(a[k·ia], b[k·ib]), with a loop of its own for each stride that is 0 or 1.
#[inline(always)]
fn strided_run(out: &mut [f32], a: &[f32], ia: usize, b: &[f32], ib: usize, f: impl Fn(f32, f32) -> f32) {
    let n = out.len();
    match (ia, ib) {
        (1, 1) => out.iter_mut().zip(&a[..n]).zip(&b[..n]).for_each(|((o, &x), &y)| *o = f(x, y)),
        (1, 0) => out.iter_mut().zip(&a[..n]).for_each(|(o, &x)| *o = f(x, b[0])),
        (0, 1) => out.iter_mut().zip(&b[..n]).for_each(|(o, &y)| *o = f(a[0], y)),
        _ => out.iter_mut().enumerate().for_each(|(k, o)| *o = f(a[k * ia], b[k * ib])),
    }
}
