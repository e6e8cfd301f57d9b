//! Matrix products of 2-D tensors, either operand possibly stored transposed.

use kernels::{Dispatch, Gpu, Matmul, cpu, matmul};

use super::{CpuCall, GpuCall, Operation};
use crate::error::Result;
use crate::ir::{Graph, NodeId, TensorId, TensorType};

/// Inputs [a, b]: op(a) . op(b), op = transpose where asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatMul {
    pub transpose_a: bool,
    pub transpose_b: bool,
}

impl MatMul {
    /// (m, k) of op(a) and n of op(b).
    fn dims(&self, a: &[usize], b: &[usize]) -> (usize, usize, usize) {
        let (m, k) = if self.transpose_a { (a[1], a[0]) } else { (a[0], a[1]) };
        let n = if self.transpose_b { b[0] } else { b[1] };
        (m, k, n)
    }

    fn kernel_shape(&self, a: &[usize], b: &[usize]) -> Matmul {
        let (m, k, n) = self.dims(a, b);
        let mut mm = Matmul::new(m, n, k);
        if self.transpose_a {
            mm = mm.transpose_a();
        }
        if self.transpose_b {
            mm = mm.transpose_b();
        }
        mm
    }
}

impl Operation for MatMul {
    fn name(&self) -> &'static str {
        "matmul"
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        let as_matrix = |s: &[usize], t: bool| match *s {
            [r, c] => Some(if t { (c, r) } else { (r, c) }),
            _ => None,
        };
        let [a, b] = inputs else { return Err("takes two matrices".into()) };
        match (as_matrix(&a.shape, self.transpose_a), as_matrix(&b.shape, self.transpose_b)) {
            (Some((m, k1)), Some((k2, n))) if k1 == k2 => Ok(vec![TensorType::f32(&[m, n])]),
            _ => Err(format!(
                "cannot multiply {:?}{} by {:?}{}",
                a.shape,
                if self.transpose_a { "ᵀ" } else { "" },
                b.shape,
                if self.transpose_b { "ᵀ" } else { "" }
            )),
        }
    }

    // C = op(A) op(B): d op(A) = dC op(B)ᵀ, d op(B) = op(A)ᵀ dC, transposed back as stored.
    fn backward(&self, g: &mut Graph, node: NodeId, grads: &[Option<TensorId>]) -> Result<Vec<Option<TensorId>>> {
        let (Some(dy), &[a, b]) = (grads[0], &g.node(node).inputs[..]) else { return Ok(vec![None, None]) };
        let (ta, tb) = (self.transpose_a, self.transpose_b);
        let da = if ta { g.matmul(b, dy, tb, true)? } else { g.matmul(dy, b, false, !tb)? };
        let db = if tb { g.matmul(dy, a, true, ta)? } else { g.matmul(a, dy, !ta, false)? };
        Ok(vec![Some(da), Some(db)])
    }

    fn flops(&self, inputs: &[&TensorType], _: &[TensorType], _: &[bool]) -> u64 {
        let (m, k, n) = self.dims(&inputs[0].shape, &inputs[1].shape);
        2 * (m * k * n) as u64
    }

    fn cpu(&self, mut call: CpuCall) {
        let mm = self.kernel_shape(call.shape(0), call.shape(1));
        cpu::matmul(&mm, call.inputs[0], call.inputs[1], None, call.outputs[0]);
    }

    fn gpu(&self, gpu: &Gpu, call: &GpuCall) -> kernels::Result<Vec<Dispatch>> {
        let mm = self.kernel_shape(call.shape(0), call.shape(1));
        matmul::matmul(gpu, &mm, &call.inputs[0], &call.inputs[1], None, &call.outputs[0])
    }
}

impl Graph {
    /// op(a) . op(b) for 2-D operands, op = transpose where asked.
    pub fn matmul(&mut self, a: TensorId, b: TensorId, transpose_a: bool, transpose_b: bool) -> Result<TensorId> {
        self.apply1(MatMul { transpose_a, transpose_b }, &[a, b])
    }
}
