//! Max and average pooling over NCHW. Shader: `shaders/pool.wgsl`.

use crate::error::{Result, check_len, shape_error};
use crate::gpu::{Access, Dispatch, Gpu, Kernel, Shader};
use crate::tensor::GpuTensor;

pub(crate) static SHADER: Shader = crate::shader!("pool", "pool.wgsl");

use Access::{Read, ReadWrite};

/// A pooling window over `planes` = N * C planes of `height` x `width`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool2d {
    /// Planes pooled: N · C.
    pub planes: usize,
    /// A plane's height.
    pub height: usize,
    /// A plane's width.
    pub width: usize,
    /// The window: (height, width).
    pub kernel: (usize, usize),
    /// (vertical, horizontal)
    pub stride: (usize, usize),
    /// Padding added on each side: (vertical, horizontal).
    pub padding: (usize, usize),
    /// Average pooling divides by the whole window, padding included (PyTorch's default).
    pub count_include_pad: bool,
}

impl Pool2d {
    /// Global average pooling of each plane to one value.
    pub fn global(planes: usize, height: usize, width: usize) -> Pool2d {
        Pool2d {
            planes,
            height,
            width,
            kernel: (height, width),
            stride: (1, 1),
            padding: (0, 0),
            count_include_pad: true,
        }
    }

    /// Output height.
    pub fn out_height(&self) -> usize {
        (self.height + 2 * self.padding.0 - self.kernel.0) / self.stride.0 + 1
    }

    /// Output width.
    pub fn out_width(&self) -> usize {
        (self.width + 2 * self.padding.1 - self.kernel.1) / self.stride.1 + 1
    }

    /// Elements of the input.
    pub fn input_len(&self) -> usize {
        self.planes * self.height * self.width
    }

    /// Elements of the output.
    pub fn output_len(&self) -> usize {
        self.planes * self.out_height() * self.out_width()
    }

    /// Fails unless the window and stride are positive, the padding at most half the window, and the padded plane holds a window.
    pub fn validate(&self) -> Result<()> {
        let (kh, kw) = self.kernel;
        if kh == 0 || kw == 0 || self.stride.0 == 0 || self.stride.1 == 0 {
            return Err(shape_error(
                "pool2d",
                format!("kernel {:?} and stride {:?} must be positive", self.kernel, self.stride),
            ));
        }
        if 2 * self.padding.0 > kh || 2 * self.padding.1 > kw {
            return Err(shape_error(
                "pool2d",
                format!("padding {:?} must be at most half the kernel {:?}", self.padding, self.kernel),
            ));
        }
        if self.height + 2 * self.padding.0 < kh || self.width + 2 * self.padding.1 < kw {
            return Err(shape_error(
                "pool2d",
                format!("a {}x{} input is smaller than the {kh}x{kw} window", self.height, self.width),
            ));
        }
        Ok(())
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params([u32; 12]);

fn params(p: &Pool2d) -> Params {
    let v = [
        p.planes,
        p.height,
        p.width,
        p.out_height(),
        p.out_width(),
        p.kernel.0,
        p.kernel.1,
        p.stride.0,
        p.stride.1,
        p.padding.0,
        p.padding.1,
        p.count_include_pad as usize,
    ];
    Params(v.map(|x| x as u32))
}

static MAX_FORWARD: Kernel =
    Kernel { shader: &SHADER, entry: "max_pool_forward", bindings: &[Read, ReadWrite, ReadWrite] };
static MAX_BACKWARD: Kernel =
    Kernel { shader: &SHADER, entry: "max_pool_backward", bindings: &[Read, Read, ReadWrite] };
static AVG_FORWARD: Kernel = Kernel { shader: &SHADER, entry: "avg_pool_forward", bindings: &[Read, ReadWrite] };
static AVG_BACKWARD: Kernel = Kernel { shader: &SHADER, entry: "avg_pool_backward", bindings: &[Read, ReadWrite] };

fn check(gpu: &Gpu, op: &'static str, p: &Pool2d, input: &GpuTensor, output: &GpuTensor) -> Result<()> {
    p.validate()?;
    let window = (p.kernel.0 * (p.kernel.1 + 1)) as u64;
    gpu.check_loop_budget(op, window, || format!("a {}x{} window", p.kernel.0, p.kernel.1))?;
    check_len(op, "input", input.len(), p.input_len())?;
    check_len(op, "output", output.len(), p.output_len())
}

/// y = max over each window; `argmax` (u32) keeps the winner's index within its plane.
pub fn max_pool(gpu: &Gpu, p: &Pool2d, x: &GpuTensor, y: &GpuTensor, argmax: &GpuTensor) -> Result<Dispatch> {
    check(gpu, "max_pool", p, x, y)?;
    check_len("max_pool", "argmax", argmax.len(), p.output_len())?;
    gpu.dispatch_linear(&MAX_FORWARD, &[], &params(p), &[x, y, argmax], p.output_len())
}

/// The gradient of max pooling: each output's gradient to its window's winner (`argmax`).
pub fn max_pool_backward(
    gpu: &Gpu,
    p: &Pool2d,
    dy: &GpuTensor,
    argmax: &GpuTensor,
    dx: &GpuTensor,
) -> Result<Dispatch> {
    check(gpu, "max_pool_backward", p, dx, dy)?;
    check_len("max_pool_backward", "argmax", argmax.len(), p.output_len())?;
    gpu.dispatch_linear(&MAX_BACKWARD, &[], &params(p), &[dy, argmax, dx], p.input_len())
}

/// Average pooling: each window's mean.
pub fn avg_pool(gpu: &Gpu, p: &Pool2d, x: &GpuTensor, y: &GpuTensor) -> Result<Dispatch> {
    check(gpu, "avg_pool", p, x, y)?;
    gpu.dispatch_linear(&AVG_FORWARD, &[], &params(p), &[x, y], p.output_len())
}

/// The gradient of [`avg_pool`].
pub fn avg_pool_backward(gpu: &Gpu, p: &Pool2d, dy: &GpuTensor, dx: &GpuTensor) -> Result<Dispatch> {
    check(gpu, "avg_pool_backward", p, dx, dy)?;
    gpu.dispatch_linear(&AVG_BACKWARD, &[], &params(p), &[dy, dx], p.input_len())
}
