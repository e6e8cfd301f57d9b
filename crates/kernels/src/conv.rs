//! 2-D convolution by im2col + matmul, and its two gradients.
//! Shader: `shaders/conv.wgsl` (im2col, col2im); the products run on `matmul`, the
//! layout changes on `layout`.

use crate::error::{Result, check_len, shape_error};
use crate::gpu::{Access, Dispatch, Gpu, Kernel, Shader};
use crate::layout::{StridedCopy, strided_copy};
use crate::matmul::{Bias, Matmul, MatrixView, matmul};
use crate::reduce::{ReduceOp, Reduction, reduce};
use crate::tensor::GpuTensor;

pub(crate) static SHADER: Shader = crate::shader!("conv", "conv.wgsl");

/// Shapes of one convolution: input [batch, in_channels, height, width], weight
/// [out_channels, in_channels, kh, kw], output [batch, out_channels, out_height, out_width].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2d {
    /// Images.
    pub batch: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Input height.
    pub height: usize,
    /// Input width.
    pub width: usize,
    /// Output channels (filters).
    pub out_channels: usize,
    /// (kh, kw)
    pub kernel: (usize, usize),
    /// (vertical, horizontal)
    pub stride: (usize, usize),
    /// Zero rows and columns added on each side: (vertical, horizontal).
    pub padding: (usize, usize),
    /// Spacing of the kernel's taps: (vertical, horizontal).
    pub dilation: (usize, usize),
}

impl Conv2d {
    /// Output height.
    pub fn out_height(&self) -> usize {
        out_size(self.height, self.kernel.0, self.stride.0, self.padding.0, self.dilation.0)
    }

    /// Output width.
    pub fn out_width(&self) -> usize {
        out_size(self.width, self.kernel.1, self.stride.1, self.padding.1, self.dilation.1)
    }

    /// Rows of the column matrix: in_channels * kh * kw.
    pub fn col_rows(&self) -> usize {
        self.in_channels * self.kernel.0 * self.kernel.1
    }

    /// Columns of the column matrix: batch * out_height * out_width.
    pub fn col_cols(&self) -> usize {
        self.batch * self.out_height() * self.out_width()
    }

    /// Elements of the input.
    pub fn input_len(&self) -> usize {
        self.batch * self.in_channels * self.height * self.width
    }

    /// Elements of the weight.
    pub fn weight_len(&self) -> usize {
        self.out_channels * self.col_rows()
    }

    /// Elements of the output.
    pub fn output_len(&self) -> usize {
        self.out_channels * self.col_cols()
    }

    /// Multiply-adds of the forward, counted twice.
    pub fn flops_forward(&self) -> f64 {
        2.0 * (self.out_channels * self.col_rows() * self.col_cols()) as f64
    }

    /// Checks the geometry, and that every tensor it implies is addressable (at most
    /// [`MAX_ELEMENTS`]).
    pub fn validate(&self) -> Result<()> {
        let (kh, kw) = self.kernel;
        let (dh, dw) = self.dilation;
        // Wide arithmetic: sizes from a config may be absurd, and must be refused, not overflow.
        let w = |v: usize| v as u128;
        let fits = |size: usize, k: usize, pad: usize, d: usize| w(size) + 2 * w(pad) > w(d) * w(k.saturating_sub(1));
        if kh == 0 || kw == 0 || self.stride.0 == 0 || self.stride.1 == 0 || dh == 0 || dw == 0 {
            return Err(shape_error(
                "conv2d",
                format!(
                    "kernel {:?}, stride {:?} and dilation {:?} must be positive",
                    self.kernel, self.stride, self.dilation
                ),
            ));
        }
        if !fits(self.height, kh, self.padding.0, dh) || !fits(self.width, kw, self.padding.1, dw) {
            return Err(shape_error(
                "conv2d",
                format!(
                    "a {}x{} input with padding {:?} is smaller than the {}x{} kernel dilated by {:?}",
                    self.height, self.width, self.padding, kh, kw, self.dilation
                ),
            ));
        }
        let product = |sizes: &[usize]| sizes.iter().fold(1u128, |n, &d| n.saturating_mul(w(d)));
        let (rows, cols) =
            (product(&[self.in_channels, kh, kw]), product(&[self.batch, self.out_height(), self.out_width()]));
        let largest = [
            w(self.out_channels).saturating_mul(rows),
            rows.saturating_mul(cols),
            w(self.out_channels).saturating_mul(cols),
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        if largest > MAX_ELEMENTS {
            return Err(shape_error(
                "conv2d",
                format!("its weight, columns or output would hold {largest} elements, more than any memory"),
            ));
        }
        Ok(())
    }

    /// The output [OC, N*OH*OW] of W . col, permuted to NCHW.
    pub fn output_to_nchw(&self) -> StridedCopy {
        StridedCopy::permute(&[self.out_channels, self.batch, self.out_height() * self.out_width()], &[1, 0, 2])
            .unwrap()
    }

    /// dY [N, OC, OH*OW] permuted to [OC, N*OH*OW].
    pub fn grad_from_nchw(&self) -> StridedCopy {
        StridedCopy::permute(&[self.batch, self.out_channels, self.out_height() * self.out_width()], &[1, 0, 2])
            .unwrap()
    }
}

fn out_size(size: usize, k: usize, stride: usize, pad: usize, dilation: usize) -> usize {
    (size + 2 * pad - dilation * (k - 1) - 1) / stride + 1
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params([u32; 16]);

fn params(c: &Conv2d) -> Params {
    let v = [
        c.batch,
        c.in_channels,
        c.height,
        c.width,
        c.kernel.0,
        c.kernel.1,
        c.stride.0,
        c.stride.1,
        c.padding.0,
        c.padding.1,
        c.dilation.0,
        c.dilation.1,
        c.out_height(),
        c.out_width(),
        0,
        0,
    ];
    Params(v.map(|x| x as u32))
}

static IM2COL: Kernel = Kernel { shader: &SHADER, entry: "im2col", bindings: &[Access::Read, Access::ReadWrite] };
static COL2IM: Kernel = Kernel { shader: &SHADER, entry: "col2im", bindings: &[Access::Read, Access::ReadWrite] };

/// col [C*KH*KW, N*OH*OW] = the receptive fields of x.
pub fn im2col(gpu: &Gpu, conv: &Conv2d, x: &GpuTensor, col: &GpuTensor) -> Result<Dispatch> {
    conv.validate()?;
    check_len("im2col", "x", x.len(), conv.input_len())?;
    check_len("im2col", "col", col.len(), conv.col_rows() * conv.col_cols())?;
    gpu.dispatch_linear(&IM2COL, &[], &params(conv), &[x, col], conv.col_rows() * conv.col_cols())
}

/// dx = the adjoint of im2col applied to dcol: each input pixel sums the entries that read it.
pub fn col2im(gpu: &Gpu, conv: &Conv2d, dcol: &GpuTensor, dx: &GpuTensor) -> Result<Dispatch> {
    conv.validate()?;
    check_len("col2im", "col", dcol.len(), conv.col_rows() * conv.col_cols())?;
    check_len("col2im", "dx", dx.len(), conv.input_len())?;
    gpu.dispatch_linear(&COL2IM, &[], &params(conv), &[dcol, dx], conv.input_len())
}

/// y = conv(x, w) + bias as im2col, W . col into `tmp` [OC, N*OH*OW], and a permute to NCHW.
/// `col` keeps the columns for the weight gradient.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    gpu: &Gpu,
    conv: &Conv2d,
    x: &GpuTensor,
    w: &GpuTensor,
    bias: Option<&GpuTensor>,
    col: &GpuTensor,
    tmp: &GpuTensor,
    y: &GpuTensor,
) -> Result<Vec<Dispatch>> {
    conv.validate()?;
    let mut product = Matmul::new(conv.out_channels, conv.col_cols(), conv.col_rows());
    product.bias = if bias.is_some() { Bias::PerRow } else { Bias::None };
    let mut out = vec![im2col(gpu, conv, x, col)?];
    out.extend(matmul(gpu, &product, w, col, bias, tmp)?);
    out.push(strided_copy(gpu, &conv.output_to_nchw(), tmp, y)?);
    Ok(out)
}

/// dw = dY' . colᵀ and dbias = row sums of dY', where dY' [OC, N*OH*OW] is dy permuted into
/// `dyt` (which [`backward_input`] then reads).
pub fn backward_weight(
    gpu: &Gpu,
    conv: &Conv2d,
    dy: &GpuTensor,
    col: &GpuTensor,
    dyt: &GpuTensor,
    dw: &GpuTensor,
    dbias: Option<&GpuTensor>,
) -> Result<Vec<Dispatch>> {
    conv.validate()?;
    let product = Matmul::new(conv.out_channels, conv.col_rows(), conv.col_cols()).transpose_b();
    let mut out = vec![strided_copy(gpu, &conv.grad_from_nchw(), dy, dyt)?];
    out.extend(matmul(gpu, &product, dyt, col, None, dw)?);
    if let Some(dbias) = dbias {
        let rows = Reduction { outer: conv.out_channels, axis: conv.col_cols(), inner: 1 };
        out.push(reduce(gpu, ReduceOp::Sum, &rows, dyt, dbias)?);
    }
    Ok(out)
}

/// dx = col2im(Wᵀ . dY'), with dY' from [`backward_weight`] and `dcol` as scratch.
pub fn backward_input(
    gpu: &Gpu,
    conv: &Conv2d,
    w: &GpuTensor,
    dyt: &GpuTensor,
    dcol: &GpuTensor,
    dx: &GpuTensor,
) -> Result<Vec<Dispatch>> {
    conv.validate()?;
    let mut product = Matmul::new(conv.col_rows(), conv.col_cols(), conv.out_channels);
    product.a = MatrixView::transposed(conv.col_rows(), conv.out_channels);
    let mut out = matmul(gpu, &product, w, dyt, None, dcol)?;
    out.push(col2im(gpu, conv, dcol, dx)?);
    Ok(out)
}

/// More elements than this (2^48, a petabyte of f32) is no tensor any machine holds.
pub const MAX_ELEMENTS: u128 = 1 << 48;
