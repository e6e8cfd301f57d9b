// Helpers of the unary functions' WGSL formulas. The `unary(op, x, alpha)` and
// `unary_grad(op, x, alpha)` switches are generated from the table in `kernels/src/unary.rs`
// and appended to every shader that includes this file; `kernels/src/cpu/activation.rs` has
// each helper's f64 twin.

const SQRT_2_OVER_PI: f32 = 0.7978845608028654;
const INV_SQRT_2: f32 = 0.7071067811865476;
const INV_SQRT_2PI: f32 = 0.3989422804014327;
const GELU_C: f32 = 0.044715;

// erfc with fractional error < 1.2e-7 everywhere (Numerical Recipes' erfcc). Working on erfc
// keeps GELU accurate in relative terms for large negative inputs, where 1 + erf cancels.
fn erfc_approx(x: f32) -> f32 {
    let z = abs(x);
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
        + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    let r = t * exp(-z * z + poly);
    return select(2.0 - r, r, x >= 0.0);
}

// tanh with the argument clamped: some backends return NaN for large |x| (tanh(15) == 1 in f32).
fn tanh_safe(x: f32) -> f32 {
    return tanh(clamp(x, -15.0, 15.0));
}

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

// GELU's tanh form, 0.5 x (1 + tanh(u)), is computed as x * sigmoid(2u): the same function,
// without the cancellation of 1 + tanh(u) for negative x.
fn gelu_tanh_arg(x: f32) -> f32 {
    return SQRT_2_OVER_PI * (x + GELU_C * x * x * x);
}

// Standard normal CDF.
fn phi_cdf(x: f32) -> f32 {
    return 0.5 * erfc_approx(-x * INV_SQRT_2);
}

fn gelu_tanh(x: f32) -> f32 {
    return x * sigmoid(2.0 * gelu_tanh_arg(x));
}

fn gelu_tanh_grad(x: f32) -> f32 {
    let s = sigmoid(2.0 * gelu_tanh_arg(x));
    return s + x * 2.0 * s * sigmoid(-2.0 * gelu_tanh_arg(x)) * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_C * x * x);
}

fn gelu_erf(x: f32) -> f32 {
    return x * phi_cdf(x);
}

fn gelu_erf_grad(x: f32) -> f32 {
    return phi_cdf(x) + x * INV_SQRT_2PI * exp(-0.5 * x * x);
}
