//! Products with a matrix packed once and used many times. A recurrent layer multiplies its
//! hidden weights by a few rows of state at every time step; a general GEMM repacks the
//! weights at each step and splits each small product across threads, paying for a
//! synchronisation per step. Packed once, the weights serve every step, and a thread can run
//! all the steps of its own batch rows alone.
//!
//! The product is tiles of 6 rows × 16 columns held in registers over the whole of k: with
//! AVX-512 two such tiles at once, with AVX2 and FMA one (explicit kernels, std::arch),
//! elsewhere the same loop in plain Rust. The last rounds differently (a fused multiply-add
//! rounds once); the vector kernels give the same bits as each other.

use std::ops::Range;

/// Columns per panel: two 8-lane vectors.
const COLUMNS: usize = 16;
/// Rows per tile: 6 × 2 accumulator vectors, the two of a panel row and a broadcast fill 15 of
/// AVX2's 16 registers.
const ROWS: usize = 6;

/// B [k, n] in panels of [`COLUMNS`] columns, each panel's k rows of 16 values contiguous
/// (zeros past column n).
#[derive(Debug, Clone)]
pub struct Packed {
    k: usize,
    n: usize,
    panels: Vec<f32>,
}

/// Some of A's columns: `width` values of each row, rows `stride` apart. A product's A is one
/// or more of these side by side (an LSTM step's [x_t, h_prev]), never copied together.
#[derive(Debug, Clone, Copy)]
pub struct Columns<'a> {
    /// The matrix's values.
    pub values: &'a [f32],
    /// Between the starts of two rows.
    pub stride: usize,
    /// Columns taken of each row.
    pub width: usize,
}

impl<'a> Columns<'a> {
    /// Rows of `width` values packed one after another.
    pub fn rows(values: &'a [f32], width: usize) -> Columns<'a> {
        Columns { values, stride: width, width }
    }

    /// Row i.
    fn row(&self, i: usize) -> &'a [f32] {
        &self.values[i * self.stride..][..self.width]
    }
}

impl Packed {
    /// B [k, n] read from `b` at `b[i * row_stride + j * col_stride]`: a weight W [n, k] used
    /// as Wᵀ has strides (1, k); a row-major [k, n] matrix (n, 1).
    pub fn new(k: usize, n: usize, b: &[f32], row_stride: usize, col_stride: usize) -> Packed {
        Packed::from_fn(k, n, |i, j| b[i * row_stride + j * col_stride])
    }

    /// B [k, n] with B[i, j] = `value(i, j)`.
    pub fn from_fn(k: usize, n: usize, value: impl Fn(usize, usize) -> f32) -> Packed {
        let mut panels = vec![0.0; n.div_ceil(COLUMNS) * k * COLUMNS];
        if k > 0 {
            for (p, panel) in panels.chunks_mut(k * COLUMNS).enumerate() {
                for (i, row) in panel.chunks_mut(COLUMNS).enumerate() {
                    for (j, v) in row.iter_mut().enumerate().take(n - p * COLUMNS) {
                        *v = value(i, p * COLUMNS + j);
                    }
                }
            }
        }
        Packed { k, n, panels }
    }

    /// c [m, n] += A [m, k] · B, A the blocks of columns `a` side by side, rows of c `ldc`
    /// apart, on the calling thread. The rows of A are packed too, in blocks of [`ROWS`]
    /// interleaved (so that a tile's broadcasts read one stream), and the product runs panel
    /// by panel, so that a panel stays in L1 while every row block reads it.
    pub fn multiply_add(&self, a: &[Columns], m: usize, c: &mut [f32], ldc: usize) {
        self.multiply_add_with(Kernel::best(), a, m, c, ldc)
    }

    fn multiply_add_with(&self, kernel: Kernel, a: &[Columns], m: usize, c: &mut [f32], ldc: usize) {
        let k = self.k;
        assert_eq!(a.iter().map(|part| part.width).sum::<usize>(), k, "A's columns must add up to k");
        if m == 0 || self.n == 0 || k == 0 {
            return;
        }
        let short = a.iter().any(|part| part.values.len() < (m - 1) * part.stride + part.width);
        assert!(!short && c.len() >= (m - 1) * ldc + self.n, "operands too short");
        // The packed rows live in a buffer of the thread's, reused by every step of a recurrence.
        thread_local!(static ROWS_BUFFER: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) });
        ROWS_BUFFER.with_borrow_mut(|rows| {
            // Every value is written below, the padding of a last partial block included.
            rows.resize(rows.len().max(m.div_ceil(ROWS) * k * ROWS), 0.0);
            let rows = &mut rows[..m.div_ceil(ROWS) * k * ROWS];
            for (block, packed) in rows.chunks_exact_mut(k * ROWS).enumerate() {
                pack_block(a, block * ROWS..m.min((block + 1) * ROWS), packed);
            }
            self.tiles(kernel, rows, m, c, ldc)
        })
    }

    fn tiles(&self, kernel: Kernel, rows: &[f32], m: usize, c: &mut [f32], ldc: usize) {
        match kernel {
            // SAFETY: `Kernel::best` and the tests pick a vector kernel only where the CPU has
            // its features.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => unsafe { self.tiles_avx512(rows, m, c, ldc) },
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { self.tiles_avx2(rows, m, c, ldc) },
            Kernel::Portable => self.tiles_with(rows, m, c, ldc, portable),
        }
    }

    /// Every tile of the product from the packed rows, each by `tile`, panel by panel.
    #[inline(always)]
    fn tiles_with(&self, rows: &[f32], m: usize, c: &mut [f32], ldc: usize, tile: impl Fn(&[f32], &[f32]) -> Acc) {
        for (p, panel) in self.panels.chunks_exact(self.k * COLUMNS).enumerate() {
            for (block, a) in rows.chunks_exact(self.k * ROWS).enumerate() {
                self.add(&tile(a, panel), p, block, m, c, ldc);
            }
        }
    }

    /// c += one tile's sums: panel `p`'s columns of row block `block`, rows past m left out.
    #[inline(always)]
    fn add(&self, acc: &Acc, p: usize, block: usize, m: usize, c: &mut [f32], ldc: usize) {
        let (start, width) = (p * COLUMNS, COLUMNS.min(self.n - p * COLUMNS));
        for (r, acc) in acc.iter().enumerate().take(ROWS.min(m - block * ROWS)) {
            let out = &mut c[(block * ROWS + r) * ldc + start..][..width];
            // A whole panel's row as an array: a loop of known length, one or two vector adds.
            match <&mut [f32; COLUMNS]>::try_from(&mut *out) {
                Ok(out) => out.iter_mut().zip(acc).for_each(|(o, &v)| *o += v),
                Err(_) => out.iter_mut().zip(acc).for_each(|(o, &v)| *o += v),
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tiles_avx2(&self, rows: &[f32], m: usize, c: &mut [f32], ldc: usize) {
        self.tiles_with(rows, m, c, ldc, avx2)
    }

    /// Panels two at a time (one 16-lane vector each), a last odd one by the AVX2 tile.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx2,fma")]
    unsafe fn tiles_avx512(&self, rows: &[f32], m: usize, c: &mut [f32], ldc: usize) {
        let panels: Vec<&[f32]> = self.panels.chunks_exact(self.k * COLUMNS).collect();
        for (pair, panels) in panels.chunks(2).enumerate() {
            for (block, a) in rows.chunks_exact(self.k * ROWS).enumerate() {
                match panels {
                    [p0, p1] => {
                        let [acc0, acc1] = avx512(a, p0, p1);
                        self.add(&acc0, 2 * pair, block, m, c, ldc);
                        self.add(&acc1, 2 * pair + 1, block, m, c, ldc);
                    }
                    [p0] => self.add(&avx2(a, p0), 2 * pair, block, m, c, ldc),
                    _ => unreachable!("chunks of at most two"),
                }
            }
        }
    }
}

/// Which tile kernel a product runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Kernel {
    /// The kernels this CPU can run, the fastest last.
    fn available() -> Vec<Kernel> {
        #[allow(unused_mut)]
        let mut kernels = vec![Kernel::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            use std::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") {
                kernels.push(Kernel::Avx2);
                if has!("avx512f") {
                    kernels.push(Kernel::Avx512);
                }
            }
        }
        kernels
    }

    fn best() -> Kernel {
        static BEST: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| *Kernel::available().last().expect("the portable kernel"))
    }
}

/// A tile's sums: [`ROWS`] rows of [`COLUMNS`].
type Acc = [[f32; COLUMNS]; ROWS];

/// One tile: a block of packed rows ([k][ROWS]) times a panel ([k][COLUMNS]).
fn portable(a: &[f32], panel: &[f32]) -> Acc {
    let mut acc = [[0f32; COLUMNS]; ROWS];
    for (x, b) in a.chunks_exact(ROWS).zip(panel.chunks_exact(COLUMNS)) {
        for (acc, &x) in acc.iter_mut().zip(x) {
            acc.iter_mut().zip(b).for_each(|(acc, &b)| *acc += x * b);
        }
    }
    acc
}

/// The AVX2 tile: per step of k two vector loads, 6 broadcasts and 12 fused multiply-adds
/// into accumulators that stay in registers.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn avx2(a: &[f32], panel: &[f32]) -> Acc {
    use std::arch::x86_64::*;
    // SAFETY: only inlined into functions compiled with AVX2 and FMA and called once they are
    // detected; each load reads inside one chunk of 16 (b) or 6 (x) values.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); 2]; ROWS];
        for (x, b) in a.chunks_exact(ROWS).zip(panel.chunks_exact(COLUMNS)) {
            let (b0, b1) = (_mm256_loadu_ps(b.as_ptr()), _mm256_loadu_ps(b.as_ptr().add(8)));
            for (acc, &x) in acc.iter_mut().zip(x) {
                let x = _mm256_set1_ps(x);
                acc[0] = _mm256_fmadd_ps(x, b0, acc[0]);
                acc[1] = _mm256_fmadd_ps(x, b1, acc[1]);
            }
        }
        let mut out = [[0f32; COLUMNS]; ROWS];
        for (out, acc) in out.iter_mut().zip(&acc) {
            _mm256_storeu_ps(out.as_mut_ptr(), acc[0]);
            _mm256_storeu_ps(out.as_mut_ptr().add(8), acc[1]);
        }
        out
    }
}

/// The AVX-512 tile over two panels: per step of k one 16-lane load from each, 6 broadcasts
/// and 12 fused multiply-adds.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn avx512(a: &[f32], p0: &[f32], p1: &[f32]) -> [Acc; 2] {
    use std::arch::x86_64::*;
    // SAFETY: only inlined into a function compiled with AVX-512F and called once it is
    // detected; each load reads one chunk of 16 (b0, b1) or 6 (x) values.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); 2]; ROWS];
        for ((x, b0), b1) in a.chunks_exact(ROWS).zip(p0.chunks_exact(COLUMNS)).zip(p1.chunks_exact(COLUMNS)) {
            let (b0, b1) = (_mm512_loadu_ps(b0.as_ptr()), _mm512_loadu_ps(b1.as_ptr()));
            for (acc, &x) in acc.iter_mut().zip(x) {
                let x = _mm512_set1_ps(x);
                acc[0] = _mm512_fmadd_ps(x, b0, acc[0]);
                acc[1] = _mm512_fmadd_ps(x, b1, acc[1]);
            }
        }
        let mut out = [[[0f32; COLUMNS]; ROWS]; 2];
        for (r, acc) in acc.iter().enumerate() {
            _mm512_storeu_ps(out[0][r].as_mut_ptr(), acc[0]);
            _mm512_storeu_ps(out[1][r].as_mut_ptr(), acc[1]);
        }
        out
    }
}

/// Rows `rows` (at most [`ROWS`]) of A, the blocks of columns `a` side by side, interleaved
/// into `packed` [k][ROWS]: column p of every row together, zeros for rows past A's last.
fn pack_block(a: &[Columns], rows: Range<usize>, packed: &mut [f32]) {
    let mut columns = packed.chunks_exact_mut(ROWS);
    for part in a {
        let source: [&[f32]; ROWS] = std::array::from_fn(|r| match rows.start + r < rows.end {
            true => part.row(rows.start + r),
            false => &[],
        });
        for (p, column) in (0..part.width).zip(columns.by_ref()) {
            match rows.len() {
                ROWS => column.iter_mut().zip(&source).for_each(|(v, row)| *v = row[p]),
                n => column.iter_mut().enumerate().for_each(|(r, v)| *v = if r < n { source[r][p] } else { 0.0 }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel this CPU has against a plain f64 triple loop, at sizes that are no multiple
    /// of a tile or panel (an odd number of panels too), with row strides wider than the rows,
    /// for both strides of B, and with A as one block of columns or as two side by side.
    #[test]
    fn packed_products_match_a_plain_loop() {
        let value = |i: usize| ((i * 7919) % 23) as f32 / 11.0 - 1.0;
        let shapes = [(1, 1, 1), (3, 5, 17), (6, 16, 16), (7, 33, 31), (13, 128, 50), (8, 9, 33), (2, 0, 3)];
        for ((m, k, n), split) in shapes.into_iter().flat_map(|s| [(s, false), (s, true)]) {
            let (lda, ldc) = (k + 3, n + 2);
            let a: Vec<f32> = (0..m * lda).map(value).collect();
            let w: Vec<f32> = (0..n * k).map(|i| value(i + 5)).collect();
            // A's first k/3 columns and the rest as two blocks, the second read from a copy.
            let first = k / 3;
            let rest: Vec<f32> = (0..m).flat_map(|i| a[i * lda + first..i * lda + k].to_vec()).collect();
            let columns = match split {
                false => vec![Columns { values: &a, stride: lda, width: k }],
                true => vec![Columns { values: &a, stride: lda, width: first }, Columns::rows(&rest, k - first)],
            };
            for transposed in [true, false] {
                // B = wᵀ for w [n, k], or w read as a row-major [k, n].
                let (rs, cs) = if transposed { (1, k) } else { (n, 1) };
                let packed = Packed::new(k, n, &w, rs, cs);
                let before: Vec<f32> = (0..m * ldc).map(|i| value(i + 3)).collect();
                let results: Vec<Vec<f32>> = Kernel::available()
                    .into_iter()
                    .map(|kernel| {
                        let mut c = before.clone();
                        packed.multiply_add_with(kernel, &columns, m, &mut c, ldc);
                        c
                    })
                    .collect();
                // The vector kernels fuse each multiply-add alike: the same bits.
                if let [_, avx2, rest @ ..] = &results[..] {
                    rest.iter().for_each(|c| assert_eq!(c, avx2, "{m}x{k}x{n}: AVX-512 and AVX2 differ"));
                }
                for (c, i) in results.iter().flat_map(|c| (0..m).map(move |i| (c, i))) {
                    for j in 0..n {
                        let sum: f64 = (0..k).map(|p| a[i * lda + p] as f64 * w[p * rs + j * cs] as f64).sum();
                        let (want, got) = (before[i * ldc + j] as f64 + sum, c[i * ldc + j] as f64);
                        assert!(
                            (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                            "{m}x{k}x{n} ({i}, {j}): {got} vs {want}"
                        );
                    }
                    // The padding between rows is left alone.
                    assert_eq!(c[i * ldc + n..(i + 1) * ldc], before[i * ldc + n..(i + 1) * ldc]);
                }
            }
        }
    }
}
