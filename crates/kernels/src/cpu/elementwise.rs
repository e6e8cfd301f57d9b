//! Reference elementwise ops.

use super::activation;
use crate::shape::strided_offsets;
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
    let offsets = strided_offsets(&shape.out, &shape.a_strides, &shape.b_strides);
    for (o, (ia, ib)) in out.iter_mut().zip(offsets) {
        let (x, y) = (a[ia], b[ib]);
        *o = match op {
            Binary::Add => x + y,
            Binary::Sub => x - y,
            Binary::Mul => x * y,
            Binary::Div => x / y,
        };
    }
}
