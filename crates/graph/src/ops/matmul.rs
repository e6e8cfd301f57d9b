//! Matrix products of 2-D tensors, either operand possibly stored transposed, with an optional
//! bias added to every row in the product's epilogue (a linear layer's).

use kernels::{Bias, Dispatch, Gpu, Matmul, cpu, matmul};

use super::{CpuCall, GpuCall, Operation};
use crate::error::Result;
use crate::ir::{Graph, NodeId, TensorId, TensorType};

/// Inputs [a, b] and optionally a bias [n]: op(a) . op(b) (+ bias on every row), op =
/// transpose where asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatMul {
    /// Reads a as its transpose.
    pub transpose_a: bool,
    /// Reads b as its transpose.
    pub transpose_b: bool,
}

impl MatMul {
    /// (m, k) of op(a) and n of op(b).
    fn dims(&self, a: &[usize], b: &[usize]) -> (usize, usize, usize) {
        let (m, k) = if self.transpose_a { (a[1], a[0]) } else { (a[0], a[1]) };
        let n = if self.transpose_b { b[0] } else { b[1] };
        (m, k, n)
    }

    fn kernel_shape(&self, a: &[usize], b: &[usize], bias: bool) -> Matmul {
        let (m, k, n) = self.dims(a, b);
        let mut mm = Matmul::new(m, n, k);
        if bias {
            mm.bias = Bias::PerColumn;
        }
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
        let (a, b, bias) = match inputs {
            [a, b] => (a, b, None),
            [a, b, bias] => (a, b, Some(bias)),
            _ => return Err("takes two matrices and an optional bias".into()),
        };
        match (as_matrix(&a.shape, self.transpose_a), as_matrix(&b.shape, self.transpose_b)) {
            (Some((m, k1)), Some((k2, n))) if k1 == k2 => match bias {
                Some(bias) if bias.shape != [n] => Err(format!("bias {:?} must be [{n}]", bias.shape)),
                _ => Ok(vec![TensorType::f32(&[m, n])]),
            },
            _ => Err(format!(
                "cannot multiply {:?}{} by {:?}{}",
                a.shape,
                if self.transpose_a { "ᵀ" } else { "" },
                b.shape,
                if self.transpose_b { "ᵀ" } else { "" }
            )),
        }
    }

    // C = op(A) op(B) + bias: d op(A) = dC op(B)ᵀ, d op(B) = op(A)ᵀ dC, transposed back as
    // stored, and d bias = dC summed over its rows.
    fn backward(&self, g: &mut Graph, node: NodeId, grads: &[Option<TensorId>]) -> Result<Vec<Option<TensorId>>> {
        let inputs = g.node(node).inputs.clone();
        let Some(dy) = grads[0] else { return Ok(vec![None; inputs.len()]) };
        let (a, b) = (inputs[0], inputs[1]);
        let (ta, tb) = (self.transpose_a, self.transpose_b);
        let da = if ta { g.matmul(b, dy, tb, true)? } else { g.matmul(dy, b, false, !tb)? };
        let db = if tb { g.matmul(dy, a, true, ta)? } else { g.matmul(a, dy, !ta, false)? };
        let mut grads = vec![Some(da), Some(db)];
        if let Some(&bias) = inputs.get(2) {
            let n = g.shape(bias).to_vec();
            grads.push(Some(g.sum_to(dy, &n)?));
        }
        Ok(grads)
    }

    fn flops(&self, inputs: &[&TensorType], _: &[TensorType], _: &[bool]) -> u64 {
        let (m, k, n) = self.dims(&inputs[0].shape, &inputs[1].shape);
        let bias = if inputs.len() == 3 { m * n } else { 0 };
        (2 * m * k * n + bias) as u64
    }

    fn cpu(&self, mut call: CpuCall) {
        let mm = self.kernel_shape(call.shape(0), call.shape(1), call.inputs.len() == 3);
        cpu::matmul(&mm, call.inputs[0], call.inputs[1], call.inputs.get(2).copied(), call.outputs[0]);
    }

    fn gpu(&self, gpu: &Gpu, call: &GpuCall) -> kernels::Result<Vec<Dispatch>> {
        let mm = self.kernel_shape(call.shape(0), call.shape(1), call.inputs.len() == 3);
        matmul::matmul(gpu, &mm, &call.inputs[0], &call.inputs[1], call.inputs.get(2), &call.outputs[0])
    }
}

impl Graph {
    /// op(a) . op(b) for 2-D operands, op = transpose where asked.
    pub fn matmul(&mut self, a: TensorId, b: TensorId, transpose_a: bool, transpose_b: bool) -> Result<TensorId> {
        self.apply1(MatMul { transpose_a, transpose_b }, &[a, b])
    }

    /// op(a) . op(b) + bias [n] on every row: a linear layer's product, its bias added in the
    /// product's epilogue.
    pub fn matmul_bias(
        &mut self,
        a: TensorId,
        b: TensorId,
        (transpose_a, transpose_b): (bool, bool),
        bias: TensorId,
    ) -> Result<TensorId> {
        self.apply1(MatMul { transpose_a, transpose_b }, &[a, b, bias])
    }
}
