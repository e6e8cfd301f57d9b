//! Elementwise ops: unary functions with their backward, and broadcasting binary ops.

use kernels::{Binary, Broadcast, Dispatch, Gpu, Unary, cpu, elementwise};

use super::{CpuCall, GpuCall, Operation, no_second_derivative, one_f32};
use crate::error::Result;
use crate::ir::{DType, Graph, NodeId, TensorId, TensorType};

/// Inputs [a, b] of shapes that broadcast (NumPy rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BinaryOp(pub Binary);

impl Operation for BinaryOp {
    fn name(&self) -> &'static str {
        "binary"
    }

    fn kind(&self) -> String {
        format!("{} {:?}", self.name(), self.0)
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        let [a, b] = inputs else { return Err("takes two tensors".into()) };
        if a.dtype != DType::F32 || b.dtype != DType::F32 {
            return Err("takes f32 tensors".into());
        }
        let broadcast = Broadcast::new(&a.shape, &b.shape)
            .map_err(|_| format!("shapes {:?} and {:?} do not broadcast", a.shape, b.shape))?;
        Ok(vec![TensorType::f32(&broadcast.out)])
    }

    fn backward(&self, g: &mut Graph, node: NodeId, grads: &[Option<TensorId>]) -> Result<Vec<Option<TensorId>>> {
        let (Some(dy), &[a, b]) = (grads[0], &g.node(node).inputs[..]) else { return Ok(vec![None, None]) };
        let (sa, sb) = (g.shape(a).to_vec(), g.shape(b).to_vec());
        let (da, db) = match self.0 {
            Binary::Add => (dy, dy),
            Binary::Sub => (dy, g.unary(Unary::Scale(-1.0), dy)?),
            Binary::Mul => (g.binary(Binary::Mul, dy, b)?, g.binary(Binary::Mul, dy, a)?),
            // d(a/b)/db = -a/b² = -(a/b)/b, and a/b is this node's output.
            Binary::Div => {
                let t = g.binary(Binary::Mul, dy, node.out(0))?;
                let t = g.binary(Binary::Div, t, b)?;
                (g.binary(Binary::Div, dy, b)?, g.unary(Unary::Scale(-1.0), t)?)
            }
        };
        Ok(vec![Some(g.sum_to(da, &sa)?), Some(g.sum_to(db, &sb)?)])
    }

    fn flops(&self, _: &[&TensorType], outputs: &[TensorType], _: &[bool]) -> u64 {
        outputs[0].len() as u64
    }

    fn cpu(&self, mut call: CpuCall) {
        let broadcast = Broadcast::new(call.shape(0), call.shape(1)).expect("checked when built");
        cpu::binary(self.0, &broadcast, call.inputs[0], call.inputs[1], call.outputs[0]);
    }

    fn gpu(&self, gpu: &Gpu, call: &GpuCall) -> kernels::Result<Vec<Dispatch>> {
        let broadcast = Broadcast::new(call.shape(0), call.shape(1)).expect("checked when built");
        Ok(vec![elementwise::binary(gpu, self.0, &broadcast, &call.inputs[0], &call.inputs[1], &call.outputs[0])?])
    }
}

/// Input [x]: f(x) elementwise.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnaryOp(pub Unary);

impl Operation for UnaryOp {
    fn name(&self) -> &'static str {
        "unary"
    }

    fn kind(&self) -> String {
        format!("{} {:?}", self.name(), self.0)
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        Ok(vec![one_f32(inputs)?.clone()])
    }

    fn backward(&self, g: &mut Graph, node: NodeId, grads: &[Option<TensorId>]) -> Result<Vec<Option<TensorId>>> {
        let Some(dy) = grads[0] else { return Ok(vec![None]) };
        let x = g.node(node).inputs[0];
        Ok(vec![Some(g.apply1(UnaryBackward(self.0), &[x, dy])?)])
    }

    fn flops(&self, _: &[&TensorType], outputs: &[TensorType], _: &[bool]) -> u64 {
        outputs[0].len() as u64
    }

    fn cpu(&self, mut call: CpuCall) {
        cpu::unary(self.0, call.inputs[0], call.outputs[0]);
    }

    fn gpu(&self, gpu: &Gpu, call: &GpuCall) -> kernels::Result<Vec<Dispatch>> {
        let n = call.output_types[0].len();
        Ok(vec![elementwise::unary(gpu, self.0, &call.inputs[0], &call.outputs[0], n)?])
    }
}

/// Inputs [x, dy]: dy * f'(x).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnaryBackward(pub Unary);

impl Operation for UnaryBackward {
    fn name(&self) -> &'static str {
        "unary_backward"
    }

    fn kind(&self) -> String {
        format!("{} {:?}", self.name(), self.0)
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        match inputs {
            [x, dy] if x == dy => Ok(vec![(*x).clone()]),
            _ => Err(format!("takes x and dy of one shape, got {}", super::describe(inputs))),
        }
    }

    fn backward(&self, g: &mut Graph, node: NodeId, _: &[Option<TensorId>]) -> Result<Vec<Option<TensorId>>> {
        Err(no_second_derivative(g, node))
    }

    fn flops(&self, _: &[&TensorType], outputs: &[TensorType], _: &[bool]) -> u64 {
        2 * outputs[0].len() as u64
    }

    fn cpu(&self, mut call: CpuCall) {
        cpu::unary_backward(self.0, call.inputs[0], call.inputs[1], call.outputs[0]);
    }

    fn gpu(&self, gpu: &Gpu, call: &GpuCall) -> kernels::Result<Vec<Dispatch>> {
        let n = call.output_types[0].len();
        Ok(vec![elementwise::unary_backward(gpu, self.0, &call.inputs[0], &call.inputs[1], &call.outputs[0], n)?])
    }
}

impl Graph {
    /// `op` of a and b, broadcast.
    pub fn binary(&mut self, op: Binary, a: TensorId, b: TensorId) -> Result<TensorId> {
        self.apply1(BinaryOp(op), &[a, b])
    }

    /// `op` of each element of x.
    pub fn unary(&mut self, op: Unary, x: TensorId) -> Result<TensorId> {
        self.apply1(UnaryOp(op), &[x])
    }
}
