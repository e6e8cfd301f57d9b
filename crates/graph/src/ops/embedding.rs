//! Embedding lookup: rows of a table picked by u32 ids. The backward sums each id's rows of dy
//! into its row of the table (the kernels' deterministic sort-then-sum on the GPU); a padding
//! id's row gets no gradient, as torch's `padding_idx`.

use kernels::{Dispatch, Embedding as Shape, Gpu, StridedCopy, cpu, embedding, layout};

use super::{CpuCall, GpuCall, Operation, describe, indices, no_second_derivative};
use crate::error::Result;
use crate::ir::{DType, Graph, NodeId, TensorId, TensorType};

fn shape(ids: &TensorType, weight: &TensorType) -> Shape {
    Shape { tokens: ids.len(), vocab: weight.shape[0], dim: weight.shape[1] }
}

/// Inputs [ids (u32, any shape), weight [vocab, dim]]: out [ids' shape, dim] = weight[ids]
/// (an id past the table reads zeros).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Embedding {
    /// A token id whose row reads zero and gets no gradient.
    pub padding: Option<usize>,
}

impl Operation for Embedding {
    fn name(&self) -> &'static str {
        "embedding"
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        match inputs {
            [ids, weight] if ids.dtype == DType::U32 && weight.dtype == DType::F32 && weight.shape.len() == 2 => {
                if self.padding.is_some_and(|p| p >= weight.shape[0]) {
                    return Err(format!("padding index {:?} is past the {} rows", self.padding, weight.shape[0]));
                }
                let shape: Vec<usize> = ids.shape.iter().copied().chain([weight.shape[1]]).collect();
                Ok(vec![TensorType::f32(&shape)])
            }
            _ => Err(format!("takes u32 ids and an f32 table [vocab, dim], got {}", describe(inputs))),
        }
    }

    fn backward(&self, g: &mut Graph, node: NodeId, grads: &[Option<TensorId>]) -> Result<Vec<Option<TensorId>>> {
        let Some(dy) = grads[0] else { return Ok(vec![None, None]) };
        let [ids, _] = g.node(node).inputs[..] else { unreachable!("two inputs") };
        let dim = *g.shape(dy).last().expect("checked when built");
        let vocab = g.shape(g.node(node).inputs[1])[0];
        let zeros = g.fill(0.0, &[dim]);
        let back = g.apply(EmbeddingBackward { vocab, padding: self.padding }, &[ids, dy, zeros])?;
        Ok(vec![None, Some(back.out(0))])
    }

    fn flops(&self, _: &[&TensorType], outputs: &[TensorType], _: &[bool]) -> u64 {
        outputs[0].len() as u64
    }

    fn cpu(&self, mut call: CpuCall) {
        let e = shape(call.input_types[0], call.input_types[1]);
        cpu::embedding(&e, indices(call.inputs[0]), call.inputs[1], call.outputs[0]);
    }

    fn gpu(&self, gpu: &Gpu, call: &GpuCall) -> kernels::Result<Vec<Dispatch>> {
        let e = shape(call.input_types[0], call.input_types[1]);
        Ok(vec![embedding::embedding(gpu, &e, &call.inputs[0], &call.inputs[1], &call.outputs[0])?])
    }
}

/// Inputs [ids, dy, zeros [dim]]: dweight [vocab, dim], the padding row zero. Outputs also
/// the sort's workspace (keys and positions, u32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbeddingBackward {
    /// Rows of the table.
    pub vocab: usize,
    /// The row that gets no gradient.
    pub padding: Option<usize>,
}

impl EmbeddingBackward {
    fn shape(&self, ids: &TensorType, dy: &TensorType) -> Shape {
        Shape { tokens: ids.len(), vocab: self.vocab, dim: *dy.shape.last().expect("checked when built") }
    }

    /// The padding row of dweight, as a copy from the zeros input.
    fn clear(&self, dim: usize) -> Option<StridedCopy> {
        self.padding.map(|p| StridedCopy {
            shape: vec![dim],
            src_offset: 0,
            src_strides: vec![1],
            dst_offset: p * dim,
            dst_strides: vec![1],
        })
    }
}

impl Operation for EmbeddingBackward {
    fn name(&self) -> &'static str {
        "embedding_backward"
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        match inputs {
            [ids, dy, zeros]
                if dy.shape.len() == ids.shape.len() + 1 && zeros.shape[..] == dy.shape[ids.shape.len()..] =>
            {
                let sort = self.shape(ids, dy).sort_len();
                let dim = zeros.shape[0];
                Ok(vec![TensorType::f32(&[self.vocab, dim]), TensorType::u32(&[sort]), TensorType::u32(&[sort])])
            }
            _ => Err(format!("takes ids, dy [ids' shape, dim] and zeros [dim], got {}", describe(inputs))),
        }
    }

    fn backward(&self, g: &mut Graph, node: NodeId, _: &[Option<TensorId>]) -> Result<Vec<Option<TensorId>>> {
        Err(no_second_derivative(g, node))
    }

    fn flops(&self, inputs: &[&TensorType], _: &[TensorType], _: &[bool]) -> u64 {
        inputs[1].len() as u64
    }

    fn cpu(&self, mut call: CpuCall) {
        let e = self.shape(call.input_types[0], call.input_types[1]);
        let dweight = &mut call.outputs[0];
        cpu::embedding_backward(&e, indices(call.inputs[0]), call.inputs[1], dweight);
        if let Some(clear) = self.clear(e.dim) {
            cpu::strided_copy(&clear, call.inputs[2], dweight);
        }
    }

    fn gpu(&self, gpu: &Gpu, call: &GpuCall) -> kernels::Result<Vec<Dispatch>> {
        let e = self.shape(call.input_types[0], call.input_types[1]);
        let [ids, dy, zeros] = &call.inputs[..] else { unreachable!("three inputs") };
        let [dweight, keys, positions] = &call.outputs[..] else { unreachable!("three outputs") };
        let mut out = embedding::embedding_backward(gpu, &e, ids, dy, keys, positions, dweight)?;
        if let Some(clear) = self.clear(e.dim) {
            out.push(layout::strided_copy(gpu, &clear, zeros, dweight)?);
        }
        Ok(out)
    }
}

impl Graph {
    /// `weight[ids]`: ids u32 of any shape, weight [vocab, dim]; the `padding` row gets no
    /// gradient.
    pub fn embedding(&mut self, ids: TensorId, weight: TensorId, padding: Option<usize>) -> Result<TensorId> {
        self.apply1(Embedding { padding }, &[ids, weight])
    }
}
