//! Reference matrix product: `matrixmultiply`'s blocked sgemm (arbitrary strides, both cores)
//! for the product, then the epilogue in f64.

use super::activation;
use crate::matmul::{Bias, Matmul};

pub fn matmul(mm: &Matmul, a: &[f32], b: &[f32], bias: Option<&[f32]>, c: &mut [f32]) {
    let (m, n, k) = (mm.m, mm.n, mm.k);
    let mut product = vec![0f32; m * n];
    for z in 0..mm.batch {
        let a_at = mm.a.offset + z * mm.a.batch_stride;
        let b_at = mm.b.offset + z * mm.b.batch_stride;
        if m * n > 0 {
            if k == 0 {
                product.fill(0.0);
            } else {
                assert!(
                    mm.a.extent(1, m, k) + a_at <= a.len() + mm.a.offset
                        && mm.b.extent(1, k, n) + b_at <= b.len() + mm.b.offset
                );
                // SAFETY: the asserts above keep every (row, col) of both views inside the slices.
                unsafe {
                    matrixmultiply::sgemm(
                        m,
                        k,
                        n,
                        1.0,
                        a.as_ptr().add(a_at),
                        mm.a.row_stride as isize,
                        mm.a.col_stride as isize,
                        b.as_ptr().add(b_at),
                        mm.b.row_stride as isize,
                        mm.b.col_stride as isize,
                        0.0,
                        product.as_mut_ptr(),
                        n as isize,
                        1,
                    );
                }
            }
        }
        for i in 0..m {
            for j in 0..n {
                let mut v = mm.alpha as f64 * product[i * n + j] as f64;
                v += match mm.bias {
                    Bias::None => 0.0,
                    Bias::PerColumn => bias.unwrap()[j] as f64,
                    Bias::PerRow => bias.unwrap()[i] as f64,
                };
                v = activation::apply(mm.activation, v);
                let at = mm.c.offset + z * mm.c.batch_stride + i * mm.c.row_stride + j;
                if mm.beta != 0.0 {
                    v += mm.beta as f64 * c[at] as f64;
                }
                c[at] = v as f32;
            }
        }
    }
}
