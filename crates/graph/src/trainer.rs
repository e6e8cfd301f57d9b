//! Training and evaluating a model on any [`Executor`]. The training step (forward, backward,
//! global-norm clipping, every parameter's update, and the loss and metrics gathered into one
//! tensor to read back) is one graph, built here once, and one run of it: one submission on a
//! GPU. Any scalar loss and any named metrics train this way, not only a classifier's.

use std::collections::HashMap;

use kernels::Unary;

use crate::anomaly::{self, Anomaly};
use crate::error::{GraphError, Result};
use crate::executor::{Executor, RunId};
use crate::feed::Feed;
use crate::ir::{Graph, Mode, Op, TensorId};
use crate::ops::{GradNorm, Update};
use crate::optim::{Training, optimizer_state_name};
use crate::profile::Profile;
use crate::supervised::Parameter;

/// What a trainer needs of a model: a graph with a scalar loss and named scalar metrics, the
/// trained parameters with their gradients, and the initial value of every parameter and
/// state tensor by `state_dict` name.
pub trait Trainable {
    fn graph(&self) -> &Graph;
    fn loss(&self) -> TensorId;
    fn metrics(&self) -> Vec<(&'static str, TensorId)>;
    fn parameters(&self) -> &[Parameter];
    /// Drawn when called: a model's memory can be weighed before this allocates it.
    fn initial(&self) -> HashMap<String, Vec<f32>>;
}

/// The scalars one step reads back.
#[derive(Debug, Clone, PartialEq)]
pub struct StepStats {
    /// The loss before the update.
    pub loss: f32,
    /// A training step's global L2 norm of the gradients, before any clipping; None for an
    /// evaluation.
    pub grad_norm: Option<f32>,
    /// Each metric of the model by name (a classifier's "correct": how many rows of the batch
    /// it classified correctly).
    pub metrics: Vec<(&'static str, f32)>,
}

impl StepStats {
    /// Whether the loss and the gradient norm are finite. After a step whose are not, the
    /// parameters are not worth keeping.
    pub fn is_finite(&self) -> bool {
        self.loss.is_finite() && self.grad_norm.is_none_or(f32::is_finite)
    }

    pub fn metric(&self, name: &str) -> Option<f32> {
        self.metrics.iter().find(|(n, _)| *n == name).map(|&(_, v)| v)
    }
}

/// Everything training has changed: parameter and state values by `state_dict` name, the
/// optimizer's per-parameter state tensors ([`kernels::Optimizer::state_count`] each), and
/// the updates done.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainerState {
    pub params: HashMap<String, Vec<f32>>,
    pub optimizer: HashMap<String, Vec<Vec<f32>>>,
    pub steps: u64,
}

/// A model being trained on an executor, which holds its parameters and optimizer state.
pub struct Trainer<E: Executor> {
    exec: E,
    training: Training,
    /// Every parameter and state tensor with its length, in `state_dict` order.
    tensors: Vec<(String, usize)>,
    /// The trained parameters' names.
    trained: Vec<String>,
    metric_names: Vec<&'static str>,
    train: RunId,
    eval: RunId,
    /// The training step's graph and the part of it each node is: where a profile's time and
    /// a non-finite value are placed.
    step: TrainingStep,
    /// Whether the step keeps every tensor ([`Trainer::detecting_anomalies`]).
    detects_anomalies: bool,
    steps: u64,
}

impl<E: Executor> Trainer<E> {
    /// Prepares `model`'s training step and evaluation on `exec` and writes its initial
    /// parameters there, the optimizer state zero.
    pub fn new(exec: E, model: &impl Trainable, training: Training) -> Result<Self> {
        Self::build(exec, model, training, false)
    }

    /// As [`Trainer::new`], for a trainer that can name where a step's values stopped being
    /// finite ([`Trainer::first_non_finite`]): its step keeps every tensor in a buffer of its
    /// own, so it takes the memory [`crate::Plan::unshared_elements`] counts.
    pub fn detecting_anomalies(exec: E, model: &impl Trainable, training: Training) -> Result<Self> {
        Self::build(exec, model, training, true)
    }

    fn build(mut exec: E, model: &impl Trainable, training: Training, detects_anomalies: bool) -> Result<Self> {
        let step = TrainingStep::new(model, &training)?;
        let eval = exec.prepare(&step.graph, Mode::Eval, &[step.stats])?;
        let kept = if detects_anomalies { step.every_tensor() } else { step.outputs.clone() };
        let train = exec.prepare(&step.graph, Mode::Train, &kept)?;
        let metrics = model.metrics();
        let initial = model.initial();
        let tensors = state_dict(model.graph()).into_iter().map(|name| (name.clone(), initial[&name].len())).collect();
        let trained = model.parameters().iter().map(|p| p.name.clone()).collect();
        let metric_names = metrics.iter().map(|&(name, _)| name).collect();
        let mut trainer =
            Trainer { exec, training, tensors, trained, metric_names, train, eval, step, detects_anomalies, steps: 0 };
        for (name, value) in &initial {
            trainer.exec.write_named(name, value)?;
        }
        Ok(trainer)
    }

    /// One update from a batch: forward, backward, clipping and the optimizer step. Returns
    /// the batch's loss and metrics before the update.
    pub fn train_step(&mut self, feed: &Feed) -> Result<StepStats> {
        self.exec.run(self.train, feed, self.steps)?;
        self.steps += 1;
        let mut values = self.exec.read(self.train, self.step.train_stats)?;
        let grad_norm = values.pop();
        Ok(StepStats { grad_norm, ..self.stats_of(&values) })
    }

    /// The loss and metrics of a batch under the current parameters; nothing changes.
    pub fn evaluate(&mut self, feed: &Feed) -> Result<StepStats> {
        self.exec.run(self.eval, feed, self.steps)?;
        Ok(self.stats_of(&self.exec.read(self.eval, self.step.stats)?))
    }

    /// [loss, metrics...] as stats.
    fn stats_of(&self, values: &[f32]) -> StepStats {
        let metrics = self.metric_names.iter().copied().zip(values[1..].iter().copied()).collect();
        StepStats { loss: values[0], grad_norm: None, metrics }
    }

    /// Whether the trainer was built by [`Trainer::detecting_anomalies`].
    pub fn detects_anomalies(&self) -> bool {
        self.detects_anomalies
    }

    /// The first tensor of the last training step, in the order the step computed them, that
    /// holds a NaN or an infinity, with the model layer it belongs to; None when all are
    /// finite. Only a trainer built by [`Trainer::detecting_anomalies`] keeps them.
    pub fn first_non_finite(&self) -> Result<Option<Anomaly>> {
        if !self.detects_anomalies {
            let detail = "this trainer keeps no step's tensors: build it with Trainer::detecting_anomalies".into();
            return Err(GraphError::Shape { node: "training step".into(), detail });
        }
        anomaly::first_non_finite(&self.exec, self.train, &self.step.graph, &self.step.passes)
    }

    /// Where the training steps' time went, per layer and pass and per op kind, when the
    /// executor times its nodes ([`crate::CpuExecutor::profiled`],
    /// [`crate::GpuExecutor::profiled`]); empty otherwise.
    pub fn profile(&self) -> Profile {
        Profile::new(self.exec.profile(self.train), &self.step.graph, &self.step.passes)
    }

    /// Current parameter and state values by `state_dict` name.
    pub fn params(&self) -> Result<HashMap<String, Vec<f32>>> {
        self.tensors.iter().map(|(name, _)| Ok((name.clone(), self.exec.read_named(name)?))).collect()
    }

    /// Updates done so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The optimizer, schedule and clipping it trains with.
    pub fn training(&self) -> &Training {
        &self.training
    }

    pub fn executor(&self) -> &E {
        &self.exec
    }

    /// The prepared training step and evaluation runs.
    pub fn runs(&self) -> (RunId, RunId) {
        (self.train, self.eval)
    }

    /// A copy of everything training has changed (for a checkpoint).
    pub fn state(&self) -> Result<TrainerState> {
        let mut optimizer = HashMap::new();
        for name in &self.trained {
            let slots = (0..self.training.optimizer.state_count())
                .map(|slot| self.exec.read_named(&optimizer_state_name(&self.training.optimizer, slot, name)))
                .collect::<Result<_>>()?;
            optimizer.insert(name.clone(), slots);
        }
        Ok(TrainerState { params: self.params()?, optimizer, steps: self.steps })
    }

    /// Continues from `state` (a loaded checkpoint), which must be of this model.
    pub fn restore(&mut self, state: &TrainerState) -> Result<()> {
        self.check_fits(state)?;
        for (name, _) in &self.tensors {
            self.exec.write_named(name, &state.params[name])?;
        }
        for name in &self.trained {
            for (slot, value) in state.optimizer[name].iter().enumerate() {
                self.exec.write_named(&optimizer_state_name(&self.training.optimizer, slot, name), value)?;
            }
        }
        self.steps = state.steps;
        Ok(())
    }

    /// Fails unless `state` has a value of the right length for every parameter, state
    /// tensor and optimizer slot.
    fn check_fits(&self, state: &TrainerState) -> Result<()> {
        let mismatch = |name: &str, detail: String| GraphError::Shape { node: name.to_string(), detail };
        let lengths: HashMap<&str, usize> = self.tensors.iter().map(|(n, len)| (n.as_str(), *len)).collect();
        for (name, want) in &self.tensors {
            match state.params.get(name) {
                Some(v) if v.len() == *want => {}
                Some(v) => return Err(mismatch(name, format!("{} values for {want}", v.len()))),
                None => return Err(mismatch(name, "no value to restore".into())),
            }
        }
        for name in &self.trained {
            let slots = state.optimizer.get(name).map_or(&[][..], |s| s.as_slice());
            let fits = slots.len() == self.training.optimizer.state_count()
                && slots.iter().all(|s| s.len() == lengths[name.as_str()]);
            if !fits {
                return Err(mismatch(name, "optimizer state does not fit this optimizer and parameter".into()));
            }
        }
        Ok(())
    }
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
        tensors.extend(anomaly::reported_tensors(&self.graph));
        tensors
    }
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

/// The `state_dict` names of a graph's parameters and state, in graph order.
fn state_dict(graph: &Graph) -> Vec<String> {
    graph
        .nodes()
        .filter_map(|(_, n)| match &n.op {
            Op::Param { name } | Op::State { name } => Some(name.clone()),
            _ => None,
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
