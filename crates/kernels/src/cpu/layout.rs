//! Reference strided copy and reductions.

use crate::layout::StridedCopy;
use crate::reduce::{ReduceOp, Reduction};
use rayon::prelude::*;

use super::vector::wide;
use crate::shape::{collapse, for_each_row, last_axis};

/// Copies row by row after collapsing the shape ([`collapse`]): a row contiguous on both
/// sides (a slice's, a concatenation's, most permutations') is one `copy_from_slice`. A large
/// copy runs the indices of its outermost axis in parallel.
pub fn strided_copy(copy: &StridedCopy, src: &[f32], dst: &mut [f32]) {
    /// Elements below which one thread copies alone.
    const PARALLEL: usize = 1 << 15;
    let (src, dst) = (&src[copy.src_offset..], &mut dst[copy.dst_offset..]);
    let (dims, ss, ds) = collapse(&copy.shape, &copy.src_strides, &copy.dst_strides);
    let (len, is, id) = last_axis(&dims, &ss, &ds);
    let rows = |src: &[f32], dst: &mut Destination, dims: &[usize], ss: &[usize], ds: &[usize]| {
        for_each_row(dims, ss, ds, |s, d| match (is, id) {
            (1, 1) => dst.slice(d, len).copy_from_slice(&src[s..s + len]),
            _ => (0..len).for_each(|k| *dst.at(d + k * id) = src[s + k * is]),
        })
    };
    let elements: usize = dims.iter().product();
    let destination = Destination { start: dst.as_mut_ptr(), len: dst.len() };
    match dims.split_first() {
        // Distinct outer indices write distinct elements where that axis moves the destination.
        Some((&outer, inner)) if dims.len() >= 2 && elements >= PARALLEL && ds[0] != 0 => {
            (0..outer).into_par_iter().for_each(|i| {
                let dst = destination;
                rows(&src[i * ss[0]..], &mut dst.offset(i * ds[0]), inner, &ss[1..], &ds[1..]);
            });
        }
        _ => rows(src, &mut { destination }, &dims, &ss, &ds),
    }
}

/// The destination of a strided copy, shared by the tasks that copy its outermost axis's
/// indices: each writes only its own elements (a strided copy writes every element of its
/// destination once), so the tasks never touch one element twice.
#[derive(Clone, Copy)]
struct Destination {
    start: *mut f32,
    len: usize,
}

// SAFETY: see the type's comment: disjoint elements, written by one task each.
unsafe impl Send for Destination {}
unsafe impl Sync for Destination {}

impl Destination {
    fn offset(self, by: usize) -> Destination {
        assert!(by <= self.len, "a strided copy's row outside its destination");
        // SAFETY: `by` lies within the destination (checked above).
        Destination { start: unsafe { self.start.add(by) }, len: self.len - by }
    }

    fn slice(&mut self, at: usize, len: usize) -> &mut [f32] {
        assert!(at + len <= self.len, "a strided copy's row outside its destination");
        // SAFETY: inside the destination (checked above); no other task writes these elements.
        unsafe { std::slice::from_raw_parts_mut(self.start.add(at), len) }
    }

    fn at(&mut self, at: usize) -> &mut f32 {
        &mut self.slice(at, 1)[0]
    }
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

/// The index of each reduced row's largest value (its first, on ties).
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
