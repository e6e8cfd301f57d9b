//! A model's training step as one graph: the [`Trainable`] model's forward and backward, the
//! gradients' global norm (and clipping), every parameter's update, and the loss and metrics
//! gathered into one tensor to read back; and which [`Pass`] each of its nodes is, where a
//! profile's time and a non-finite value are placed. The [`crate::Trainer`] runs it.

use std::collections::HashMap;

use kernels::Unary;

use crate::error::Result;
use crate::ir::{DType, Graph, Op, TensorId};
use crate::ops::{GradNorm, Update};
use crate::optim::{Training, optimizer_state_name};

/// A parameter and the node holding its gradient.
#[derive(Debug, Clone, PartialEq)]
pub struct Parameter {
    /// The PyTorch `state_dict` key.
    pub name: String,
    /// The parameter.
    pub node: TensorId,
    /// Its gradient.
    pub grad: TensorId,
}

/// What a trainer needs of a model: a graph with a scalar loss and named scalar metrics, the
/// trained parameters with their gradients, and the initial value of every parameter and
/// state tensor by `state_dict` name.
pub trait Trainable {
    /// The model's graph.
    fn graph(&self) -> &Graph;
    /// The scalar loss.
    fn loss(&self) -> TensorId;
    /// Scalar metrics by name, summed over the batch's rows.
    fn metrics(&self) -> Vec<(&'static str, TensorId)>;
    /// The trained parameters with their gradients.
    fn parameters(&self) -> &[Parameter];
    /// Drawn when called: a model's memory can be weighed before this allocates it.
    fn initial(&self) -> HashMap<String, Vec<f32>>;
}

/// Which part of a training step a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pass {
    /// The data fed to the step.
    Input,
    /// What the loss and the metrics are computed from (parameters included).
    Forward,
    /// Gradients.
    Backward,
    /// The gradients' norm and clipping, the updates, and the statistics read back.
    Optimizer,
}

/// One training step of a model as a graph: its forward and backward, the gradients' global
/// norm (clipping them, if asked), every parameter's update, and the loss, metrics and norm
/// gathered into one tensor. Evaluation runs the same graph for `stats` alone, which neither
/// the norm nor the updates feed.
pub struct TrainingStep {
    /// The model's graph and everything the step adds.
    pub graph: Graph,
    /// [loss, metrics...].
    pub stats: TensorId,
    /// [loss, metrics..., the gradients' global norm before clipping].
    pub train_stats: TensorId,
    /// What a training run asks for: every updated parameter (so that the updates run) and
    /// `train_stats`.
    pub outputs: Vec<TensorId>,
    /// Each node's part of the step, by node index.
    pub passes: Vec<Pass>,
}

impl TrainingStep {
    /// The step of `model` trained as `training` says.
    pub fn new(model: &impl Trainable, training: &Training) -> Result<Self> {
        let mut graph = model.graph().clone();
        let stats = gather(&mut graph, model.loss(), &model.metrics())?;
        let (mut outputs, norm) = append_updates(&mut graph, model.parameters(), training)?;
        let norm = graph.slice(norm, 0, 0, 1)?;
        let train_stats = graph.concat(&[stats, norm], 0)?;
        outputs.push(train_stats);
        let passes = passes(&graph, model);
        Ok(TrainingStep { graph, stats, train_stats, outputs, passes })
    }

    /// What a training run that detects anomalies asks for: `outputs` and every tensor an
    /// anomaly report may name, each then kept in a buffer of its own.
    pub fn every_tensor(&self) -> Vec<TensorId> {
        let mut tensors = self.outputs.clone();
        tensors.extend(reported_tensors(&self.graph));
        tensors
    }
}

/// Every tensor of `graph` that an anomaly report may name: fed data and the outputs of its
/// ops, but not views and updated parameters (whose buffer is another tensor's) nor u32 data.
/// An update that made a parameter non-finite shows in the next step, at the first node that
/// reads the parameter.
pub(crate) fn reported_tensors(graph: &Graph) -> Vec<TensorId> {
    let mut tensors = Vec::new();
    for (id, node) in graph.nodes() {
        let slots = match &node.op {
            Op::Input { .. } => 0..1,
            Op::Compute(op) => (op.aliases_input() as usize)..node.outputs.len(),
            _ => continue,
        };
        tensors.extend(slots.map(|slot| id.out(slot)).filter(|&t| graph.ty(t).dtype == DType::F32));
    }
    tensors
}

/// Each node's part of a training step of `model` whose graph is `step`: the model's nodes
/// that the loss or a metric depends on are the forward pass, its other nodes (its gradients)
/// the backward pass, and what the step adds after them the optimizer.
fn passes(step: &Graph, model: &impl Trainable) -> Vec<Pass> {
    let mut ends: Vec<TensorId> = model.metrics().iter().map(|&(_, t)| t).collect();
    ends.push(model.loss());
    let forward = model.graph().ancestors(&ends);
    let model_nodes = model.graph().len();
    (step.nodes())
        .map(|(id, node)| match &node.op {
            Op::Input { .. } | Op::Labels { .. } => Pass::Input,
            _ if id.index() >= model_nodes => Pass::Optimizer,
            _ if forward.binary_search(&id).is_ok() => Pass::Forward,
            _ => Pass::Backward,
        })
        .collect()
}

/// [loss, metrics...] as one [1 + metrics] tensor, so that one readback returns them all.
fn gather(g: &mut Graph, loss: TensorId, metrics: &[(&'static str, TensorId)]) -> Result<TensorId> {
    let scalars = std::iter::once(loss).chain(metrics.iter().map(|&(_, t)| t));
    let parts: Vec<TensorId> = scalars.map(|t| g.reshape(t, &[1])).collect::<Result<_>>()?;
    g.concat(&parts, 0)
}

/// Appends the gradients' global norm, clipping them if asked, and every parameter's update;
/// returns the updated parameters, which a training run must ask for so that the updates run,
/// and [norm, clipping factor].
fn append_updates(g: &mut Graph, params: &[Parameter], training: &Training) -> Result<(Vec<TensorId>, TensorId)> {
    // Clipping scales each gradient in place, so each parameter's is a tensor of its own: a
    // gradient that reaches two parameters (an LSTM's two biases, added before use) is copied
    // for the second.
    let mut grads: Vec<TensorId> = Vec::with_capacity(params.len());
    for p in params {
        let grad = match grads.contains(&p.grad) {
            true => g.unary(Unary::Identity, p.grad)?,
            false => p.grad,
        };
        grads.push(grad);
    }
    let norm = match grads.is_empty() {
        true => g.fill(0.0, &[2]),
        false => g.apply1(GradNorm { clip_to: training.clip_grad_norm }, &grads)?,
    };
    // The updates read the norm only where it scales the gradients they read.
    let clip = training.clip_grad_norm.map(|_| norm);
    let mut updated = Vec::new();
    for (p, &grad) in params.iter().zip(&grads) {
        let shape = g.shape(p.node).to_vec();
        let mut inputs = vec![p.node, grad];
        for slot in 0..training.optimizer.state_count() {
            inputs.push(g.state(&optimizer_state_name(&training.optimizer, slot, &p.name), &shape));
        }
        inputs.extend(clip);
        let u = g.apply1(Update { training: *training }, &inputs)?;
        g.set_label(u, format!("update {}", p.name));
        updated.push(u);
    }
    Ok((updated, norm))
}
