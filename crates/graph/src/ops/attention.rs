//! Fused softmax attention over heads: O = softmax(Q Kᵀ · scale + masks) V without forming the
//! T × T matrix. The forward saves each query row's log-sum-exp; the backward reads it (and O)
//! and returns dQ, dK and dV from one set of kernel calls.

use kernels::{Attention as Shape, Dispatch, Gpu, attention, cpu};

use super::{CpuCall, GpuCall, Operation, describe, indices, no_second_derivative};
use crate::error::Result;
use crate::ir::{DType, Graph, NodeId, TensorId, TensorType};

/// Inputs [q [B·H, Tq, D], k [B·H, Tk, D], v [B·H, Tk, D]] and optionally a key-padding mask
/// [B, Tk] (u32, 0 = hidden): O [B·H, Tq, D] and the log-sum-exp of each query row [B·H·Tq].
/// `causal` hides key j from query i when j > i.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attention {
    /// Heads (B·H slices).
    pub heads: usize,
    /// Hides key j from query i when j > i.
    pub causal: bool,
    /// Multiplies the scores (1/√D).
    pub scale: f32,
}

impl Attention {
    fn shape(&self, q: &[usize], k: &[usize]) -> Shape {
        Shape {
            batch: q[0] / self.heads,
            heads: self.heads,
            tq: q[1],
            tk: k[1],
            head_dim: q[2],
            scale: self.scale,
            causal: self.causal,
        }
    }
}

impl Operation for Attention {
    fn name(&self) -> &'static str {
        "attention"
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        let fits = |q: &TensorType, k: &TensorType, v: &TensorType, mask: Option<&&TensorType>| {
            let (&[bh, tq, d], &[bh_k, tk, d_k]) = (&q.shape[..], &k.shape[..]) else { return false };
            let mask_fits = mask.is_none_or(|m| m.dtype == DType::U32 && m.shape == [bh / self.heads.max(1), tk]);
            bh % self.heads.max(1) == 0 && bh == bh_k && d == d_k && k == v && tq > 0 && mask_fits
        };
        match inputs {
            [q, k, v, mask @ ..] if mask.len() <= 1 && fits(q, k, v, mask.first()) => {
                Ok(vec![(*q).clone(), TensorType::f32(&[q.shape[0] * q.shape[1]])])
            }
            _ => Err(format!(
                "takes q [B·H, Tq, D], k and v [B·H, Tk, D] ({} heads) and an optional u32 key mask [B, Tk], got {}",
                self.heads,
                describe(inputs)
            )),
        }
    }

    fn backward(&self, g: &mut Graph, node: NodeId, grads: &[Option<TensorId>]) -> Result<Vec<Option<TensorId>>> {
        let inputs = g.node(node).inputs.clone();
        let Some(d_o) = grads[0] else { return Ok(vec![None; inputs.len()]) };
        let back = AttentionBackward { forward: *self, masked: inputs.len() == 4 };
        let back = g.apply(back, &[&inputs[..], &[node.out(0), node.out(1), d_o]].concat())?;
        let mut grads: Vec<Option<TensorId>> = (0..3).map(|slot| Some(back.out(slot))).collect();
        grads.resize(inputs.len(), None); // the mask takes none
        Ok(grads)
    }

    fn flops(&self, inputs: &[&TensorType], _: &[TensorType], _: &[bool]) -> u64 {
        self.shape(&inputs[0].shape, &inputs[1].shape).flops_forward() as u64
    }

    fn cpu(&self, mut call: CpuCall) {
        let a = self.shape(call.shape(0), call.shape(1));
        let mask = call.inputs.get(3).map(|m| indices(m));
        let [o, lse] = &mut call.outputs[..] else { unreachable!("two outputs") };
        cpu::attention(&a, call.inputs[0], call.inputs[1], call.inputs[2], mask, o, lse, None);
    }

    fn gpu(&self, gpu: &Gpu, call: &GpuCall) -> kernels::Result<Vec<Dispatch>> {
        let a = self.shape(call.shape(0), call.shape(1));
        let [q, k, v, mask @ ..] = &call.inputs[..] else { unreachable!("checked when built") };
        let (o, lse) = (&call.outputs[0], &call.outputs[1]);
        Ok(vec![attention::attention(gpu, &a, q, k, v, mask.first(), o, lse, None)?])
    }
}

/// Inputs [q, k, v, (mask), o, lse, dO]: dQ, dK, dV, and the backward's per-row delta as
/// workspace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionBackward {
    /// The forward's settings.
    pub forward: Attention,
    /// Whether a key-padding mask is an input.
    pub masked: bool,
}

impl Operation for AttentionBackward {
    fn name(&self) -> &'static str {
        "attention_backward"
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        let saved = if self.masked { 4 } else { 3 };
        match inputs {
            [q, k, v, .., o, lse, d_o] if inputs.len() == saved + 3 && o == d_o && o == q => {
                Ok(vec![(*q).clone(), (*k).clone(), (*v).clone(), (*lse).clone()])
            }
            _ => Err(format!("takes q, k, v, the mask if any, O, lse and dO, got {}", describe(inputs))),
        }
    }

    fn backward(&self, g: &mut Graph, node: NodeId, _: &[Option<TensorId>]) -> Result<Vec<Option<TensorId>>> {
        Err(no_second_derivative(g, node))
    }

    fn flops(&self, inputs: &[&TensorType], _: &[TensorType], _: &[bool]) -> u64 {
        // Recomputing P, then dP, dS·K, dSᵀ·Q and Pᵀ·dO: about 2.5 times the forward.
        (2.5 * self.forward.shape(&inputs[0].shape, &inputs[1].shape).flops_forward()) as u64
    }

    fn cpu(&self, mut call: CpuCall) {
        let a = self.forward.shape(call.shape(0), call.shape(1));
        let mask = self.masked.then(|| indices(call.inputs[3]));
        let d_o = *call.inputs.last().expect("dO");
        let [dq, dk, dv, _] = &mut call.outputs[..] else { unreachable!("four outputs") };
        cpu::attention_backward(&a, call.inputs[0], call.inputs[1], call.inputs[2], mask, d_o, dq, dk, dv);
    }

    fn gpu(&self, gpu: &Gpu, call: &GpuCall) -> kernels::Result<Vec<Dispatch>> {
        let a = self.forward.shape(call.shape(0), call.shape(1));
        let n = call.inputs.len();
        let (q, k, v) = (&call.inputs[0], &call.inputs[1], &call.inputs[2]);
        let mask = self.masked.then(|| &call.inputs[3]);
        let (o, lse, d_o) = (&call.inputs[n - 3], &call.inputs[n - 2], &call.inputs[n - 1]);
        let [dq, dk, dv, delta] = &call.outputs[..] else { unreachable!("four outputs") };
        Ok(attention::attention_backward(gpu, &a, q, k, v, mask, o, d_o, lse, delta, dq, dk, dv)?.into())
    }
}

impl Graph {
    /// Attention of q [B·H, Tq, D] over k, v [B·H, Tk, D] with `heads` heads, scaled by
    /// 1/√D, optionally causal and with a key-padding mask [B, Tk] (u32, 0 = hidden).
    pub fn attention(
        &mut self,
        q: TensorId,
        k: TensorId,
        v: TensorId,
        key_mask: Option<TensorId>,
        heads: usize,
        causal: bool,
    ) -> Result<TensorId> {
        let head_dim = self.shape(q).get(2).copied().unwrap_or(1);
        let op = Attention { heads, causal, scale: 1.0 / (head_dim as f32).sqrt() };
        self.apply1(op, &[&[q, k, v][..], key_mask.as_slice()].concat())
    }
}
