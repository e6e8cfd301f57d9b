//! Max and average pooling over 2-D windows, and their backward.

use kernels::{Dispatch, Gpu, Pool2d, cpu, pool};

use super::{CpuCall, GpuCall, Operation, describe, no_second_derivative, one_f32};
use crate::error::Result;
use crate::ir::{DType, Graph, NodeId, TensorId, TensorType};

/// Window, stride and padding of a pooling, (height, width) each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolGeometry {
    /// The window: (height, width).
    pub kernel: (usize, usize),
    /// (vertical, horizontal)
    pub stride: (usize, usize),
    /// Padding added on each side.
    pub padding: (usize, usize),
    /// Average pooling divides by the whole window, padding included (PyTorch's default).
    pub count_include_pad: bool,
}

impl PoolGeometry {
    /// One window over a whole `height` x `width` plane.
    pub fn global(height: usize, width: usize) -> Self {
        PoolGeometry { kernel: (height, width), stride: (height, width), padding: (0, 0), count_include_pad: true }
    }

    /// The kernels crate's description of pooling `x` [N, C, H, W].
    fn shape(&self, x: &[usize]) -> Pool2d {
        Pool2d {
            planes: x[0] * x[1],
            height: x[2],
            width: x[3],
            kernel: self.kernel,
            stride: self.stride,
            padding: self.padding,
            count_include_pad: self.count_include_pad,
        }
    }

    /// The output type of pooling `x`, checked.
    fn output(&self, x: &TensorType) -> Result<TensorType, String> {
        if x.shape.len() != 4 {
            return Err(format!("input {:?} must be [N, C, H, W]", x.shape));
        }
        let p = self.shape(&x.shape);
        p.validate().map_err(|e| e.to_string())?;
        Ok(TensorType::f32(&[x.shape[0], x.shape[1], p.out_height(), p.out_width()]))
    }

    fn window(&self) -> u64 {
        (self.kernel.0 * self.kernel.1) as u64
    }
}

/// Input [x [N, C, H, W]]. Outputs: the maxima, and the index of each window's winner
/// within its plane (u32), which the backward routes the gradient to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxPool2d(pub PoolGeometry);

impl Operation for MaxPool2d {
    fn name(&self) -> &'static str {
        "max_pool2d"
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        let y = self.0.output(one_f32(inputs)?)?;
        let winners = TensorType::u32(&y.shape);
        Ok(vec![y, winners])
    }

    fn backward(&self, g: &mut Graph, node: NodeId, grads: &[Option<TensorId>]) -> Result<Vec<Option<TensorId>>> {
        let Some(dy) = grads[0] else { return Ok(vec![None]) };
        let input = g.shape(g.node(node).inputs[0]).to_vec();
        Ok(vec![Some(g.apply1(MaxPool2dBackward { geo: self.0, input }, &[dy, node.out(1)])?)])
    }

    fn flops(&self, _: &[&TensorType], outputs: &[TensorType], _: &[bool]) -> u64 {
        outputs[0].len() as u64 * self.0.window()
    }

    fn cpu(&self, mut call: CpuCall) {
        let p = self.0.shape(call.shape(0));
        let [y, winners] = &mut call.outputs[..] else { unreachable!("two outputs") };
        cpu::max_pool(&p, call.inputs[0], y, bytemuck::cast_slice_mut(winners));
    }

    fn gpu(&self, gpu: &Gpu, call: &GpuCall) -> kernels::Result<Vec<Dispatch>> {
        let p = self.0.shape(call.shape(0));
        Ok(vec![pool::max_pool(gpu, &p, &call.inputs[0], &call.outputs[0], &call.outputs[1])?])
    }
}

/// Inputs [dy, winners]: the gradient of a max pool of an `input`-shaped x, each window's
/// gradient to its winner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaxPool2dBackward {
    /// The forward's geometry.
    pub geo: PoolGeometry,
    /// The forward input's shape.
    pub input: Vec<usize>,
}

impl Operation for MaxPool2dBackward {
    fn name(&self) -> &'static str {
        "max_pool2d_backward"
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        let y = self.geo.output(&TensorType::f32(&self.input))?;
        match inputs {
            [dy, winners] if dy.shape == y.shape && winners.shape == y.shape && winners.dtype == DType::U32 => {
                Ok(vec![TensorType::f32(&self.input)])
            }
            _ => Err(format!("takes dy and the winners of shape {:?}, got {}", y.shape, describe(inputs))),
        }
    }

    fn backward(&self, g: &mut Graph, node: NodeId, _: &[Option<TensorId>]) -> Result<Vec<Option<TensorId>>> {
        Err(no_second_derivative(g, node))
    }

    fn flops(&self, inputs: &[&TensorType], _: &[TensorType], _: &[bool]) -> u64 {
        inputs[0].len() as u64
    }

    fn cpu(&self, mut call: CpuCall) {
        let p = self.geo.shape(&self.input);
        let winners = super::indices(call.inputs[1]);
        cpu::max_pool_backward(&p, call.inputs[0], winners, call.outputs[0]);
    }

    fn gpu(&self, gpu: &Gpu, call: &GpuCall) -> kernels::Result<Vec<Dispatch>> {
        let p = self.geo.shape(&self.input);
        Ok(vec![pool::max_pool_backward(gpu, &p, &call.inputs[0], &call.inputs[1], &call.outputs[0])?])
    }
}

/// Input [x [N, C, H, W]]: the mean of each window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AvgPool2d(pub PoolGeometry);

impl Operation for AvgPool2d {
    fn name(&self) -> &'static str {
        "avg_pool2d"
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        Ok(vec![self.0.output(one_f32(inputs)?)?])
    }

    fn backward(&self, g: &mut Graph, node: NodeId, grads: &[Option<TensorId>]) -> Result<Vec<Option<TensorId>>> {
        let Some(dy) = grads[0] else { return Ok(vec![None]) };
        let input = g.shape(g.node(node).inputs[0]).to_vec();
        Ok(vec![Some(g.apply1(AvgPool2dBackward { geo: self.0, input }, &[dy])?)])
    }

    fn flops(&self, _: &[&TensorType], outputs: &[TensorType], _: &[bool]) -> u64 {
        outputs[0].len() as u64 * self.0.window()
    }

    fn cpu(&self, mut call: CpuCall) {
        cpu::avg_pool(&self.0.shape(call.shape(0)), call.inputs[0], call.outputs[0]);
    }

    fn gpu(&self, gpu: &Gpu, call: &GpuCall) -> kernels::Result<Vec<Dispatch>> {
        Ok(vec![pool::avg_pool(gpu, &self.0.shape(call.shape(0)), &call.inputs[0], &call.outputs[0])?])
    }
}

/// Input [dy]: the gradient of an average pool of an `input`-shaped x.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvgPool2dBackward {
    /// The forward's geometry.
    pub geo: PoolGeometry,
    /// The forward input's shape.
    pub input: Vec<usize>,
}

impl Operation for AvgPool2dBackward {
    fn name(&self) -> &'static str {
        "avg_pool2d_backward"
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        let y = self.geo.output(&TensorType::f32(&self.input))?;
        match inputs {
            [dy] if dy.shape == y.shape => Ok(vec![TensorType::f32(&self.input)]),
            _ => Err(format!("takes dy of shape {:?}, got {}", y.shape, describe(inputs))),
        }
    }

    fn backward(&self, g: &mut Graph, node: NodeId, _: &[Option<TensorId>]) -> Result<Vec<Option<TensorId>>> {
        Err(no_second_derivative(g, node))
    }

    fn flops(&self, inputs: &[&TensorType], _: &[TensorType], _: &[bool]) -> u64 {
        inputs[0].len() as u64 * self.geo.window()
    }

    fn cpu(&self, mut call: CpuCall) {
        cpu::avg_pool_backward(&self.geo.shape(&self.input), call.inputs[0], call.outputs[0]);
    }

    fn gpu(&self, gpu: &Gpu, call: &GpuCall) -> kernels::Result<Vec<Dispatch>> {
        Ok(vec![pool::avg_pool_backward(gpu, &self.geo.shape(&self.input), &call.inputs[0], &call.outputs[0])?])
    }
}

impl Graph {
    /// Max pooling of x [N, C, H, W]: the largest of each window.
    pub fn max_pool2d(&mut self, x: TensorId, geo: PoolGeometry) -> Result<TensorId> {
        self.apply1(MaxPool2d(geo), &[x])
    }

    /// Average pooling of x [N, C, H, W]: the mean of each window.
    pub fn avg_pool2d(&mut self, x: TensorId, geo: PoolGeometry) -> Result<TensorId> {
        self.apply1(AvgPool2d(geo), &[x])
    }

    /// The mean of each channel plane of x [N, C, H, W], as [N, C] (`AdaptiveAvgPool2d(1)`
    /// then `Flatten`).
    pub fn global_avg_pool(&mut self, x: TensorId) -> Result<TensorId> {
        let sx = self.shape(x).to_vec();
        if sx.len() != 4 {
            return Err(self.error("global_avg_pool", format!("input {sx:?} must be [N, C, H, W]")));
        }
        let pooled = self.avg_pool2d(x, PoolGeometry::global(sx[2], sx[3]))?;
        self.reshape(pooled, &sx[..2])
    }
}
