//! 2-D convolution by im2col and matrix products, and its backward as one node. The GPU forms
//! the whole batch's columns and multiplies once; the CPU goes image by image
//! (`kernels::cpu::conv`). Both take their workspace as the node's outputs.

use kernels::{Conv2d as ConvShape, Dispatch, Gpu, conv, cpu};

use super::{CpuCall, GpuCall, Operation, describe, no_second_derivative};
use crate::error::Result;
use crate::ir::{DType, Graph, NodeId, TensorId, TensorType};

/// Stride, padding and dilation of a convolution, (height, width) each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    /// (vertical, horizontal)
    pub stride: (usize, usize),
    /// Zero rows and columns added on each side.
    pub padding: (usize, usize),
    /// Spacing of the kernel's taps.
    pub dilation: (usize, usize),
}

impl ConvGeometry {
    /// The kernels crate's description of convolving `x` [N, C, H, W] by `w` [OC, C, KH, KW].
    fn shape(&self, x: &[usize], w: &[usize]) -> ConvShape {
        ConvShape {
            batch: x[0],
            in_channels: x[1],
            height: x[2],
            width: x[3],
            out_channels: w[0],
            kernel: (w[2], w[3]),
            stride: self.stride,
            padding: self.padding,
            dilation: self.dilation,
        }
    }
}

/// The convolution of x by w, checked: both 4-D, channels agreeing, a valid geometry.
fn check(geo: &ConvGeometry, x: &TensorType, w: &TensorType) -> Result<ConvShape, String> {
    let fits = x.shape.len() == 4 && w.shape.len() == 4 && x.shape[1] == w.shape[1];
    if !fits || x.dtype != DType::F32 || w.dtype != DType::F32 {
        return Err(format!("input {:?} and weight {:?} must be [N, C, H, W] and [OC, C, KH, KW]", x.shape, w.shape));
    }
    let c = geo.shape(&x.shape, &w.shape);
    c.validate().map_err(|e| e.to_string())?;
    Ok(c)
}

fn col_type(c: &ConvShape) -> TensorType {
    TensorType::f32(&[c.col_rows(), c.col_cols()])
}

/// The products of a forward: each output element is a dot of C·KH·KW pairs.
fn product_flops(c: &ConvShape) -> u64 {
    2 * (c.output_len() * c.col_rows()) as u64
}

/// Inputs [x [N, C, H, W], weight [OC, C, KH, KW]] and optionally bias [OC], added in the
/// product's epilogue. Outputs: y [N, OC, OH, OW], then the workspace: the columns
/// [C·KH·KW, N·OH·OW] and, on the GPU, the product [OC, N·OH·OW] before it is laid out as
/// NCHW (the CPU writes NCHW from its products).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2d(pub ConvGeometry);

impl Operation for Conv2d {
    fn name(&self) -> &'static str {
        "conv2d"
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        let (x, w, bias) = match inputs {
            [x, w] => (x, w, None),
            [x, w, b] => (x, w, Some(b)),
            _ => return Err(format!("takes x, weight and an optional bias, got {}", describe(inputs))),
        };
        let c = check(&self.0, x, w)?;
        if let Some(b) = bias.filter(|b| b.shape != [c.out_channels]) {
            return Err(format!("bias {:?} must be [{}] for weight {:?}", b.shape, c.out_channels, w.shape));
        }
        let y = TensorType::f32(&[c.batch, c.out_channels, c.out_height(), c.out_width()]);
        Ok(vec![y, col_type(&c), TensorType::f32(&[c.out_channels, c.col_cols()])])
    }

    fn backward(&self, g: &mut Graph, node: NodeId, grads: &[Option<TensorId>]) -> Result<Vec<Option<TensorId>>> {
        let inputs = g.node(node).inputs.clone();
        let Some(dy) = grads[0] else { return Ok(vec![None; inputs.len()]) };
        let op = Conv2dBackward { geo: self.0, bias: inputs.len() == 3 };
        let back = g.apply(op, &[inputs[0], inputs[1], dy])?;
        Ok((0..inputs.len()).map(|slot| Some(back.out(slot))).collect())
    }

    fn flops(&self, inputs: &[&TensorType], _: &[TensorType], _: &[bool]) -> u64 {
        product_flops(&self.0.shape(&inputs[0].shape, &inputs[1].shape))
    }

    fn cpu(&self, mut call: CpuCall) {
        let c = self.0.shape(call.shape(0), call.shape(1));
        let bias = call.inputs.get(2).copied();
        let [y, col, _] = &mut call.outputs[..] else { unreachable!("three outputs") };
        cpu::conv2d_forward(&c, call.inputs[0], call.inputs[1], bias, col, y);
    }

    fn gpu(&self, gpu: &Gpu, call: &GpuCall) -> kernels::Result<Vec<Dispatch>> {
        let c = self.0.shape(call.shape(0), call.shape(1));
        let [y, col, tmp] = &call.outputs[..] else { unreachable!("three outputs") };
        conv::forward(gpu, &c, &call.inputs[0], &call.inputs[1], call.inputs.get(2), col, tmp, y)
    }
}

/// Inputs [x, weight, dy]: every gradient of a convolution in one node. Outputs: dx (skipped
/// when nothing reads it, as for a network's input), dweight, dbias where the convolution has
/// a bias, then the workspace: the columns of x (which the input gradient reuses for its own
/// columns) and, on the GPU, dy laid out as [OC, N·OH·OW], whose buffer holds the CPU's
/// partial weight gradients instead. The columns are formed again here rather than kept from
/// the forward: they are C·KH·KW times the size of x, and keeping them from forward to
/// backward would hold that memory all step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dBackward {
    /// The forward's geometry.
    pub geo: ConvGeometry,
    /// Whether the forward had a bias (its gradient is an output).
    pub bias: bool,
}

impl Operation for Conv2dBackward {
    fn name(&self) -> &'static str {
        "conv2d_backward"
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        let [x, w, dy] = inputs else { return Err(format!("takes x, weight and dy, got {}", describe(inputs))) };
        let c = check(&self.geo, x, w)?;
        if dy.shape != [c.batch, c.out_channels, c.out_height(), c.out_width()] {
            return Err(format!("dy {:?} is not the shape of the convolution's output", dy.shape));
        }
        let mut out = vec![(*x).clone(), (*w).clone()];
        if self.bias {
            out.push(TensorType::f32(&[c.out_channels]));
        }
        out.extend([col_type(&c), TensorType::f32(&[c.out_channels, c.col_cols()])]);
        Ok(out)
    }

    fn backward(&self, g: &mut Graph, node: NodeId, _: &[Option<TensorId>]) -> Result<Vec<Option<TensorId>>> {
        Err(no_second_derivative(g, node))
    }

    /// The last workspace holds the CPU's partial weight gradients where they outgrow dy.
    fn storage_len(&self, outputs: &[TensorType], slot: usize) -> usize {
        let len = outputs[slot].len();
        if slot + 1 < outputs.len() {
            return len;
        }
        let c = self.geo.shape(&outputs[0].shape, &outputs[1].shape);
        len.max(cpu::backward_partials(&c))
    }

    // The weight and the input gradient are each a product the size of the forward's.
    fn flops(&self, inputs: &[&TensorType], _: &[TensorType], wanted: &[bool]) -> u64 {
        let c = self.geo.shape(&inputs[0].shape, &inputs[1].shape);
        let products = if wanted[0] { 2 } else { 1 };
        products * product_flops(&c) + if self.bias { c.output_len() as u64 } else { 0 }
    }

    fn cpu(&self, mut call: CpuCall) {
        let c = self.geo.shape(call.shape(0), call.shape(1));
        let (x, w, dy) = (call.inputs[0], call.inputs[1], call.inputs[2]);
        let (dx, dw, db, col, partials) = match &mut call.outputs[..] {
            [dx, dw, db, col, partials] => (dx, dw, Some(db), col, partials),
            [dx, dw, col, partials] => (dx, dw, None, col, partials),
            _ => unreachable!("outputs as the shape rule gave them"),
        };
        let dx = if call.wanted[0] { Some(&mut **dx) } else { None };
        cpu::conv2d_backward(&c, x, w, dy, col, partials, dx, dw, db.map(|d| &mut **d));
    }

    fn gpu(&self, gpu: &Gpu, call: &GpuCall) -> kernels::Result<Vec<Dispatch>> {
        let c = self.geo.shape(call.shape(0), call.shape(1));
        let (x, w, dy) = (&call.inputs[0], &call.inputs[1], &call.inputs[2]);
        let (dx, dw, db, col, dyt) = match &call.outputs[..] {
            [dx, dw, db, col, dyt] => (dx, dw, Some(db), col, dyt),
            [dx, dw, col, dyt] => (dx, dw, None, col, dyt),
            _ => unreachable!("outputs as the shape rule gave them"),
        };
        let mut d = vec![conv::im2col(gpu, &c, x, col)?];
        d.extend(conv::backward_weight(gpu, &c, dy, col, dyt, dw, db)?);
        if call.wanted[0] {
            d.extend(conv::backward_input(gpu, &c, w, dyt, col, dx)?);
        }
        Ok(d)
    }
}

impl Graph {
    /// Convolution of `x` [N, C, H, W] by `weight` [OC, C, KH, KW], plus `bias` [OC].
    pub fn conv2d(
        &mut self,
        x: TensorId,
        weight: TensorId,
        bias: Option<TensorId>,
        geo: ConvGeometry,
    ) -> Result<TensorId> {
        let inputs: Vec<TensorId> = [x, weight].into_iter().chain(bias).collect();
        self.apply1(Conv2d(geo), &inputs)
    }
}
