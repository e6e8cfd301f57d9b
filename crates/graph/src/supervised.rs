//! A supervised model's training graph: the model's output, its loss against the targets, its
//! metrics and the gradient of every parameter, in one graph that both executors run. Two
//! objectives: classification (cross-entropy against class labels, per sample or per position
//! of a sequence) and regression (mean squared error against real values).

use std::collections::HashMap;

use crate::autodiff::backward;
use crate::error::Result;
use crate::ir::{Graph, Op, TensorId};
use crate::layers::{AttentionSite, Initializers, Model};
use crate::step::{Parameter, Trainable};

/// What the output is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objective {
    /// Logits against class labels "y" (u32, [`crate::PADDING_LABEL`] for padding rows); metric
    /// "correct": how many rows have their label as the top logit.
    Classification,
    /// Predictions against real targets "y" of the same shape; metric "squared_error": the
    /// sum of (prediction - target)² weighted by "w" (1 for a real row, 0 for padding).
    Regression,
}

/// The graph of a model with its loss, metric and parameter gradients.
#[derive(Debug, Clone)]
pub struct Supervised {
    /// The model and its loss, metric and gradients.
    pub graph: Graph,
    /// The samples fed as input "x".
    pub input: TensorId,
    /// The targets fed as "y".
    pub targets: TensorId,
    /// Logits [rows, classes] or predictions [rows, values].
    pub output: TensorId,
    /// Mean cross-entropy over the rows that are not padding, or mean squared error.
    pub loss: TensorId,
    /// What the output is held to.
    pub objective: Objective,
    /// The objective's metric (see [`Objective`]).
    pub metric: TensorId,
    /// Every parameter in declaration order, with its gradient.
    pub params: Vec<Parameter>,
    /// How the parameters and state start (drawn when a trainer asks for them).
    pub init: Initializers,
    /// Every `state_dict` key (parameters and state) in declaration order.
    pub state_dict: Vec<String>,
    /// `state_dict` keys that name another key's tensor (a tied weight), with that key.
    pub tied: Vec<(String, String)>,
    /// The model's attention layers, in order.
    pub attention: Vec<AttentionSite>,
}

impl Supervised {
    /// A classifier: `model`, whose input node is `input`, gives `logits` [rows, classes], or
    /// [batch, positions, classes] for a class at each position (a language model's next
    /// token), taken as batch · positions rows.
    pub fn classifier(model: Model, input: TensorId, logits: TensorId, label_smoothing: f32) -> Result<Self> {
        let Model { mut graph, init, tied, attention, .. } = model;
        let logits = match *graph.shape(logits) {
            [batch, positions, classes] => graph.reshape(logits, &[batch * positions, classes])?,
            _ => logits,
        };
        let (rows, classes) = match *graph.shape(logits) {
            [rows, classes] => (rows, classes),
            ref other => (other.first().copied().unwrap_or(0), 0),
        };
        let labels = graph.labels("y", rows, classes);
        let loss = graph.cross_entropy(logits, labels, label_smoothing)?;
        let correct = graph.correct(logits, labels, 1)?;
        let objective = (Objective::Classification, correct);
        Self::complete((graph, init, tied, attention), input, (labels, logits), loss, objective)
    }

    /// A regressor: `model`, whose input node is `input`, predicts `prediction` [rows, values].
    pub fn regressor(model: Model, input: TensorId, prediction: TensorId) -> Result<Self> {
        let Model { mut graph, init, tied, attention, .. } = model;
        let shape = graph.shape(prediction).to_vec();
        let targets = graph.input("y", &shape);
        let weights = graph.input("w", &shape);
        let loss = graph.mse(prediction, targets)?;
        let error = graph.binary(kernels::Binary::Sub, prediction, targets)?;
        let square = graph.binary(kernels::Binary::Mul, error, error)?;
        let weighted = graph.binary(kernels::Binary::Mul, square, weights)?;
        let squared_error = graph.sum(weighted)?;
        let objective = (Objective::Regression, squared_error);
        Self::complete((graph, init, tied, attention), input, (targets, prediction), loss, objective)
    }

    /// Adds the gradient of every trained parameter to the model's graph.
    fn complete(
        (mut graph, init, tied, attention): (Graph, Initializers, Vec<(String, String)>, Vec<AttentionSite>),
        input: TensorId,
        (targets, output): (TensorId, TensorId),
        loss: TensorId,
        (objective, metric): (Objective, TensorId),
    ) -> Result<Self> {
        let order: Vec<String> = init.names().map(str::to_string).collect();
        let grads = backward(&mut graph, loss)?;
        // Trained parameters only: state (running statistics) has no gradient.
        let trained: Vec<(String, TensorId)> =
            order.iter().cloned().filter_map(|name| graph.find_param(&name).map(|node| (name, node))).collect();
        let params = trained
            .into_iter()
            .map(|(name, node)| {
                // A parameter the loss does not reach gets a zero gradient.
                let grad = match grads.of(node) {
                    Some(grad) => grad,
                    None => {
                        let shape = graph.shape(node).to_vec();
                        graph.fill(0.0, &shape)
                    }
                };
                Parameter { name, node, grad }
            })
            .collect();
        Ok(Supervised {
            graph,
            input,
            targets,
            output,
            loss,
            objective,
            metric,
            params,
            init,
            state_dict: order,
            tied,
            attention,
        })
    }

    /// The `state_dict` keys with their shapes, in declaration order (tied keys not included).
    pub fn state_dict_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let shapes: HashMap<&str, &[usize]> = self
            .graph
            .nodes()
            .filter_map(|(_, n)| match &n.op {
                Op::Param { name } | Op::State { name } => Some((name.as_str(), n.outputs[0].shape.as_slice())),
                _ => None,
            })
            .collect();
        self.state_dict.iter().map(|name| (name.clone(), shapes[name.as_str()].to_vec())).collect()
    }

    /// Samples per batch, as the model was built.
    pub fn batch_size(&self) -> usize {
        self.graph.shape(self.input)[0]
    }

    /// The metric's name.
    pub fn metric_name(&self) -> &'static str {
        match self.objective {
            Objective::Classification => "correct",
            Objective::Regression => "squared_error",
        }
    }
}

impl Trainable for Supervised {
    fn graph(&self) -> &Graph {
        &self.graph
    }

    fn loss(&self) -> TensorId {
        self.loss
    }

    fn metrics(&self) -> Vec<(&'static str, TensorId)> {
        vec![(self.metric_name(), self.metric)]
    }

    fn parameters(&self) -> &[Parameter] {
        &self.params
    }

    fn initial(&self) -> HashMap<String, Vec<f32>> {
        self.init.values()
    }
}
