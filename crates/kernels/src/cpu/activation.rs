//! The f64 helpers of the unary table's reference formulas (`unary.rs`), each the twin of
//! the WGSL helper of the same name in `shaders/activation.wgsl`.

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

pub fn gelu_tanh(x: f64) -> f64 {
    x * sigmoid(2.0 * gelu_tanh_arg(x))
}

pub fn gelu_tanh_derivative(x: f64) -> f64 {
    let s = sigmoid(2.0 * gelu_tanh_arg(x));
    s + x * 2.0 * s * sigmoid(-2.0 * gelu_tanh_arg(x)) * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_C * x * x)
}

pub fn gelu_erf(x: f64) -> f64 {
    x * phi_cdf(x)
}

pub fn gelu_erf_derivative(x: f64) -> f64 {
    phi_cdf(x) + x * (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
}
