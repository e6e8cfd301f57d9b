//! A classifier's training graph: a model's logits, the cross-entropy loss, the number of
//! correct rows and the gradient of every parameter, in one graph that both executors run.

use std::collections::HashMap;

use crate::autodiff::backward;
use crate::error::Result;
use crate::ir::{Graph, Op, TensorId};
use crate::layers::{Initializers, Model};

/// Label of a row that pads a batch: it counts in neither the loss nor the correct count.
pub const PADDING_LABEL: u32 = u32::MAX;

/// A parameter and the node holding its gradient.
#[derive(Debug, Clone, PartialEq)]
pub struct Parameter {
    /// The PyTorch `state_dict` key.
    pub name: String,
    pub node: TensorId,
    pub grad: TensorId,
}

/// The graph of a classifier with its loss, metric and parameter gradients.
#[derive(Debug, Clone)]
pub struct Classifier {
    pub graph: Graph,
    /// The images (or features) fed as input "x".
    pub input: TensorId,
    /// The class labels fed as labels "y".
    pub labels: TensorId,
    pub logits: TensorId,
    /// Mean cross-entropy over the rows that are not padding.
    pub loss: TensorId,
    /// How many rows have their label as the top logit.
    pub correct: TensorId,
    /// Every parameter in declaration order, with its gradient.
    pub params: Vec<Parameter>,
    /// How the parameters and state start (drawn when a trainer asks for them).
    pub init: Initializers,
    /// Every `state_dict` key (parameters and state) in declaration order.
    pub state_dict: Vec<String>,
}

impl Classifier {
    /// Completes `model`, whose input node is `input` and output `logits` [rows, classes].
    pub fn new(model: Model, input: TensorId, logits: TensorId, label_smoothing: f32) -> Result<Self> {
        let Model { mut graph, init, .. } = model;
        let order: Vec<String> = init.names().map(str::to_string).collect();
        let (rows, classes) = match *graph.shape(logits) {
            [rows, classes] => (rows, classes),
            ref other => (other.first().copied().unwrap_or(0), 0),
        };
        let labels = graph.labels("y", rows, classes);
        let loss = graph.cross_entropy(logits, labels, label_smoothing)?;
        let correct = graph.correct(logits, labels, 1)?;
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
        Ok(Classifier { graph, input, labels, logits, loss, correct, params, init, state_dict: order })
    }

    /// The `state_dict` keys with their shapes, in declaration order.
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

    pub fn batch_size(&self) -> usize {
        self.graph.shape(self.input)[0]
    }
}

impl crate::trainer::Trainable for Classifier {
    fn graph(&self) -> &Graph {
        &self.graph
    }

    fn loss(&self) -> TensorId {
        self.loss
    }

    fn metrics(&self) -> Vec<(&'static str, TensorId)> {
        vec![("correct", self.correct)]
    }

    fn parameters(&self) -> &[Parameter] {
        &self.params
    }

    fn initial(&self) -> HashMap<String, Vec<f32>> {
        self.init.values()
    }
}
