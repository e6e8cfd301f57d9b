//! Reference unary functions and derivatives, in f64, with the formulas of
//! `shaders/activation.wgsl`.

use crate::Unary;

/// erfc with fractional error < 1.2e-7 (Numerical Recipes' erfcc), as on the GPU.
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -1.26551223
        + t * (1.00002368
            + t * (0.37409196
                + t * (0.09678418
                    + t * (-0.18628806
                        + t * (0.27886807
                            + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    let r = t * (-z * z + poly).exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn phi_cdf(x: f64) -> f64 {
    0.5 * erfc(-x * std::f64::consts::FRAC_1_SQRT_2)
}

const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const GELU_C: f64 = 0.044715;

/// 0.5 x (1 + tanh(u)) = x sigmoid(2u); the GPU uses the second form to avoid cancellation.
fn gelu_tanh_arg(x: f64) -> f64 {
    SQRT_2_OVER_PI * (x + GELU_C * x * x * x)
}

// Inlined so that a loop over elements branches on `op` once, not per element.
#[inline(always)]
pub fn apply(op: Unary, x: f64) -> f64 {
    match op {
        Unary::Identity => x,
        Unary::Relu => x.max(0.0),
        Unary::LeakyRelu(a) => {
            if x > 0.0 {
                x
            } else {
                a as f64 * x
            }
        }
        Unary::GeluTanh => x * sigmoid(2.0 * gelu_tanh_arg(x)),
        Unary::GeluErf => x * phi_cdf(x),
        Unary::Sigmoid => sigmoid(x),
        Unary::Tanh => x.tanh(),
        Unary::Silu => x * sigmoid(x),
        Unary::Exp => x.exp(),
        Unary::Log => x.ln(),
        Unary::Sqrt => x.sqrt(),
        Unary::Scale(a) => a as f64 * x,
    }
}

/// d apply(op, x) / dx; ReLU's derivative at 0 is 0, as in PyTorch.
#[inline(always)]
pub fn derivative(op: Unary, x: f64) -> f64 {
    match op {
        Unary::Identity => 1.0,
        Unary::Relu => {
            if x > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        Unary::LeakyRelu(a) => {
            if x > 0.0 {
                1.0
            } else {
                a as f64
            }
        }
        Unary::GeluTanh => {
            let s = sigmoid(2.0 * gelu_tanh_arg(x));
            s + x * 2.0 * s * sigmoid(-2.0 * gelu_tanh_arg(x)) * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_C * x * x)
        }
        Unary::GeluErf => phi_cdf(x) + x * (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt(),
        Unary::Sigmoid => sigmoid(x) * sigmoid(-x),
        Unary::Tanh => 4.0 * sigmoid(2.0 * x) * sigmoid(-2.0 * x),
        Unary::Silu => sigmoid(x) * (1.0 + x * sigmoid(-x)),
        Unary::Exp => x.exp(),
        Unary::Log => 1.0 / x,
        Unary::Sqrt => 0.5 / x.sqrt(),
        Unary::Scale(a) => a as f64,
    }
}
