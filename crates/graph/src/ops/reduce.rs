//! Sums that undo a broadcast, and the whole-tensor sum and mean built on them.

use kernels::{Binary, Dispatch, Gpu, ReduceOp, Reduction, StridedCopy, Unary, cpu, layout, reduce};

use super::{CpuCall, GpuCall, Operation, one_f32};
use crate::error::Result;
use crate::ir::{Graph, NodeId, TensorId, TensorType};

/// Input [x]: x summed down to `to`, a shape that broadcasts to x's. Outputs: the sum, then
/// the workspace of each intermediate single-axis sum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SumTo {
    /// The shape summed down to.
    pub to: Vec<usize>,
}

/// The single-axis sums that take `from` down to `to` (which broadcasts to `from`), last axes
/// first; runs of adjacent summed axes are one step.
pub(crate) fn sum_to_steps(from: &[usize], to: &[usize]) -> Vec<Reduction> {
    let to: Vec<usize> = std::iter::repeat_n(1, from.len() - to.len()).chain(to.iter().copied()).collect();
    let mut current = from.to_vec();
    let mut steps = Vec::new();
    let mut axis = from.len();
    while axis > 0 {
        axis -= 1;
        if to[axis] == current[axis] {
            continue;
        }
        let end = axis + 1;
        while axis > 0 && to[axis - 1] != current[axis - 1] {
            axis -= 1;
        }
        let summed: usize = current[axis..end].iter().product();
        steps.push(Reduction {
            outer: current[..axis].iter().product(),
            axis: summed,
            inner: current[end..].iter().product(),
        });
        current.splice(axis..end, std::iter::repeat_n(1, end - axis));
    }
    steps
}

impl Operation for SumTo {
    fn name(&self) -> &'static str {
        "sum_to"
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        let x = one_f32(inputs)?;
        if kernels::Broadcast::new(&x.shape, &self.to).map_or(true, |b| b.out != x.shape) {
            return Err(format!("{:?} does not broadcast to {:?}", self.to, x.shape));
        }
        let steps = sum_to_steps(&x.shape, &self.to);
        let workspace = steps.iter().skip(1).map(|r| TensorType::f32(&[r.input_len()]));
        Ok(std::iter::once(TensorType::f32(&self.to)).chain(workspace).collect())
    }

    // Broadcasting dy back up: dy + zeros of the input's shape.
    fn backward(&self, g: &mut Graph, node: NodeId, grads: &[Option<TensorId>]) -> Result<Vec<Option<TensorId>>> {
        let Some(dy) = grads[0] else { return Ok(vec![None]) };
        let shape = g.shape(g.node(node).inputs[0]).to_vec();
        let zeros = g.fill(0.0, &shape);
        Ok(vec![Some(g.binary(Binary::Add, zeros, dy)?)])
    }

    fn flops(&self, inputs: &[&TensorType], _: &[TensorType], _: &[bool]) -> u64 {
        inputs[0].len() as u64
    }

    // Each step reads the previous one's result: the input, then workspace, then output 0.
    fn cpu(&self, mut call: CpuCall) {
        let steps = sum_to_steps(call.shape(0), &self.to);
        let Some((last, first)) = steps.split_last() else {
            return call.outputs[0].copy_from_slice(call.inputs[0]);
        };
        let (result, workspace) = call.outputs.split_first_mut().expect("a result");
        let mut source: &[f32] = call.inputs[0];
        for (step, target) in first.iter().zip(workspace.iter_mut()) {
            cpu::reduce(ReduceOp::Sum, step, source, target);
            source = target;
        }
        cpu::reduce(ReduceOp::Sum, last, source, result);
    }

    fn gpu(&self, gpu: &Gpu, call: &GpuCall) -> kernels::Result<Vec<Dispatch>> {
        let steps = sum_to_steps(call.shape(0), &self.to);
        if steps.is_empty() {
            let n = call.output_types[0].len();
            let copy = StridedCopy::slice(&[n], 0, 0, n).expect("whole range");
            return Ok(vec![layout::strided_copy(gpu, &copy, &call.inputs[0], &call.outputs[0])?]);
        }
        let mut sources = std::iter::once(&call.inputs[0]).chain(&call.outputs[1..]);
        let mut targets = call.outputs[1..].iter().chain(std::iter::once(&call.outputs[0]));
        steps
            .iter()
            .map(|r| reduce::reduce(gpu, ReduceOp::Sum, r, sources.next().unwrap(), targets.next().unwrap()))
            .collect()
    }
}

impl Graph {
    /// Sums `x` down to `shape`, which must broadcast to x's shape.
    pub fn sum_to(&mut self, x: TensorId, shape: &[usize]) -> Result<TensorId> {
        if self.shape(x) == shape {
            return Ok(x);
        }
        self.apply1(SumTo { to: shape.to_vec() }, &[x])
    }

    /// The sum of every element, a scalar.
    pub fn sum(&mut self, x: TensorId) -> Result<TensorId> {
        self.sum_to(x, &[])
    }

    /// The mean of every element, a scalar.
    pub fn mean(&mut self, x: TensorId) -> Result<TensorId> {
        let n = self.numel(x);
        let total = self.sum(x)?;
        self.unary(Unary::Scale(1.0 / n as f32), total)
    }
}

#[cfg(test)]
mod tests {
    use super::sum_to_steps;
    use kernels::Reduction;

    #[test]
    fn sum_to_merges_adjacent_axes() {
        let r = |outer, axis, inner| Reduction { outer, axis, inner };
        assert_eq!(sum_to_steps(&[2, 3, 4, 5], &[3, 1, 1]), vec![r(6, 20, 1), r(1, 2, 3)]);
        assert_eq!(sum_to_steps(&[2, 3], &[]), vec![r(1, 6, 1)]);
        assert_eq!(sum_to_steps(&[2, 3, 4], &[2, 1, 4]), vec![r(2, 3, 4)]);
        assert_eq!(sum_to_steps(&[2, 3], &[2, 3]), vec![]);
    }
}
