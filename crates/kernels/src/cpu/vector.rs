//! f32 arithmetic that vectorises: eˣ and tanh without libm calls (their polynomials by
//! [`horner`]'s fused multiply-adds), sums and dot products over eight lanes, and [`wide`],
//! which runs a loop compiled for AVX2 and FMA where the CPU has them. The elementwise kernels
//! and the recurrent cells are written as plain loops over these. [`Real`] is the arithmetic
//! the activation formulas are generic over, in f64 and in these f32 functions.

use std::ops::{Add, Div, Mul, Neg, Sub};

/// The arithmetic the unary formulas (`activation.rs`) are written over: f64 (libm), their
/// reference, or f32 (the functions below), what the CPU executor runs.
pub trait Real:
    Copy
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
    + Neg<Output = Self>
{
    /// The constant `c` in this precision.
    fn of(c: f64) -> Self;
    /// eˣ in this precision.
    fn exp(self) -> Self;
    /// tanh in this precision.
    fn tanh(self) -> Self;
    /// self · a + b, rounded once.
    fn mul_add(self, a: Self, b: Self) -> Self;
    /// self within [lo, hi] (NaN stays NaN).
    fn clamp(self, lo: Self, hi: Self) -> Self;
}

/// [`Real`] for a float type whose eˣ and tanh are the functions given.
macro_rules! real {
    ($t:ident, $exp:path, $tanh:path) => {
        impl Real for $t {
            #[inline(always)]
            fn of(c: f64) -> Self {
                c as $t
            }
            #[inline(always)]
            fn exp(self) -> Self {
                $exp(self)
            }
            #[inline(always)]
            fn tanh(self) -> Self {
                $tanh(self)
            }
            #[inline(always)]
            fn mul_add(self, a: Self, b: Self) -> Self {
                $t::mul_add(self, a, b)
            }
            #[inline(always)]
            fn clamp(self, lo: Self, hi: Self) -> Self {
                $t::clamp(self, lo, hi)
            }
        }
    };
}

real!(f64, f64::exp, f64::tanh);
real!(f32, exp, tanh);

/// Σ coefficients[i] xⁿ⁻¹⁻ⁱ by Horner's rule, highest power first, one fused multiply-add a
/// term: half the instructions of a multiply and an add, and one rounding instead of two.
#[inline(always)]
pub fn horner<T: Real>(x: T, coefficients: &[T]) -> T {
    coefficients.iter().fold(T::of(0.0), |p, &c| p.mul_add(x, c))
}

/// Runs `f` compiled for AVX2 and FMA where the CPU has them, so that the loops inlined into
/// it work on eight lanes instead of SSE2's four and `mul_add` is one instruction; elsewhere as
/// compiled. The results are the same bits either way: the same IEEE operations, and a
/// `mul_add` rounds once wherever it runs (without FMA it is libm's `fmaf`, slow but exact).
/// Whatever `f` calls must be `#[inline(always)]` to be compiled for AVX2 as well. AVX-512 is
/// left out on purpose: on the Xeon this was measured on, GELU's loops ran 1.6x slower in
/// 16 lanes than in 8.
#[inline(always)]
pub fn wide<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has both features the function was compiled for.
            return unsafe { avx2(f) };
        }
    }
    f()
}

/// eˣ without a libm call, so that loops over it vectorise: 2ⁿ p(r) with x = n ln2 + r,
/// |r| <= ln2 / 2 and p Cephes' degree-6 polynomial for expf (within 2 ulp); n is rounded by the
/// 1.5·2²³ trick, which needs no rounding instruction. 2ⁿ is applied as two halves, so that
/// overflow gives infinity and underflow rounds into the subnormals and to 0 as IEEE would;
/// NaN stays NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-104.0, 89.0);
    let shifted = x.mul_add(std::f32::consts::LOG2_E, ROUND);
    let n = shifted - ROUND;
    let r = n.mul_add(2.121_944_4e-4, n.mul_add(-0.693_359_4, x));
    let p = horner(r, &[1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5]);
    // n as an integer, read from the low bits of the shifted sum (whose unit is 1): `as i32`
    // would check each lane for NaN and saturate, which does not vectorise.
    let n = shifted.to_bits() as i32 - ROUND.to_bits() as i32;
    let power = |k: i32| f32::from_bits(((k + 127) << 23) as u32);
    (p * r).mul_add(r, r + 1.0) * power(n >> 1) * power(n - (n >> 1))
}

/// tanh as a rational function of degree 13/6 on [-7.9, 7.9] (Eigen's fast float tanh; the
/// result is ±1 in f32 beyond): within 4.4e-7 of the exact value everywhere, branch-free, and
/// several times faster than libm's tanhf, which was most of a cell's time.
#[inline(always)]
pub fn tanh(x: f32) -> f32 {
    // The published coefficients as written (some carry more digits than an f32 keeps),
    // highest power first.
    #[allow(clippy::excessive_precision)]
    const ALPHA: [f32; 7] = [
        -2.760_768_5e-16,
        2.000_187_9e-13,
        -8.604_671_5e-11,
        5.122_297e-8,
        1.485_722_4e-5,
        6.372_619_3e-4,
        4.893_524_6e-3,
    ];
    #[allow(clippy::excessive_precision)]
    const BETA: [f32; 4] = [1.198_258_4e-6, 1.185_347_1e-4, 2.268_434_6e-3, 4.893_525_2e-3];
    let c = x.clamp(-7.905_311, 7.905_311);
    let c2 = c * c;
    let (p, q) = (horner(c2, &ALPHA), horner(c2, &BETA));
    // tanh(x) = x - x³/3 + ...: x itself is exact in f32 for |x| < 4e-4.
    if x.abs() < 4e-4 { x } else { c * p / q }
}

/// Σ a·b over eight running sums (lane k takes every eighth product), so that the loop
/// vectorises: a sequential sum cannot, its additions being in order.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let (chunks, rest) = (a.len().min(b.len()) / 8, a.len().min(b.len()) % 8);
    for (a, b) in a.chunks_exact(8).zip(b.chunks_exact(8)).take(chunks) {
        lanes.iter_mut().zip(a.iter().zip(b)).for_each(|(l, (x, y))| *l += x * y);
    }
    let tail = (0..rest).map(|i| a[chunks * 8 + i] * b[chunks * 8 + i]).sum::<f32>();
    lanes.iter().sum::<f32>() + tail
}

/// Σ values, over eight running sums as [`dot`].
#[inline(always)]
pub fn sum(values: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = values.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    chunks.for_each(|c| lanes.iter_mut().zip(c).for_each(|(l, v)| *l += v));
    lanes.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    /// Every length from empty through several lanes and a tail, against sums in f64.
    #[test]
    fn lane_sums_and_dot_products_are_the_sums() {
        for n in 0..40 {
            let a: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
            let b: Vec<f32> = (0..n).map(|i| 1.0 + (i % 3) as f32).collect();
            let dot: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
            assert_eq!(super::sum(&a) as f64, a.iter().map(|&x| x as f64).sum::<f64>(), "sum of {n}");
            assert_eq!(super::dot(&a, &b) as f64, dot, "dot of {n}");
        }
    }

    #[test]
    fn the_polynomial_exp_is_within_two_ulp() {
        for i in -10_400..=8_900 {
            let x = i as f32 * 1e-2;
            let exact = (x as f64).exp();
            let got = super::exp(x) as f64;
            if exact > f32::MAX as f64 {
                assert_eq!(got, f64::INFINITY, "exp({x})");
                continue;
            }
            // Relative in the normal range, to the spacing of the subnormals below it.
            let tolerance = (2.5e-7 * exact).max(f32::from_bits(1) as f64);
            assert!((got - exact).abs() <= tolerance, "exp({x}) = {got}, exact {exact}");
        }
        assert_eq!(super::exp(88.8), f32::INFINITY);
        assert_eq!(super::exp(f32::INFINITY), f32::INFINITY);
        assert_eq!(super::exp(-110.0), 0.0);
        assert!(super::exp(f32::NAN).is_nan());
    }

    #[test]
    fn the_rational_tanh_is_within_half_a_micro_of_the_exact_one() {
        let mut worst = 0f64;
        for i in -120_000..=120_000 {
            let x = i as f32 * 1e-4;
            let exact = (x as f64).tanh();
            worst = worst.max((super::tanh(x) as f64 - exact).abs() / exact.abs().max(1e-30));
        }
        assert!(worst < 4.5e-7, "worst relative error {worst:e}");
    }
}
