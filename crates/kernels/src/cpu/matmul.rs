//! Reference matrix product: the `gemm` crate's blocked kernels (arbitrary strides, every core).
//! With the identity activation sgemm applies alpha and beta itself, writing straight into C,
//! and the bias is added in place; an activation sits between the product and beta·C, so then
//! the product goes through a scratch matrix and the epilogue runs in f64.

use rayon::prelude::*;

use crate::Unary;
use crate::matmul::{Bias, Matmul};

/// Elements of C from which its bias is filled in on every core.
const PARALLEL_FILL: usize = 1 << 16;

/// C = act(α A·B + bias) + β C, as [`Matmul`] describes: the CPU reference of the GPU's matmul.
pub fn matmul(mm: &Matmul, a: &[f32], b: &[f32], bias: Option<&[f32]>, c: &mut [f32]) {
    let (m, n, k) = (mm.m, mm.n, mm.k);
    if m * n == 0 {
        return;
    }
    assert!(
        k == 0 || (mm.a.extent(mm.batch, m, k) <= a.len() && mm.b.extent(mm.batch, k, n) <= b.len()),
        "matmul operands shorter than their views"
    );
    let direct = mm.activation == Unary::Identity;
    let mut product = if direct { Vec::new() } else { vec![0f32; m * n] };
    for z in 0..mm.batch {
        let c_at = mm.c.offset + z * mm.c.batch_stride;
        let bias_at = |i: usize, j: usize| match mm.bias {
            Bias::None => 0.0,
            Bias::PerColumn => bias.unwrap()[j],
            Bias::PerRow => bias.unwrap()[i],
        };
        if direct {
            let c_rows = &mut c[c_at..c_at + (m - 1) * mm.c.row_stride + n];
            // A bias goes into C before the product, which then adds onto it while its tiles
            // are in cache: one pass over C fewer than adding it after.
            let dst = match (mm.bias, bias) {
                (Bias::None, _) | (_, None) => mm.beta,
                (Bias::PerColumn, Some(bias)) => {
                    let fill = |row: &mut [f32]| {
                        let row = &mut row[..n];
                        match mm.beta {
                            0.0 => row.copy_from_slice(&bias[..n]),
                            beta => row.iter_mut().zip(bias).for_each(|(v, b)| *v = beta * *v + b),
                        }
                    };
                    // A large C is filled by every core, as the product that follows runs.
                    match m * n >= PARALLEL_FILL {
                        true => c_rows.par_chunks_mut(mm.c.row_stride).for_each(fill),
                        false => c_rows.chunks_mut(mm.c.row_stride).for_each(fill),
                    }
                    1.0
                }
                (Bias::PerRow, Some(bias)) => {
                    for (row, &b) in c_rows.chunks_mut(mm.c.row_stride).zip(bias) {
                        row[..n].iter_mut().for_each(|v| *v = if mm.beta == 0.0 { b } else { mm.beta * *v + b });
                    }
                    1.0
                }
            };
            sgemm(mm, z, a, b, mm.alpha, dst, c_rows, mm.c.row_stride);
        } else {
            sgemm(mm, z, a, b, 1.0, 0.0, &mut product, n);
            for i in 0..m {
                for j in 0..n {
                    let v = mm.alpha as f64 * product[i * n + j] as f64 + bias_at(i, j) as f64;
                    let mut v = mm.activation.apply(v);
                    let at = c_at + i * mm.c.row_stride + j;
                    if mm.beta != 0.0 {
                        v += mm.beta as f64 * c[at] as f64;
                    }
                    c[at] = v as f32;
                }
            }
        }
    }
}

/// out = alpha · A[z] B[z] + beta · out (out is not read when beta is 0), out row-major with
/// row stride `out_stride`, on every core. Where k is long beside m and n (a weight's
/// gradient, summed over a batch's rows), gemm would divide only the few tiles of m and n among
/// the threads and leave cores idle: k is split into one run per thread instead, each run's
/// product made on its own thread, and the partial products (in a thread-local scratch that
/// grows once) added into `out`.
#[allow(clippy::too_many_arguments)]
fn sgemm(mm: &Matmul, z: usize, a: &[f32], b: &[f32], alpha: f32, beta: f32, out: &mut [f32], out_stride: usize) {
    thread_local! {
        static PARTIALS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let (m, n, k) = (mm.m, mm.n, mm.k);
    let threads = rayon::current_num_threads();
    let whole = |out: &mut [f32]| sgemm_over(mm, z, 0..k, (a, b), (alpha, beta), out, out_stride, true);
    if threads < 2 || k < 1024 || k < 4 * m.max(n) {
        return whole(out);
    }
    let run = k.div_ceil(threads);
    PARTIALS.with(|partials| {
        // A nested call on this thread (a rayon worker stealing work) finds it borrowed.
        let Ok(mut partials) = partials.try_borrow_mut() else { return whole(out) };
        partials.resize((threads - 1) * m * n, 0.0);
        let mut parts: Vec<(&mut [f32], usize, f32)> = vec![(&mut *out, out_stride, beta)];
        parts.extend(partials.chunks_mut(m * n).map(|p| (p, n, 0.0)));
        parts.into_par_iter().enumerate().for_each(|(t, (dst, stride, beta))| {
            let ks = (t * run).min(k)..((t + 1) * run).min(k);
            sgemm_over(mm, z, ks, (a, b), (alpha, beta), dst, stride, false);
        });
        for part in partials.chunks(m * n) {
            for (row, add) in out.chunks_mut(out_stride).zip(part.chunks(n)) {
                row[..n].iter_mut().zip(add).for_each(|(v, p)| *v += p);
            }
        }
    })
}

/// out = alpha · A[z][:, ks] B[z][ks, :] + beta · out, on every core or on this thread.
#[allow(clippy::too_many_arguments)]
fn sgemm_over(
    mm: &Matmul,
    z: usize,
    ks: std::ops::Range<usize>,
    (a, b): (&[f32], &[f32]),
    (alpha, beta): (f32, f32),
    out: &mut [f32],
    out_stride: usize,
    parallel: bool,
) {
    let (m, n, k) = (mm.m, mm.n, ks.len());
    if k == 0 {
        for i in 0..m {
            for v in &mut out[i * out_stride..i * out_stride + n] {
                *v = if beta == 0.0 { 0.0 } else { beta * *v };
            }
        }
        return;
    }
    let a_at = mm.a.offset + z * mm.a.batch_stride + ks.start * mm.a.col_stride;
    let b_at = mm.b.offset + z * mm.b.batch_stride + ks.start * mm.b.row_stride;
    let parallelism = if parallel { gemm::Parallelism::Rayon(0) } else { gemm::Parallelism::None };
    // SAFETY: `matmul` asserted that every (row, col) of both views lies inside the slices (ks
    // is a part of 0..k), and `out` holds m rows of `out_stride` with n columns each. `gemm`
    // computes dst = alpha·dst + beta·lhs·rhs (its names), reading dst only when asked to.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            out_stride as isize,
            beta != 0.0,
            a.as_ptr().add(a_at),
            mm.a.col_stride as isize,
            mm.a.row_stride as isize,
            b.as_ptr().add(b_at),
            mm.b.col_stride as isize,
            mm.b.row_stride as isize,
            beta,
            alpha,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// A dense row-major operand of [`dense_product`] as it is stored: `Rows` as the product
/// reads it (A [m, k], B [k, n]), `Transposed` as its transpose (A [k, m], B [n, k]).
#[derive(Clone, Copy)]
pub(crate) enum Operand<'a> {
    Rows(&'a [f32]),
    Transposed(&'a [f32]),
}

/// c [m, n] = a · b, or c += a · b with `accumulate`: on this thread, or with `parallel` on
/// every core (a caller running many products at once runs each on one).
pub(crate) fn dense_product(
    (m, n, k): (usize, usize, usize),
    a: Operand,
    b: Operand,
    c: &mut [f32],
    accumulate: bool,
    parallel: bool,
) {
    if m * n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    // (data, column stride, row stride) of each operand as gemm indexes it.
    let (a, a_cs, a_rs) = match a {
        Operand::Rows(a) => (a, 1, k),
        Operand::Transposed(a) => (a, m, 1),
    };
    let (b, b_cs, b_rs) = match b {
        Operand::Rows(b) => (b, 1, n),
        Operand::Transposed(b) => (b, k, 1),
    };
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "dense_product operands shorter than {m}x{n}x{k}"
    );
    let parallelism = if parallel { gemm::Parallelism::Rayon(0) } else { gemm::Parallelism::None };
    // SAFETY: the assertion above holds every index of the three dense matrices inside their
    // slices. gemm computes dst = alpha·dst + beta·lhs·rhs (its names), reading dst only when
    // asked to.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}
