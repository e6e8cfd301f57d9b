//! Ops that move data without arithmetic: reshape (a view), permutation, concatenation and
//! slices.

use kernels::{Dispatch, Gpu, StridedCopy, cpu, layout};

use super::{CpuCall, GpuCall, Operation, one_f32};
use crate::error::Result;
use crate::ir::{Graph, NodeId, TensorId, TensorType};

/// Input [x]: the same values under another shape of the same size; the same buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reshape {
    /// The output's shape.
    pub shape: Vec<usize>,
}

impl Operation for Reshape {
    fn name(&self) -> &'static str {
        "reshape"
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        let x = one_f32(inputs)?;
        if x.len() != self.shape.iter().product::<usize>() {
            return Err(format!("cannot reshape {:?} to {:?}", x.shape, self.shape));
        }
        Ok(vec![TensorType::f32(&self.shape)])
    }

    fn backward(&self, g: &mut Graph, node: NodeId, grads: &[Option<TensorId>]) -> Result<Vec<Option<TensorId>>> {
        let Some(dy) = grads[0] else { return Ok(vec![None]) };
        let shape = g.shape(g.node(node).inputs[0]).to_vec();
        Ok(vec![Some(g.reshape(dy, &shape)?)])
    }

    fn flops(&self, _: &[&TensorType], _: &[TensorType], _: &[bool]) -> u64 {
        0
    }

    // A view: nothing to compute.
    fn cpu(&self, _: CpuCall) {}

    fn gpu(&self, _: &Gpu, _: &GpuCall) -> kernels::Result<Vec<Dispatch>> {
        Ok(vec![])
    }

    fn aliases_input(&self) -> bool {
        true
    }
}

/// Inputs joined along `axis`; every other axis must agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Concat {
    /// The joined axis.
    pub axis: usize,
}

impl Concat {
    /// Where each part goes in the output.
    fn places(&self, parts: &[&TensorType], whole: &[usize]) -> Vec<StridedCopy> {
        let mut start = 0;
        parts
            .iter()
            .map(|p| {
                let place = StridedCopy::place(&p.shape, whole, self.axis, start).expect("checked when built");
                start += p.shape[self.axis];
                place
            })
            .collect()
    }
}

impl Operation for Concat {
    fn name(&self) -> &'static str {
        "concat"
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        let Some(first) = inputs.first() else { return Err("nothing to concatenate".into()) };
        let axis = self.axis;
        let agree = |s: &[usize]| {
            s.len() == first.shape.len()
                && axis < s.len()
                && s.iter().zip(&first.shape).enumerate().all(|(a, (x, y))| a == axis || x == y)
        };
        if !inputs.iter().all(|t| agree(&t.shape) && t.dtype == first.dtype) {
            let shapes: Vec<&Vec<usize>> = inputs.iter().map(|t| &t.shape).collect();
            return Err(format!("shapes {shapes:?} differ off axis {axis}"));
        }
        let mut shape = first.shape.clone();
        shape[axis] = inputs.iter().map(|t| t.shape[axis]).sum();
        Ok(vec![TensorType { shape, dtype: first.dtype }])
    }

    // Each part's gradient is its slice of dy.
    fn backward(&self, g: &mut Graph, node: NodeId, grads: &[Option<TensorId>]) -> Result<Vec<Option<TensorId>>> {
        let parts = g.node(node).inputs.clone();
        let Some(dy) = grads[0] else { return Ok(vec![None; parts.len()]) };
        let mut start = 0;
        let mut out = Vec::new();
        for part in parts {
            let len = g.shape(part)[self.axis];
            out.push(Some(g.slice(dy, self.axis, start, len)?));
            start += len;
        }
        Ok(out)
    }

    fn flops(&self, _: &[&TensorType], outputs: &[TensorType], _: &[bool]) -> u64 {
        outputs[0].len() as u64
    }

    fn cpu(&self, mut call: CpuCall) {
        for (k, place) in self.places(&call.input_types, &call.output_types[0].shape).iter().enumerate() {
            cpu::strided_copy(place, call.inputs[k], call.outputs[0]);
        }
    }

    fn gpu(&self, gpu: &Gpu, call: &GpuCall) -> kernels::Result<Vec<Dispatch>> {
        let places = self.places(&call.input_types, &call.output_types[0].shape);
        places.iter().zip(&call.inputs).map(|(p, x)| layout::strided_copy(gpu, p, x, &call.outputs[0])).collect()
    }
}

/// Input [x]: the entries `start..start + len` of `axis`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slice {
    /// The sliced axis.
    pub axis: usize,
    /// The first entry taken.
    pub start: usize,
    /// Entries taken.
    pub len: usize,
}

impl Slice {
    fn copy(&self, x: &[usize]) -> StridedCopy {
        StridedCopy::slice(x, self.axis, self.start, self.len).expect("checked when built")
    }
}

impl Operation for Slice {
    fn name(&self) -> &'static str {
        "slice"
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        let [x] = inputs else { return Err("takes one tensor".into()) };
        let mut shape = x.shape.clone();
        if self.axis >= shape.len() || self.start + self.len > shape[self.axis] {
            return Err(format!("{}..{} of axis {} of {shape:?}", self.start, self.start + self.len, self.axis));
        }
        shape[self.axis] = self.len;
        Ok(vec![TensorType { shape, dtype: x.dtype }])
    }

    // dy itself: autodiff puts it in place (`slice_of_input`).
    fn backward(&self, _: &mut Graph, _: NodeId, grads: &[Option<TensorId>]) -> Result<Vec<Option<TensorId>>> {
        Ok(vec![grads[0]])
    }

    fn slice_of_input(&self) -> Option<(usize, usize)> {
        Some((self.axis, self.start))
    }

    fn flops(&self, _: &[&TensorType], outputs: &[TensorType], _: &[bool]) -> u64 {
        outputs[0].len() as u64
    }

    fn cpu(&self, call: CpuCall) {
        copy_on_cpu(&self.copy(call.shape(0)), call);
    }

    fn gpu(&self, gpu: &Gpu, call: &GpuCall) -> kernels::Result<Vec<Dispatch>> {
        copy_on_gpu(gpu, &self.copy(call.shape(0)), call)
    }
}

/// Input [x]: its axes reordered, output axis a being input axis perm[a].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permute {
    /// Output axis a is input axis perm[a].
    pub perm: Vec<usize>,
}

impl Permute {
    fn copy(&self, x: &[usize]) -> StridedCopy {
        StridedCopy::permute(x, &self.perm).expect("checked when built")
    }
}

impl Operation for Permute {
    fn name(&self) -> &'static str {
        "permute"
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        let x = one_f32(inputs)?;
        StridedCopy::permute(&x.shape, &self.perm).map_err(|e| e.to_string())?;
        Ok(vec![TensorType::f32(&self.perm.iter().map(|&a| x.shape[a]).collect::<Vec<_>>())])
    }

    // The inverse permutation takes dy back.
    fn backward(&self, g: &mut Graph, _: NodeId, grads: &[Option<TensorId>]) -> Result<Vec<Option<TensorId>>> {
        let Some(dy) = grads[0] else { return Ok(vec![None]) };
        let mut inverse = vec![0; self.perm.len()];
        self.perm.iter().enumerate().for_each(|(out, &axis)| inverse[axis] = out);
        Ok(vec![Some(g.permute(dy, &inverse)?)])
    }

    fn flops(&self, _: &[&TensorType], outputs: &[TensorType], _: &[bool]) -> u64 {
        outputs[0].len() as u64
    }

    fn cpu(&self, call: CpuCall) {
        copy_on_cpu(&self.copy(call.shape(0)), call);
    }

    fn gpu(&self, gpu: &Gpu, call: &GpuCall) -> kernels::Result<Vec<Dispatch>> {
        copy_on_gpu(gpu, &self.copy(call.shape(0)), call)
    }
}

/// The CPU run of an op that is one strided copy of its input (a slice, a permutation).
fn copy_on_cpu(copy: &StridedCopy, mut call: CpuCall) {
    cpu::strided_copy(copy, call.inputs[0], call.outputs[0]);
}

/// The GPU dispatch of an op that is one strided copy of its input.
fn copy_on_gpu(gpu: &Gpu, copy: &StridedCopy, call: &GpuCall) -> kernels::Result<Vec<Dispatch>> {
    Ok(vec![layout::strided_copy(gpu, copy, &call.inputs[0], &call.outputs[0])?])
}

impl Graph {
    /// The same values as `shape`, which must hold as many elements.
    pub fn reshape(&mut self, x: TensorId, shape: &[usize]) -> Result<TensorId> {
        self.apply1(Reshape { shape: shape.to_vec() }, &[x])
    }

    /// `x` [N, ...] as [N, rest] (`nn.Flatten`).
    pub fn flatten(&mut self, x: TensorId) -> Result<TensorId> {
        let shape = self.shape(x).to_vec();
        let rows = shape.first().copied().unwrap_or(1);
        self.reshape(x, &[rows, shape.iter().skip(1).product()])
    }

    /// `x` with its axes reordered: output axis a is input axis `perm[a]`.
    pub fn permute(&mut self, x: TensorId, perm: &[usize]) -> Result<TensorId> {
        self.apply1(Permute { perm: perm.to_vec() }, &[x])
    }

    /// Joins `parts` along `axis`; every other axis must agree.
    pub fn concat(&mut self, parts: &[TensorId], axis: usize) -> Result<TensorId> {
        self.apply1(Concat { axis }, parts)
    }

    /// Step `index` of a sequence x [B, T, C]: [B, C].
    pub fn step(&mut self, x: TensorId, index: usize) -> Result<TensorId> {
        let shape = self.shape(x).to_vec();
        let step = self.slice(x, 1, index, 1)?;
        self.reshape(step, &[shape[0], shape[2..].iter().product()])
    }

    /// `len` entries of `x` along `axis` from `start`.
    pub fn slice(&mut self, x: TensorId, axis: usize, start: usize, len: usize) -> Result<TensorId> {
        self.apply1(Slice { axis, start, len }, &[x])
    }

    /// A tensor of shape `whole` holding each `(start, part)` of `pieces` from `start` along
    /// `axis` and zeros elsewhere: the gradient of slices that do not overlap, sorted by start.
    pub fn join_slices(&mut self, whole: &[usize], axis: usize, pieces: &[(usize, TensorId)]) -> Result<TensorId> {
        let zeros = |g: &mut Graph, len: usize| {
            let mut shape = whole.to_vec();
            shape[axis] = len;
            g.fill(0.0, &shape)
        };
        let mut parts = Vec::new();
        let mut at = 0;
        for &(start, part) in pieces {
            if start > at {
                parts.push(zeros(self, start - at));
            }
            parts.push(part);
            at = start + self.shape(part)[axis];
        }
        if at < whole[axis] {
            parts.push(zeros(self, whole[axis] - at));
        }
        match parts[..] {
            [only] => Ok(only),
            _ => self.concat(&parts, axis),
        }
    }
}
