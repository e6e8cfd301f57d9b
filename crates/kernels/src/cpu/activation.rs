//! The helpers of the unary table's formulas (`unary.rs`), each the twin of the WGSL helper of
//! the same name in `shaders/activation.wgsl`. They are generic over [`Real`]: in f64 they are
//! the table's reference, every test's ground truth; in f32 they are what the CPU executor
//! runs, on the vectorising functions of `vector.rs` (where [`Real`] is declared).

use super::vector::{Real, horner};

/// eˣ, in the precision of `T`.
#[inline(always)]
pub fn exp<T: Real>(x: T) -> T {
    x.exp()
}

/// tanh, in the precision of `T`.
#[inline(always)]
pub fn tanh<T: Real>(x: T) -> T {
    x.tanh()
}

/// erf as Eigen's (and XLA's) rational function x·α(x²)/β(x²) of degrees 13 and 8 on
/// [-4, 4] (±1 in f32 beyond), as on the GPU: within 6.5e-8 of the exact value, with no exp
/// and no division but the last (GELU on 4M values, 2 threads: 4.6 -> 1.2 ms beside the erfc
/// through exp it replaces, whose polynomial had 10 terms before the exp). Near 1 that
/// is an absolute error, so Φ(x) = (1 + erf)/2 keeps about 3e-8 absolute and not its relative
/// accuracy below x = -3, where GELU's values are under 0.004 in size (PyTorch's CPU GELU makes
/// the same trade).
#[inline(always)]
pub fn erf<T: Real>(x: T) -> T {
    // Highest power first.
    const ALPHA: [f64; 7] = [
        -2.726_142_258_013_06e-10,
        2.770_681_424_959_02e-8,
        -2.101_024_020_825_08e-6,
        -5.692_506_394_623_46e-5,
        -7.349_906_303_268_55e-4,
        -2.954_599_808_540_25e-3,
        -1.609_603_332_624_15e-2,
    ];
    const BETA: [f64; 5] = [
        -1.456_607_184_649_96e-5,
        -2.133_740_552_789_05e-4,
        -1.682_826_974_382_03e-3,
        -7.373_329_167_204_68e-3,
        -1.426_473_905_141_89e-2,
    ];
    let x = x.clamp(T::of(-4.0), T::of(4.0));
    let x2 = x * x;
    x * horner(x2, &ALPHA.map(T::of)) / horner(x2, &BETA.map(T::of))
}

/// 1 / (1 + e⁻ˣ).
#[inline(always)]
pub fn sigmoid<T: Real>(x: T) -> T {
    T::of(1.0) / (T::of(1.0) + (-x).exp())
}

#[inline(always)]
fn phi_cdf<T: Real>(x: T) -> T {
    T::of(0.5) * (T::of(1.0) + erf(x * T::of(std::f64::consts::FRAC_1_SQRT_2)))
}

const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const GELU_C: f64 = 0.044715;

/// 0.5 x (1 + tanh(u)) = x sigmoid(2u); the GPU uses the second form to avoid cancellation.
#[inline(always)]
fn gelu_tanh_arg<T: Real>(x: T) -> T {
    T::of(SQRT_2_OVER_PI) * (x + T::of(GELU_C) * x * x * x)
}

/// GELU by tanh's approximation (PyTorch's `approximate="tanh"`).
#[inline(always)]
pub fn gelu_tanh<T: Real>(x: T) -> T {
    x * sigmoid(T::of(2.0) * gelu_tanh_arg(x))
}

/// The derivative of [`gelu_tanh`].
#[inline(always)]
pub fn gelu_tanh_derivative<T: Real>(x: T) -> T {
    let c = T::of;
    let s = sigmoid(c(2.0) * gelu_tanh_arg(x));
    s + x * c(2.0) * s * sigmoid(c(-2.0) * gelu_tanh_arg(x)) * c(SQRT_2_OVER_PI) * (c(1.0) + c(3.0 * GELU_C) * x * x)
}

/// GELU, x Φ(x), through erf (PyTorch's default).
#[inline(always)]
pub fn gelu_erf<T: Real>(x: T) -> T {
    x * phi_cdf(x)
}

/// The derivative of [`gelu_erf`]: Φ(x) + x φ(x).
#[inline(always)]
pub fn gelu_erf_derivative<T: Real>(x: T) -> T {
    let c = T::of;
    phi_cdf(x) + x * (c(-0.5) * x * x).exp() / c((2.0 * std::f64::consts::PI).sqrt())
}
