//! Reference elementwise ops.

use rayon::prelude::*;

use crate::shape::for_each_offset;
use crate::{Binary, Broadcast, Unary};

/// Elements per parallel task of the elementwise ops.
const CHUNK: usize = 1 << 14;

pub fn unary(op: Unary, x: &[f32], y: &mut [f32]) {
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(y, x)| {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = op.apply(x as f64) as f32;
        }
    });
}

pub fn unary_backward(op: Unary, x: &[f32], dy: &[f32], dx: &mut [f32]) {
    dx.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK))).for_each(|(dx, (x, dy))| {
        for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
            *dx = (dy as f64 * op.derivative(x as f64)) as f32;
        }
    });
}

pub fn binary(op: Binary, shape: &Broadcast, a: &[f32], b: &[f32], out: &mut [f32]) {
    let f = match op {
        Binary::Add => |x: f32, y: f32| x + y,
        Binary::Sub => |x, y| x - y,
        Binary::Mul => |x, y| x * y,
        Binary::Div => |x, y| x / y,
    };
    // One task per index of the leading axis.
    let (Some((&rows, inner)), Some((&sa, a_inner)), Some((&sb, b_inner))) =
        (shape.out.split_first(), shape.a_strides.split_first(), shape.b_strides.split_first())
    else {
        return out[0] = f(a[0], b[0]);
    };
    let row_len = inner.iter().product::<usize>();
    out[..rows * row_len].par_chunks_mut(row_len.max(1)).enumerate().for_each(|(r, out)| {
        let (a, b) = (&a[r * sa..], &b[r * sb..]);
        let mut o = 0;
        for_each_offset(inner, a_inner, b_inner, |ia, ib| {
            out[o] = f(a[ia], b[ib]);
            o += 1;
        });
    });
}
