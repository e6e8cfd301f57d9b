//! Elementwise kernels: unary functions and their backward, and broadcasting binary ops.
//! Shader: `shaders/elementwise.wgsl` (with the unary functions of `unary.rs`).

use crate::error::{Result, check_len, shape_error};
use crate::gpu::{Access, Dispatch, Gpu, Kernel, Shader};
use crate::shape::{contiguous_strides, vec8};
use crate::tensor::GpuTensor;
use crate::unary::Unary;

pub(crate) static SHADER: Shader = crate::shader!("elementwise", unary, "elementwise.wgsl");

/// A binary operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    /// a + b
    Add,
    /// a - b
    Sub,
    /// a · b
    Mul,
    /// a / b
    Div,
}

impl Binary {
    fn code(self) -> u32 {
        self as u32
    }
}

/// Broadcasting of two shapes (NumPy rules, at most 8 axes): the output shape and the strides
/// with which each input is read (0 on broadcast axes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broadcast {
    /// The output's shape.
    pub out: Vec<usize>,
    /// A's stride along each output axis.
    pub a_strides: Vec<usize>,
    /// B's stride along each output axis.
    pub b_strides: Vec<usize>,
}

impl Broadcast {
    /// The broadcast of shapes `a` and `b`, or what keeps them from broadcasting.
    pub fn new(a: &[usize], b: &[usize]) -> Result<Broadcast> {
        let rank = a.len().max(b.len());
        if rank > 8 {
            return Err(shape_error("broadcast", format!("{a:?} and {b:?}: at most 8 axes")));
        }
        let pad =
            |s: &[usize]| -> Vec<usize> { std::iter::repeat_n(1, rank - s.len()).chain(s.iter().copied()).collect() };
        let (a_pad, b_pad) = (pad(a), pad(b));
        let mut out = Vec::with_capacity(rank);
        for (&x, &y) in a_pad.iter().zip(&b_pad) {
            if x != y && x != 1 && y != 1 {
                return Err(shape_error("broadcast", format!("shapes {a:?} and {b:?} do not broadcast")));
            }
            out.push(x.max(y));
        }
        let strides = |s: &[usize]| -> Vec<usize> {
            let contiguous = contiguous_strides(s);
            s.iter().zip(contiguous).map(|(&d, st)| if d == 1 { 0 } else { st }).collect()
        };
        Ok(Broadcast { a_strides: strides(&a_pad), b_strides: strides(&b_pad), out })
    }

    /// Elements of the output.
    pub fn len(&self) -> usize {
        self.out.iter().product()
    }

    /// Whether the output has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The largest element index each input is read at, plus one.
    fn extent(&self, strides: &[usize]) -> usize {
        if self.is_empty() {
            return 0;
        }
        1 + self.out.iter().zip(strides).map(|(&d, &s)| (d - 1) * s).sum::<usize>()
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    rank: u32,
    alpha: f32,
    _pad: u32,
    shape: [[u32; 4]; 2],
    a_strides: [[u32; 4]; 2],
    b_strides: [[u32; 4]; 2],
}

impl Params {
    fn flat(n: usize, alpha: f32) -> Params {
        Params {
            n: n as u32,
            rank: 0,
            alpha,
            _pad: 0,
            shape: [[0; 4]; 2],
            a_strides: [[0; 4]; 2],
            b_strides: [[0; 4]; 2],
        }
    }
}

static UNARY: Kernel = Kernel { shader: &SHADER, entry: "unary_forward", bindings: &[Access::Read, Access::ReadWrite] };
static UNARY_BACKWARD: Kernel =
    Kernel { shader: &SHADER, entry: "unary_backward", bindings: &[Access::Read, Access::Read, Access::ReadWrite] };
static BINARY: Kernel =
    Kernel { shader: &SHADER, entry: "binary", bindings: &[Access::Read, Access::Read, Access::ReadWrite] };

fn constants(op: u32) -> [(&'static str, f64); 1] {
    [("OP", op as f64)]
}

/// y[i] = op(x[i]) for i < n.
pub fn unary(gpu: &Gpu, op: Unary, x: &GpuTensor, y: &GpuTensor, n: usize) -> Result<Dispatch> {
    check_len("unary", "x", x.len(), n)?;
    check_len("unary", "y", y.len(), n)?;
    gpu.dispatch_linear(&UNARY, &constants(op.code()), &Params::flat(n, op.parameter()), &[x, y], n)
}

/// dx[i] = dy[i] * op'(x[i]) for i < n.
pub fn unary_backward(
    gpu: &Gpu,
    op: Unary,
    x: &GpuTensor,
    dy: &GpuTensor,
    dx: &GpuTensor,
    n: usize,
) -> Result<Dispatch> {
    for (name, t) in [("x", x), ("dy", dy), ("dx", dx)] {
        check_len("unary_backward", name, t.len(), n)?;
    }
    gpu.dispatch_linear(&UNARY_BACKWARD, &constants(op.code()), &Params::flat(n, op.parameter()), &[x, dy, dx], n)
}

/// out = a (op) b, broadcast as `shape` says; `out` is contiguous with shape `shape.out`.
pub fn binary(
    gpu: &Gpu,
    op: Binary,
    shape: &Broadcast,
    a: &GpuTensor,
    b: &GpuTensor,
    out: &GpuTensor,
) -> Result<Dispatch> {
    check_len("binary", "a", a.len(), shape.extent(&shape.a_strides))?;
    check_len("binary", "b", b.len(), shape.extent(&shape.b_strides))?;
    check_len("binary", "out", out.len(), shape.len())?;
    let params = Params {
        n: shape.len() as u32,
        rank: shape.out.len() as u32,
        alpha: 0.0,
        _pad: 0,
        shape: vec8(&shape.out),
        a_strides: vec8(&shape.a_strides),
        b_strides: vec8(&shape.b_strides),
    };
    gpu.dispatch_linear(&BINARY, &constants(op.code()), &params, &[a, b, out], shape.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_follows_numpy_rules() {
        let b = Broadcast::new(&[4, 1, 3], &[5, 1]).unwrap();
        assert_eq!(b.out, vec![4, 5, 3]);
        assert_eq!(b.a_strides, vec![3, 0, 1]);
        assert_eq!(b.b_strides, vec![0, 1, 0]);
        assert!(Broadcast::new(&[2, 3], &[4, 3]).is_err());
    }
}
