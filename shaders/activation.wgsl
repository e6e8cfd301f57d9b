// Unary functions shared by the elementwise kernels and the matmul epilogue, and their
// derivatives. The op codes match `kernels::Unary` in Rust; `kernels::cpu::activation` is the
// reference and uses the same formulas (in f64).

const U_IDENTITY: u32 = 0u;
const U_RELU: u32 = 1u;
const U_LEAKY_RELU: u32 = 2u;
const U_GELU_TANH: u32 = 3u;
const U_GELU_ERF: u32 = 4u;
const U_SIGMOID: u32 = 5u;
const U_TANH: u32 = 6u;
const U_SILU: u32 = 7u;
const U_EXP: u32 = 8u;
const U_LOG: u32 = 9u;
const U_SQRT: u32 = 10u;
const U_SCALE: u32 = 11u;

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

fn unary(op: u32, x: f32, alpha: f32) -> f32 {
    switch op {
        case U_RELU: { return max(x, 0.0); }
        case U_LEAKY_RELU: { return select(alpha * x, x, x > 0.0); }
        case U_GELU_TANH: { return x * sigmoid(2.0 * gelu_tanh_arg(x)); }
        case U_GELU_ERF: { return x * phi_cdf(x); }
        case U_SIGMOID: { return sigmoid(x); }
        case U_TANH: { return tanh_safe(x); }
        case U_SILU: { return x * sigmoid(x); }
        case U_EXP: { return exp(x); }
        case U_LOG: { return log(x); }
        case U_SQRT: { return sqrt(x); }
        case U_SCALE: { return alpha * x; }
        default: { return x; }
    }
}

// d unary(op, x) / dx. ReLU's derivative at 0 is 0, as in PyTorch. Sigmoid-family derivatives
// use sigmoid(-x) for 1 - sigmoid(x), which does not cancel when the function saturates.
fn unary_grad(op: u32, x: f32, alpha: f32) -> f32 {
    switch op {
        case U_RELU: { return select(0.0, 1.0, x > 0.0); }
        case U_LEAKY_RELU: { return select(alpha, 1.0, x > 0.0); }
        case U_GELU_TANH: {
            let s = sigmoid(2.0 * gelu_tanh_arg(x));
            return s + x * 2.0 * s * sigmoid(-2.0 * gelu_tanh_arg(x)) * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_C * x * x);
        }
        case U_GELU_ERF: { return phi_cdf(x) + x * INV_SQRT_2PI * exp(-0.5 * x * x); }
        case U_SIGMOID: { return sigmoid(x) * sigmoid(-x); }
        case U_TANH: { return 4.0 * sigmoid(2.0 * x) * sigmoid(-2.0 * x); }
        case U_SILU: { return sigmoid(x) * (1.0 + x * sigmoid(-x)); }
        case U_EXP: { return exp(x); }
        case U_LOG: { return 1.0 / x; }
        case U_SQRT: { return 0.5 / sqrt(x); }
        case U_SCALE: { return alpha; }
        default: { return 1.0; }
    }
}
