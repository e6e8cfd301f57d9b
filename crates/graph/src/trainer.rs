//! Training and evaluating a model on any [`Executor`]. The training step (forward, backward,
//! global-norm clipping, every parameter's update, and the loss and metrics gathered into one
//! tensor to read back) is one graph, built here once, and one run of it: one submission on a
//! GPU. Any scalar loss and any named metrics train this way, not only a classifier's.

use std::collections::HashMap;

use crate::anomaly::{self, Anomaly};
use crate::error::{GraphError, Result};
use crate::executor::{Executor, RunId};
use crate::feed::Feed;
use crate::ir::{Graph, Mode, Op};
use crate::optim::{Training, optimizer_state_name};
use crate::profile::Profile;
use crate::step::{Trainable, TrainingStep};

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

    /// The metric `name`, if the model has it.
    pub fn metric(&self, name: &str) -> Option<f32> {
        self.metrics.iter().find(|(n, _)| *n == name).map(|&(_, v)| v)
    }
}

/// Everything training has changed: parameter and state values by `state_dict` name, the
/// optimizer's per-parameter state tensors ([`kernels::Optimizer::state_count`] each), and
/// the updates done.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainerState {
    /// Parameters and state by `state_dict` name.
    pub params: HashMap<String, Vec<f32>>,
    /// Each trained parameter's optimizer state tensors, by its name.
    pub optimizer: HashMap<String, Vec<Vec<f32>>>,
    /// Updates done.
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
            return Err(GraphError::Usage { node: "training step".into(), detail });
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

    /// The executor it trains on.
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
                None => return Err(GraphError::UnknownName { name: name.clone(), what: "value to restore" }),
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
