//! Layer norm and batch norm. Each forward outputs the statistics it normalised with, and one
//! backward node returns dx, dgamma and dbeta from them.

use kernels::{BatchNorm as BatchNormShape, Dispatch, Gpu, LayerNorm as LayerNormShape, cpu, norm};

use super::{CpuCall, GpuCall, Operation, describe, no_second_derivative};
use crate::error::Result;
use crate::ir::{DType, Graph, Mode, NodeId, TensorId, TensorType};

/// Are these all f32 vectors of length `n`?
fn vectors_of(n: usize, ts: &[&TensorType]) -> bool {
    ts.iter().all(|t| t.dtype == DType::F32 && t.shape == [n])
}

/// The gradients of a norm's x, gamma and beta: its backward node's three outputs.
fn three_gradients(back: NodeId) -> Vec<Option<TensorId>> {
    (0..3).map(|slot| Some(back.out(slot))).collect()
}

fn layer_norm_shape(x: &[usize], eps: f32) -> LayerNormShape {
    let features = *x.last().expect("checked when built");
    LayerNormShape { rows: x.iter().product::<usize>() / features, features, eps }
}

/// Inputs [x, gamma, beta]: layer norm over the last axis, scaled and shifted. Outputs: y and
/// the statistics [2, rows] (each row's mean, then each row's 1/std).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerNorm {
    /// Added to the variance.
    pub eps: f32,
}

impl Operation for LayerNorm {
    fn name(&self) -> &'static str {
        "layer_norm"
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        match inputs {
            [x, gamma, beta] if x.dtype == DType::F32 && !x.shape.is_empty() => {
                let d = *x.shape.last().unwrap();
                if !vectors_of(d, &[gamma, beta]) {
                    return Err(format!(
                        "input {:?} needs gamma and beta of its last axis, got {:?} and {:?}",
                        x.shape, gamma.shape, beta.shape
                    ));
                }
                Ok(vec![(*x).clone(), TensorType::f32(&[2, x.len() / d.max(1)])])
            }
            _ => Err(format!("takes x, gamma and beta, got {}", describe(inputs))),
        }
    }

    fn backward(&self, g: &mut Graph, node: NodeId, grads: &[Option<TensorId>]) -> Result<Vec<Option<TensorId>>> {
        let Some(dy) = grads[0] else { return Ok(vec![None; 3]) };
        let [x, gamma, _] = g.node(node).inputs[..] else { unreachable!("three inputs") };
        let back = g.apply(NormBackward { norm: Norm::Layer, eps: self.eps }, &[x, gamma, node.out(1), dy])?;
        Ok(three_gradients(back))
    }

    fn flops(&self, inputs: &[&TensorType], _: &[TensorType], _: &[bool]) -> u64 {
        8 * inputs[0].len() as u64
    }

    fn cpu(&self, mut call: CpuCall) {
        let ln = layer_norm_shape(call.shape(0), self.eps);
        let [y, saved] = &mut call.outputs[..] else { unreachable!("two outputs") };
        cpu::layer_norm(&ln, call.inputs[0], call.inputs[1], call.inputs[2], y, saved);
    }

    fn gpu(&self, gpu: &Gpu, call: &GpuCall) -> kernels::Result<Vec<Dispatch>> {
        let ln = layer_norm_shape(call.shape(0), self.eps);
        let [x, gamma, beta] = &call.inputs[..] else { unreachable!("three inputs") };
        Ok(vec![norm::layer_norm(gpu, &ln, x, gamma, beta, &call.outputs[0], &call.outputs[1])?])
    }
}

fn batch_norm_shape(x: &[usize], eps: f32, momentum: f32, mode: Mode) -> BatchNormShape {
    BatchNormShape {
        batch: x[0],
        channels: x[1],
        spatial: x[2..].iter().product(),
        eps,
        momentum,
        train: mode == Mode::Train,
    }
}

/// Inputs [x [N, C, ...], gamma, beta, running_mean, running_var]: batch norm per channel.
/// Training normalises with the batch's statistics and folds them into the running ones in
/// place (`momentum`, PyTorch's rule); evaluation uses the running ones. Outputs: y and the
/// statistics used [2, C] (each channel's mean, then its 1/std).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchNorm {
    /// Added to the variance.
    pub eps: f32,
    /// The batch's weight in the running statistics.
    pub momentum: f32,
}

impl Operation for BatchNorm {
    fn name(&self) -> &'static str {
        "batch_norm"
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        match inputs {
            [x, per_channel @ ..] if x.shape.len() >= 2 && per_channel.len() == 4 => {
                let c = x.shape[1];
                if !vectors_of(c, per_channel) {
                    return Err(format!(
                        "input {:?} must be [N, C, ...] with gamma, beta and running statistics [C], got {}",
                        x.shape,
                        describe(per_channel)
                    ));
                }
                Ok(vec![(*x).clone(), TensorType::f32(&[2, c])])
            }
            _ => Err(format!("takes x, gamma, beta, running_mean and running_var, got {}", describe(inputs))),
        }
    }

    // The running statistics get no gradient: in training they are not an input of y.
    fn backward(&self, g: &mut Graph, node: NodeId, grads: &[Option<TensorId>]) -> Result<Vec<Option<TensorId>>> {
        let Some(dy) = grads[0] else { return Ok(vec![None; 5]) };
        let [x, gamma, ..] = g.node(node).inputs[..] else { unreachable!("five inputs") };
        let back = g.apply(NormBackward { norm: Norm::Batch, eps: self.eps }, &[x, gamma, node.out(1), dy])?;
        let mut grads = three_gradients(back);
        grads.extend([None, None]);
        Ok(grads)
    }

    fn flops(&self, inputs: &[&TensorType], _: &[TensorType], _: &[bool]) -> u64 {
        8 * inputs[0].len() as u64
    }

    fn updates(&self, input: usize) -> bool {
        input == 3 || input == 4
    }

    fn cpu(&self, mut call: CpuCall) {
        let bn = batch_norm_shape(call.shape(0), self.eps, self.momentum, call.mode);
        let [y, saved] = &mut call.outputs[..] else { unreachable!("two outputs") };
        let [mean, var] = &mut call.updated[..] else { unreachable!("the running statistics") };
        cpu::batch_norm(&bn, call.inputs[0], call.inputs[1], call.inputs[2], mean, var, saved, y);
    }

    fn gpu(&self, gpu: &Gpu, call: &GpuCall) -> kernels::Result<Vec<Dispatch>> {
        let bn = batch_norm_shape(call.shape(0), self.eps, self.momentum, call.mode);
        let [x, gamma, beta, mean, var] = &call.inputs[..] else { unreachable!("five inputs") };
        Ok(norm::batch_norm(gpu, &bn, x, gamma, beta, mean, var, &call.outputs[1], &call.outputs[0])?.into())
    }
}

/// Which normalisation a backward belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Norm {
    /// Layer norm.
    Layer,
    /// Batch norm.
    Batch,
}

/// Inputs [x, gamma, saved statistics, dy]: every gradient of a layer or batch norm from the
/// statistics its forward saved. Outputs: dx, dgamma, dbeta. A batch norm in evaluation mode
/// normalised with constants, so its dx is dy scaled per channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NormBackward {
    /// Which norm's.
    pub norm: Norm,
    /// The forward's.
    pub eps: f32,
}

impl Operation for NormBackward {
    fn name(&self) -> &'static str {
        match self.norm {
            Norm::Layer => "layer_norm_backward",
            Norm::Batch => "batch_norm_backward",
        }
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        match inputs {
            [x, gamma, _, dy] if x == dy => Ok(vec![(*x).clone(), (*gamma).clone(), (*gamma).clone()]),
            _ => Err(format!("takes x, gamma, the statistics and dy, got {}", describe(inputs))),
        }
    }

    fn backward(&self, g: &mut Graph, node: NodeId, _: &[Option<TensorId>]) -> Result<Vec<Option<TensorId>>> {
        Err(no_second_derivative(g, node))
    }

    fn flops(&self, inputs: &[&TensorType], _: &[TensorType], _: &[bool]) -> u64 {
        10 * inputs[0].len() as u64
    }

    fn cpu(&self, mut call: CpuCall) {
        let (x_shape, mode) = (call.shape(0).to_vec(), call.mode);
        let [x, gamma, saved, dy] = call.inputs[..] else { unreachable!("four inputs") };
        let [dx, dgamma, dbeta] = &mut call.outputs[..] else { unreachable!("three outputs") };
        match self.norm {
            Norm::Layer => {
                let ln = layer_norm_shape(&x_shape, self.eps);
                cpu::layer_norm_backward(&ln, x, dy, saved, gamma, dgamma, dbeta, dx)
            }
            Norm::Batch => {
                let bn = batch_norm_shape(&x_shape, self.eps, 0.0, mode);
                cpu::batch_norm_backward(&bn, x, dy, saved, gamma, dgamma, dbeta, dx)
            }
        }
    }

    fn gpu(&self, gpu: &Gpu, call: &GpuCall) -> kernels::Result<Vec<Dispatch>> {
        let [x, gamma, saved, dy] = &call.inputs[..] else { unreachable!("four inputs") };
        let [dx, dgamma, dbeta] = &call.outputs[..] else { unreachable!("three outputs") };
        Ok(match self.norm {
            Norm::Layer => {
                let ln = layer_norm_shape(call.shape(0), self.eps);
                norm::layer_norm_backward(gpu, &ln, x, dy, saved, gamma, dgamma, dbeta, dx)?
            }
            Norm::Batch => {
                let bn = batch_norm_shape(call.shape(0), self.eps, 0.0, call.mode);
                norm::batch_norm_backward(gpu, &bn, x, dy, saved, gamma, dgamma, dbeta, dx)?
            }
        }
        .into())
    }
}

impl Graph {
    /// Layer norm of `x` over its last axis with learned `gamma` and `beta` of that length.
    pub fn layer_norm(&mut self, x: TensorId, gamma: TensorId, beta: TensorId, eps: f32) -> Result<TensorId> {
        self.apply1(LayerNorm { eps }, &[x, gamma, beta])
    }

    /// Batch norm of `x` [N, C, ...] over its channels (axis 1), with `gamma`, `beta` and the
    /// running statistics all [C].
    pub fn batch_norm(&mut self, x: TensorId, params: [TensorId; 4], eps: f32, momentum: f32) -> Result<TensorId> {
        let [gamma, beta, running_mean, running_var] = params;
        self.apply1(BatchNorm { eps, momentum }, &[x, gamma, beta, running_mean, running_var])
    }
}
