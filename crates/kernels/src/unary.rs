//! The unary functions, one table row each: the enum variant (with its parameter and default,
//! if it has one), the name configs and fixtures use, whether it is a layer type, the domain
//! the tests draw inputs from, the f64 reference of the function and of its derivative (the CPU
//! executor and every test's ground truth), and the same two formulas in WGSL. The enum,
//! `apply`, `derivative` and the shaders' `unary`/`unary_grad` switches are generated from the
//! rows, so a new activation is one row here (and one line in `scripts/torch_activations.py`,
//! whose fixture the tests hold every row to).
//!
//! In the WGSL formulas the input is `x` and the parameter `alpha`; in the f64 ones the input
//! is the closure's argument and the parameter its own name. Helpers live in
//! `shaders/activation.wgsl` and `cpu/activation.rs`, each beside its twin.

use crate::cpu::activation::{exp, gelu_erf, gelu_erf_derivative, gelu_tanh, gelu_tanh_derivative, sigmoid, tanh};

/// What one row declares, for code that lists the functions (config layer types, tests).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnaryRow {
    /// The function's name (a config's layer type, where it is one).
    pub name: &'static str,
    /// The row's doc comment: what the function is.
    pub doc: &'static str,
    /// The function with its default parameter.
    pub op: Unary,
    /// The parameter's name (a layer's config key), if it has one.
    pub parameter: Option<&'static str>,
    /// Whether configs may use it as a layer (`{ type = "relu" }`).
    pub layer: bool,
    /// Where the tests draw inputs (the function's domain, or where it is interesting).
    pub domain: (f64, f64),
}

macro_rules! unary_functions {
    ($(
        $(#[doc = $doc:literal])*
        $variant:ident $(($param:ident = $default:literal))? = $name:literal, layer: $layer:literal,
            on ($lo:literal, $hi:literal), |$x:ident| $f:expr, |$dx:ident| $df:expr,
            wgsl $wf:literal, $wdf:literal;
    )*) => {
        /// A unary function (see the table in `unary.rs`).
        #[derive(Debug, Clone, Copy, PartialEq)]
        pub enum Unary {
            $($(#[doc = $doc])* $variant $((parameter_type!($param)))?,)*
        }

        /// The shaders' op codes: a row's position.
        enum Code {
            $($variant,)*
        }

        impl Unary {
            /// Every row, in table order.
            pub const ALL: &[UnaryRow] = &[$(UnaryRow {
                name: $name,
                doc: concat!($($doc),*),
                op: Unary::$variant $(($default))?,
                parameter: parameter_name!($($param)?),
                layer: $layer,
                domain: ($lo, $hi),
            },)*];

            pub(crate) fn code(self) -> u32 {
                match self {
                    $(Unary::$variant { .. } => Code::$variant as u32,)*
                }
            }

            /// The parameter (0 for a function without one).
            pub fn parameter(self) -> f32 {
                match self {
                    $(Unary::$variant $(($param))? => 0.0 $(+ $param)?,)*
                }
            }

            /// The same function with parameter `p` (itself when it has none).
            pub fn with_parameter(self, p: f32) -> Unary {
                match self {
                    $(Unary::$variant { .. } => Unary::$variant $((replace!($param, p)))?,)*
                }
            }

            // Inlined so that a loop over elements branches on `self` once, not per element.
            /// The function at x, in f64: the reference.
            #[inline(always)]
            pub fn apply(self, x: f64) -> f64 {
                match self {
                    $(Unary::$variant $(($param))? => {
                        $(let $param = $param as f64;)?
                        let $x = x;
                        $f
                    })*
                }
            }

            /// d apply(x) / dx. At a kink (ReLU's 0) the derivative is PyTorch's.
            #[inline(always)]
            #[allow(unused_variables)]
            pub fn derivative(self, x: f64) -> f64 {
                match self {
                    $(Unary::$variant $(($param))? => {
                        $(let $param = $param as f64;)?
                        let $dx = x;
                        $df
                    })*
                }
            }

            /// ys = f(xs) in f32, the same formulas on `cpu::vector`'s arithmetic: a loop per
            /// function, so that each vectorises.
            #[inline(always)]
            pub(crate) fn apply_f32(self, xs: &[f32], ys: &mut [f32]) {
                match self {
                    $(Unary::$variant $(($param))? => {
                        for (y, &$x) in ys.iter_mut().zip(xs) {
                            *y = $f;
                        }
                    })*
                }
            }

            /// dxs = dys · f'(xs) in f32, as [`Self::apply_f32`].
            #[inline(always)]
            #[allow(unused_variables)]
            pub(crate) fn derivative_f32(self, xs: &[f32], dys: &[f32], dxs: &mut [f32]) {
                match self {
                    $(Unary::$variant $(($param))? => {
                        for ((dx, &$dx), &dy) in dxs.iter_mut().zip(xs).zip(dys) {
                            *dx = dy * $df;
                        }
                    })*
                }
            }
        }

        /// WGSL `unary(op, x, alpha)` and `unary_grad(op, x, alpha)`, switching on the codes.
        pub(crate) fn wgsl() -> String {
            let cases = |formulas: &[&str]| -> String {
                formulas.iter().enumerate().map(|(code, f)| format!("        case {code}u: {{ return {f}; }}\n")).collect()
            };
            format!(
                "fn unary(op: u32, x: f32, alpha: f32) -> f32 {{\n    switch op {{\n{}        default: {{ return x; }}\n    }}\n}}\n\n\
                 fn unary_grad(op: u32, x: f32, alpha: f32) -> f32 {{\n    switch op {{\n{}        default: {{ return 1.0; }}\n    }}\n}}\n",
                cases(&[$($wf),*]),
                cases(&[$($wdf),*]),
            )
        }
    };
}

macro_rules! parameter_type {
    ($param:ident) => {
        f32
    };
}

macro_rules! parameter_name {
    () => {
        None
    };
    ($param:ident) => {
        Some(stringify!($param))
    };
}

macro_rules! replace {
    ($param:ident, $with:expr) => {
        $with
    };
}

unary_functions! {
    /// x
    Identity = "identity", layer: false, on (-6.0, 6.0), |x| x, |x| 1.0,
        wgsl "x", "1.0";
    /// max(x, 0)
    Relu = "relu", layer: true, on (-6.0, 6.0), |x| x.max(0.0), |x| if x > 0.0 { 1.0 } else { 0.0 },
        wgsl "max(x, 0.0)", "select(0.0, 1.0, x > 0.0)";
    /// max(x, 0) + slope * min(x, 0)
    LeakyRelu(slope = 0.01) = "leaky_relu", layer: true, on (-6.0, 6.0),
        |x| if x > 0.0 { x } else { slope * x }, |x| if x > 0.0 { 1.0 } else { slope },
        wgsl "select(alpha * x, x, x > 0.0)", "select(alpha, 1.0, x > 0.0)";
    /// GELU's tanh approximation (torch's `approximate="tanh"`).
    GeluTanh = "gelu_tanh", layer: true, on (-6.0, 6.0), |x| gelu_tanh(x), |x| gelu_tanh_derivative(x),
        wgsl "gelu_tanh(x)", "gelu_tanh_grad(x)";
    /// x Φ(x), the exact GELU.
    GeluErf = "gelu", layer: true, on (-6.0, 6.0), |x| gelu_erf(x), |x| gelu_erf_derivative(x),
        wgsl "gelu_erf(x)", "gelu_erf_grad(x)";
    /// 1 / (1 + exp(-x))
    Sigmoid = "sigmoid", layer: true, on (-6.0, 6.0), |x| sigmoid(x), |x| sigmoid(x) * sigmoid(-x),
        wgsl "sigmoid(x)", "sigmoid(x) * sigmoid(-x)";
    /// tanh(x)
    Tanh = "tanh", layer: true, on (-6.0, 6.0), |x| tanh(x), |x| 4.0 * sigmoid(2.0 * x) * sigmoid(-2.0 * x),
        wgsl "tanh_safe(x)", "4.0 * sigmoid(2.0 * x) * sigmoid(-2.0 * x)";
    /// x sigmoid(x) (swish).
    Silu = "silu", layer: true, on (-6.0, 6.0), |x| x * sigmoid(x), |x| sigmoid(x) * (1.0 + x * sigmoid(-x)),
        wgsl "x * sigmoid(x)", "sigmoid(x) * (1.0 + x * sigmoid(-x))";
    /// ln(1 + exp(x)), written so that it neither overflows nor cancels.
    Softplus = "softplus", layer: true, on (-6.0, 6.0), |x| x.max(0.0) + (-x.abs()).exp().ln_1p(), |x| sigmoid(x),
        wgsl "max(x, 0.0) + log(1.0 + exp(-abs(x)))", "sigmoid(x)";
    /// x for x > 0, else alpha (exp(x) - 1).
    Elu(alpha = 1.0) = "elu", layer: true, on (-6.0, 6.0),
        |x| if x > 0.0 { x } else { alpha * x.exp_m1() }, |x| if x > 0.0 { 1.0 } else { alpha * exp(x) },
        wgsl "select(alpha * (exp(x) - 1.0), x, x > 0.0)", "select(alpha * exp(x), 1.0, x > 0.0)";
    /// exp(x)
    Exp = "exp", layer: false, on (-6.0, 6.0), |x| exp(x), |x| exp(x),
        wgsl "exp(x)", "exp(x)";
    /// ln(x)
    Log = "log", layer: false, on (0.05, 8.0), |x| x.ln(), |x| 1.0 / x,
        wgsl "log(x)", "1.0 / x";
    /// sqrt(x)
    Sqrt = "sqrt", layer: false, on (0.05, 8.0), |x| x.sqrt(), |x| 0.5 / x.sqrt(),
        wgsl "sqrt(x)", "0.5 / sqrt(x)";
    /// factor * x
    Scale(factor = 1.0) = "scale", layer: false, on (-6.0, 6.0), |x| factor * x, |x| factor,
        wgsl "alpha * x", "alpha";
}

impl Unary {
    /// The row of `self`'s function.
    pub fn row(self) -> &'static UnaryRow {
        &Unary::ALL[self.code() as usize]
    }

    /// Its name, as the table declares it.
    pub fn name(self) -> &'static str {
        self.row().name
    }

    /// The rows configs may use as layers.
    pub fn layers() -> impl Iterator<Item = &'static UnaryRow> {
        Unary::ALL.iter().filter(|row| row.layer)
    }

    /// The layer row named `name`.
    pub fn layer(name: &str) -> Option<&'static UnaryRow> {
        Unary::layers().find(|row| row.name == name)
    }

    /// The function a config or fixture names, with its default parameter.
    pub fn named(name: &str) -> Option<Unary> {
        Unary::ALL.iter().find(|r| r.name == name).map(|r| r.op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_codes_agree() {
        for (code, row) in Unary::ALL.iter().enumerate() {
            assert_eq!(row.op.code() as usize, code);
            assert_eq!(Unary::named(row.name), Some(row.op));
            assert_eq!(row.op.with_parameter(0.25).parameter(), if row.parameter.is_some() { 0.25 } else { 0.0 });
        }
    }
}
