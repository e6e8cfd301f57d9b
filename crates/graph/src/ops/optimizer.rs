//! Parameter updates as graph ops, so that a training step (forward, backward, clipping and
//! every update) is one run of one graph on any executor, one submission on a GPU.

use kernels::{Dispatch, Gpu, GpuTensor, Optimizer, cpu, optimizer};

use super::{CpuCall, GpuCall, Operation, describe};
use crate::error::{GraphError, Result};
use crate::ir::{DType, Graph, Mode, NodeId, TensorId, TensorType};
use crate::optim::Training;

/// What an optimizer's op answers when asked for its gradient.
fn not_differentiable(g: &Graph, node: NodeId) -> GraphError {
    GraphError::NotDifferentiable { node: g.node(node).label.clone(), detail: "an update has no gradient".into() }
}

/// Inputs: every gradient. Output: [their global L2 norm, the clipping factor] and the
/// workspace of the norm's partial sums. With `clip_to`, the gradients are scaled in place so
/// that their norm is at most that (`torch.nn.utils.clip_grad_norm_`); without, they are only
/// measured (a training step reads the norm to stop on a non-finite gradient).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradNorm {
    /// Scale the gradients to at most this global norm; None: only measure it.
    pub clip_to: Option<f32>,
}

impl Operation for GradNorm {
    fn name(&self) -> &'static str {
        "grad_norm"
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        if inputs.is_empty() || inputs.iter().any(|t| t.dtype != DType::F32) {
            return Err(format!("takes the f32 gradients, got {}", describe(inputs)));
        }
        let lens: Vec<usize> = inputs.iter().map(|t| t.len()).collect();
        Ok(vec![TensorType::f32(&[2]), TensorType::f32(&[optimizer::norm_partials(&lens)])])
    }

    fn backward(&self, g: &mut Graph, node: NodeId, _: &[Option<TensorId>]) -> Result<Vec<Option<TensorId>>> {
        Err(not_differentiable(g, node))
    }

    fn flops(&self, inputs: &[&TensorType], _: &[TensorType], _: &[bool]) -> u64 {
        let passes = if self.clip_to.is_some() { 3 } else { 2 };
        passes * inputs.iter().map(|t| t.len() as u64).sum::<u64>()
    }

    fn updates(&self, _input: usize) -> bool {
        self.clip_to.is_some()
    }

    fn cpu(&self, mut call: CpuCall) {
        let (norm, factor) = match self.clip_to {
            Some(max_norm) => {
                let norm = cpu::clip_grad_norm(&mut call.updated, max_norm);
                (norm, (max_norm as f64 / (norm as f64 + 1e-6)).min(1.0))
            }
            None => (cpu::grad_norm(&call.inputs), 1.0),
        };
        call.outputs[0].copy_from_slice(&[norm, factor as f32]);
    }

    fn gpu(&self, gpu: &Gpu, call: &GpuCall) -> kernels::Result<Vec<Dispatch>> {
        let grads: Vec<&GpuTensor> = call.inputs.iter().collect();
        optimizer::grad_norm(gpu, &grads, self.clip_to, &call.outputs[1], &call.outputs[0])
    }
}

/// Inputs [param, grad, the optimizer's state tensors..., and, where gradients are clipped,
/// the [`GradNorm`]'s output, read so that the update runs after the clipping]: one update of the parameter
/// and its state in place, at the learning rate `training` schedules for update number
/// step + 1 of the run. Output: the parameter, in its own buffer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Update {
    /// The optimizer, schedule and clipping.
    pub training: Training,
}

impl Update {
    fn states(&self) -> usize {
        self.training.optimizer.state_count()
    }
}

impl Operation for Update {
    fn name(&self) -> &'static str {
        "update"
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        let states = self.states();
        let fits = match inputs {
            [param, rest @ ..] => {
                let tensors = &rest[..rest.len().min(1 + states)];
                let after = &rest[tensors.len()..];
                param.dtype == DType::F32
                    && tensors.len() == 1 + states
                    && tensors.iter().all(|t| t == param)
                    && (after.is_empty() || (after.len() == 1 && after[0].shape == [2]))
            }
            [] => false,
        };
        if !fits {
            return Err(format!(
                "takes a parameter, its gradient and {states} state tensors, got {}",
                describe(inputs)
            ));
        }
        Ok(vec![inputs[0].clone()])
    }

    fn backward(&self, g: &mut Graph, node: NodeId, _: &[Option<TensorId>]) -> Result<Vec<Option<TensorId>>> {
        Err(not_differentiable(g, node))
    }

    fn flops(&self, inputs: &[&TensorType], _: &[TensorType], _: &[bool]) -> u64 {
        10 * inputs[0].len() as u64
    }

    fn aliases_input(&self) -> bool {
        true
    }

    fn updates(&self, input: usize) -> bool {
        input == 0 || (2..2 + self.states()).contains(&input)
    }

    fn cpu(&self, mut call: CpuCall) {
        let step = call.step + 1;
        let grad = call.inputs[1];
        let (param, state) = call.updated.split_first_mut().expect("the parameter");
        match (self.training.optimizer_at(step), state) {
            (Optimizer::Sgd(s), [buf]) => cpu::sgd(&s, step, param, grad, buf),
            (Optimizer::Adam(a), [m, v]) => cpu::adam(&a, step, param, grad, m, v),
            _ => unreachable!("state_count tensors per parameter"),
        }
    }

    fn gpu(&self, gpu: &Gpu, call: &GpuCall) -> kernels::Result<Vec<Dispatch>> {
        let state: Vec<&GpuTensor> = call.inputs[2..2 + self.states()].iter().collect();
        let first = self.training.optimizer_at(1);
        Ok(vec![optimizer::update(gpu, &first, 1, &call.inputs[0], &call.inputs[1], &state)?])
    }

    fn before_run(&self, gpu: &Gpu, _: Mode, outputs: &[TensorType], dispatches: &[Dispatch], step: u64) {
        let optimizer = self.training.optimizer_at(step + 1);
        optimizer::set_step(gpu, &dispatches[0], &optimizer, step + 1, outputs[0].len());
    }
}
