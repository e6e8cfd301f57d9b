//! The helpers of the unary table's formulas (`unary.rs`), each the twin of the WGSL helper of
//! the same name in `shaders/activation.wgsl`. They are generic over [`Real`]: in f64 they are
//! the table's reference, every test's ground truth; in f32 they are what the CPU executor
//! runs, on the vectorising functions of `vector.rs`.

use std::ops::{Add, Div, Mul, Neg, Sub};

use super::vector;

/// The arithmetic the formulas use, in f64 (libm) or f32 (`vector.rs`).
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
    fn exp(self) -> Self;
    fn tanh(self) -> Self;
    fn abs(self) -> Self;
}

impl Real for f64 {
    #[inline(always)]
    fn of(c: f64) -> Self {
        c
    }
    #[inline(always)]
    fn exp(self) -> Self {
        f64::exp(self)
    }
    #[inline(always)]
    fn tanh(self) -> Self {
        f64::tanh(self)
    }
    #[inline(always)]
    fn abs(self) -> Self {
        f64::abs(self)
    }
}

impl Real for f32 {
    #[inline(always)]
    fn of(c: f64) -> Self {
        c as f32
    }
    #[inline(always)]
    fn exp(self) -> Self {
        vector::exp(self)
    }
    #[inline(always)]
    fn tanh(self) -> Self {
        vector::tanh(self)
    }
    #[inline(always)]
    fn abs(self) -> Self {
        f32::abs(self)
    }
}

#[inline(always)]
pub fn exp<T: Real>(x: T) -> T {
    x.exp()
}

#[inline(always)]
pub fn tanh<T: Real>(x: T) -> T {
    x.tanh()
}

/// erfc with fractional error < 1.2e-7 (Numerical Recipes' erfcc), as on the GPU.
#[inline(always)]
pub fn erfc<T: Real>(x: T) -> T {
    let c = T::of;
    let z = x.abs();
    let t = c(1.0) / (c(1.0) + c(0.5) * z);
    let poly = [
        0.17087277,
        -0.82215223,
        1.48851587,
        -1.13520398,
        0.27886807,
        -0.18628806,
        0.09678418,
        0.37409196,
        1.00002368,
        -1.26551223,
    ]
    .iter()
    .fold(c(0.0), |p, &k| p * t + c(k));
    let r = t * (-z * z + poly).exp();
    if x >= c(0.0) { r } else { c(2.0) - r }
}

#[inline(always)]
pub fn sigmoid<T: Real>(x: T) -> T {
    T::of(1.0) / (T::of(1.0) + (-x).exp())
}

#[inline(always)]
fn phi_cdf<T: Real>(x: T) -> T {
    T::of(0.5) * erfc(-x * T::of(std::f64::consts::FRAC_1_SQRT_2))
}

const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const GELU_C: f64 = 0.044715;

/// 0.5 x (1 + tanh(u)) = x sigmoid(2u); the GPU uses the second form to avoid cancellation.
#[inline(always)]
fn gelu_tanh_arg<T: Real>(x: T) -> T {
    T::of(SQRT_2_OVER_PI) * (x + T::of(GELU_C) * x * x * x)
}

#[inline(always)]
pub fn gelu_tanh<T: Real>(x: T) -> T {
    x * sigmoid(T::of(2.0) * gelu_tanh_arg(x))
}

#[inline(always)]
pub fn gelu_tanh_derivative<T: Real>(x: T) -> T {
    let c = T::of;
    let s = sigmoid(c(2.0) * gelu_tanh_arg(x));
    s + x * c(2.0) * s * sigmoid(c(-2.0) * gelu_tanh_arg(x)) * c(SQRT_2_OVER_PI) * (c(1.0) + c(3.0 * GELU_C) * x * x)
}

#[inline(always)]
pub fn gelu_erf<T: Real>(x: T) -> T {
    x * phi_cdf(x)
}

#[inline(always)]
pub fn gelu_erf_derivative<T: Real>(x: T) -> T {
    let c = T::of;
    phi_cdf(x) + x * (c(-0.5) * x * x).exp() / c((2.0 * std::f64::consts::PI).sqrt())
}
