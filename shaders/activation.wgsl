// Helpers of the unary functions' WGSL formulas. The `unary(op, x, alpha)` and
// `unary_grad(op, x, alpha)` switches are generated from the table in `kernels/src/unary.rs`
// and appended to every shader that includes this file; `kernels/src/cpu/activation.rs` has
// each helper's f64 twin.

const SQRT_2_OVER_PI: f32 = 0.7978845608028654;
const INV_SQRT_2: f32 = 0.7071067811865476;
const INV_SQRT_2PI: f32 = 0.3989422804014327;
const GELU_C: f32 = 0.044715;

// erf as Eigen's rational function x alpha(x^2) / beta(x^2) on [-4, 4] (+-1 in f32 beyond):
// within 6.5e-8 of the exact value, with no exp. Near 1 the error is absolute, so the normal
// CDF (1 + erf) / 2 keeps about 3e-8 absolute, not its relative accuracy below x = -3.
fn erf_approx(x: f32) -> f32 {
    let c = clamp(x, -4.0, 4.0);
    let x2 = c * c;
    let alpha = -1.60960333262415e-02 + x2 * (-2.95459980854025e-03 + x2 * (-7.34990630326855e-04
        + x2 * (-5.69250639462346e-05 + x2 * (-2.10102402082508e-06 + x2 * (2.77068142495902e-08
        + x2 * -2.72614225801306e-10)))));
    let beta = -1.42647390514189e-02 + x2 * (-7.37332916720468e-03 + x2 * (-1.68282697438203e-03
        + x2 * (-2.13374055278905e-04 + x2 * -1.45660718464996e-05)));
    return c * alpha / beta;
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
    return 0.5 * (1.0 + erf_approx(x * INV_SQRT_2));
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
