//! Reductions along one axis: sum, mean, max, argmax. Shader: `shaders/reduce.wgsl`.

use crate::error::{Result, check_len};
use crate::gpu::{Access, Dispatch, Gpu, Kernel, Shader};
use crate::tensor::GpuTensor;

pub(crate) static SHADER: Shader = crate::shader!("reduce", "reduce.wgsl");

/// A tensor seen as [outer, axis, inner], reduced along the middle axis to [outer, inner].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reduction {
    /// Product of the axes before the reduced one.
    pub outer: usize,
    /// The reduced axis's length.
    pub axis: usize,
    /// Product of the axes after it.
    pub inner: usize,
}

impl Reduction {
    /// Reduce axis `axis` of `shape`.
    pub fn along(shape: &[usize], axis: usize) -> Reduction {
        Reduction {
            outer: shape[..axis].iter().product(),
            axis: shape[axis],
            inner: shape[axis + 1..].iter().product(),
        }
    }

    /// Elements of the input.
    pub fn input_len(&self) -> usize {
        self.outer * self.axis * self.inner
    }

    /// Elements of the output.
    pub fn output_len(&self) -> usize {
        self.outer * self.inner
    }
}

/// How a reduction combines its axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    /// The sum.
    Sum,
    /// The mean.
    Mean,
    /// The largest.
    Max,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    outer: u32,
    axis: u32,
    inner: u32,
    _pad: u32,
}

static REDUCE: Kernel = Kernel { shader: &SHADER, entry: "reduce", bindings: &[Access::Read, Access::ReadWrite] };
static ARGMAX: Kernel = Kernel { shader: &SHADER, entry: "argmax", bindings: &[Access::Read, Access::ReadWrite] };

fn params(r: &Reduction) -> Params {
    Params { outer: r.outer as u32, axis: r.axis as u32, inner: r.inner as u32, _pad: 0 }
}

fn check(gpu: &Gpu, r: &Reduction, x: &GpuTensor, y: &GpuTensor) -> Result<()> {
    gpu.check_loop_budget("reduce", r.axis as u64, || format!("an axis of {}", r.axis))?;
    check_len("reduce", "x", x.len(), r.input_len())?;
    check_len("reduce", "y", y.len(), r.output_len())
}

/// y = op over the axis of x (Max of an empty axis is undefined; callers never reduce one).
pub fn reduce(gpu: &Gpu, op: ReduceOp, r: &Reduction, x: &GpuTensor, y: &GpuTensor) -> Result<Dispatch> {
    check(gpu, r, x, y)?;
    gpu.dispatch_linear(&REDUCE, &[("OP", op as u32 as f64)], &params(r), &[x, y], r.output_len())
}

/// y (u32) = index of the first maximum along the axis of x.
pub fn argmax(gpu: &Gpu, r: &Reduction, x: &GpuTensor, y: &GpuTensor) -> Result<Dispatch> {
    check(gpu, r, x, y)?;
    gpu.dispatch_linear(&ARGMAX, &[], &params(r), &[x, y], r.output_len())
}
