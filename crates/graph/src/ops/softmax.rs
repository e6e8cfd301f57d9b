//! Softmax and log-softmax over the last axis.

use kernels::{Dispatch, Gpu, cpu, softmax};

use super::{CpuCall, GpuCall, Operation, describe, no_second_derivative, one_f32};
use crate::error::Result;
use crate::ir::{Graph, NodeId, TensorId, TensorType};

/// (rows, columns) of a tensor softmaxed over its last axis.
fn rows_cols(t: &TensorType) -> (usize, usize) {
    let cols = *t.shape.last().expect("checked when built");
    (t.len() / cols.max(1), cols)
}

/// Input [x]: softmax, or log-softmax with `log`, over the last axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Softmax {
    /// Log-softmax.
    pub log: bool,
}

impl Operation for Softmax {
    fn name(&self) -> &'static str {
        "softmax"
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        let x = one_f32(inputs)?;
        if x.shape.is_empty() {
            return Err("softmax of a scalar".into());
        }
        Ok(vec![x.clone()])
    }

    // The backward reads this node's output, not its input.
    fn backward(&self, g: &mut Graph, node: NodeId, grads: &[Option<TensorId>]) -> Result<Vec<Option<TensorId>>> {
        let Some(dy) = grads[0] else { return Ok(vec![None]) };
        Ok(vec![Some(g.apply1(SoftmaxBackward { log: self.log }, &[node.out(0), dy])?)])
    }

    fn flops(&self, inputs: &[&TensorType], _: &[TensorType], _: &[bool]) -> u64 {
        5 * inputs[0].len() as u64
    }

    fn cpu(&self, mut call: CpuCall) {
        let (rows, cols) = rows_cols(call.input_types[0]);
        cpu::softmax(self.log, rows, cols, call.inputs[0], call.outputs[0]);
    }

    fn gpu(&self, gpu: &Gpu, call: &GpuCall) -> kernels::Result<Vec<Dispatch>> {
        let (rows, cols) = rows_cols(call.input_types[0]);
        Ok(vec![softmax::softmax(gpu, self.log, rows, cols, &call.inputs[0], &call.outputs[0])?])
    }
}

/// Inputs [y, dy], y the softmax's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoftmaxBackward {
    /// The forward's.
    pub log: bool,
}

impl Operation for SoftmaxBackward {
    fn name(&self) -> &'static str {
        "softmax_backward"
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        match inputs {
            [y, dy] if y == dy && !y.shape.is_empty() => Ok(vec![(*y).clone()]),
            _ => Err(format!("takes y and dy of one shape, got {}", describe(inputs))),
        }
    }

    fn backward(&self, g: &mut Graph, node: NodeId, _: &[Option<TensorId>]) -> Result<Vec<Option<TensorId>>> {
        Err(no_second_derivative(g, node))
    }

    fn flops(&self, inputs: &[&TensorType], _: &[TensorType], _: &[bool]) -> u64 {
        3 * inputs[0].len() as u64
    }

    fn cpu(&self, mut call: CpuCall) {
        let (rows, cols) = rows_cols(call.input_types[0]);
        cpu::softmax_backward(self.log, rows, cols, call.inputs[0], call.inputs[1], call.outputs[0]);
    }

    fn gpu(&self, gpu: &Gpu, call: &GpuCall) -> kernels::Result<Vec<Dispatch>> {
        let (rows, cols) = rows_cols(call.input_types[0]);
        let [y, dy] = &call.inputs[..] else { unreachable!("two inputs") };
        Ok(vec![softmax::softmax_backward(gpu, self.log, rows, cols, y, dy, &call.outputs[0])?])
    }
}

impl Graph {
    /// Softmax, or log-softmax with `log`, over the last axis.
    pub fn softmax(&mut self, x: TensorId, log: bool) -> Result<TensorId> {
        self.apply1(Softmax { log }, &[x])
    }
}
