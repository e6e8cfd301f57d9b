//! Reference elementwise ops.

use super::activation;
use crate::{Binary, Broadcast, Unary};

pub fn unary(op: Unary, x: &[f32], y: &mut [f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = activation::apply(op, x as f64) as f32;
    }
}

pub fn unary_backward(op: Unary, x: &[f32], dy: &[f32], dx: &mut [f32]) {
    for ((dx, &x), &dy) in dx.iter_mut().zip(x).zip(dy) {
        *dx = (dy as f64 * activation::derivative(op, x as f64)) as f32;
    }
}

pub fn binary(op: Binary, shape: &Broadcast, a: &[f32], b: &[f32], out: &mut [f32]) {
    let rank = shape.out.len();
    let mut index = vec![0usize; rank];
    for o in out.iter_mut().take(shape.len()) {
        let ia: usize = index.iter().zip(&shape.a_strides).map(|(i, s)| i * s).sum();
        let ib: usize = index.iter().zip(&shape.b_strides).map(|(i, s)| i * s).sum();
        let (x, y) = (a[ia], b[ib]);
        *o = match op {
            Binary::Add => x + y,
            Binary::Sub => x - y,
            Binary::Mul => x * y,
            Binary::Div => x / y,
        };
        // Advance the multi-index, last axis fastest.
        for axis in (0..rank).rev() {
            index[axis] += 1;
            if index[axis] < shape.out[axis] {
                break;
            }
            index[axis] = 0;
        }
    }
}
