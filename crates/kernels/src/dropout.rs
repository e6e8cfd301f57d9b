//! Inverted dropout from a counter-based RNG (Philox4x32-10). Shader: `shaders/dropout.wgsl`.

use crate::error::{Result, check_len, shape_error};
use crate::gpu::{Access, Dispatch, Gpu, Kernel, Shader};
use crate::tensor::GpuTensor;

pub(crate) static SHADER: Shader = crate::shader!("dropout", "dropout.wgsl");

/// Drop each of `n` elements with probability `p`, scaling survivors by 1 / (1 - p). The mask
/// is a function of (`seed`, `stream`, element index) only: use a fresh `stream` per step and
/// layer, and the same one for the backward pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dropout {
    /// Elements.
    pub n: usize,
    /// The probability of zeroing an element.
    pub p: f32,
    /// The model's seed.
    pub seed: u64,
    /// Which mask of the seed's: one per step and layer.
    pub stream: u64,
}

impl Dropout {
    pub(crate) fn scale(&self) -> f32 {
        if self.p >= 1.0 { 0.0 } else { 1.0 / (1.0 - self.p) }
    }

    fn params(&self) -> Params {
        Params {
            n: self.n as u32,
            p: self.p,
            scale: self.scale(),
            seed: [self.seed as u32, (self.seed >> 32) as u32],
            stream: [self.stream as u32, (self.stream >> 32) as u32],
            _pad: 0,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    p: f32,
    scale: f32,
    seed: [u32; 2],
    stream: [u32; 2],
    _pad: u32,
}

static DROPOUT: Kernel = Kernel { shader: &SHADER, entry: "dropout", bindings: &[Access::Read, Access::ReadWrite] };

/// y = dropout(x). Backward is the same call on (dy, dx) with the same seed and stream.
pub fn dropout(gpu: &Gpu, d: &Dropout, x: &GpuTensor, y: &GpuTensor) -> Result<Dispatch> {
    if !(0.0..=1.0).contains(&d.p) {
        return Err(shape_error("dropout", format!("probability {} is outside [0, 1]", d.p)));
    }
    check_len("dropout", "x", x.len(), d.n)?;
    check_len("dropout", "y", y.len(), d.n)?;
    gpu.dispatch_linear(&DROPOUT, &[], &d.params(), &[x, y], d.n)
}

/// Points a prepared dropout at a new stream (the next step), keeping its tensors.
pub fn set_stream(gpu: &Gpu, dispatch: &Dispatch, d: &Dropout) {
    dispatch.set_params(gpu, &d.params());
}
