//! Where a training step's values first stopped being finite (`dlcli train --detect-anomaly`,
//! as `torch.autograd.detect_anomaly`). A trainer that detects anomalies runs its step with
//! every tensor kept in a buffer of its own; after a step whose loss or gradient norm is not
//! finite, [`first_non_finite`] reads the step's tensors in the order they were computed and
//! names the first that holds a NaN or an infinity, with the model layer it belongs to.

use std::fmt;

use crate::error::Result;
use crate::executor::{Executor, RunId};
use crate::ir::Graph;
use crate::step::{Pass, reported_tensors};

/// The first non-finite tensor of a training step.
#[derive(Debug, Clone, PartialEq)]
pub struct Anomaly {
    /// The model layer the node belongs to (the config's name), if a layer claimed it.
    pub layer: Option<String>,
    /// The node's label: a layer's name on its output node, else the op and its index.
    pub node: String,
    /// The op's kind (`matmul`, `binary Add`, `conv2d_backward`).
    pub op: String,
    /// Which part of the step the node is.
    pub pass: Pass,
    /// The output of the node, and its shape.
    pub slot: usize,
    /// The output's shape.
    pub shape: Vec<usize>,
    /// How many of its values are not finite, the first of them and where.
    pub count: usize,
    /// The first non-finite value's index in the output, and the value.
    pub first: (usize, f32),
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pass = match self.pass {
            Pass::Input => "the input data",
            Pass::Forward => "forward",
            Pass::Backward => "backward",
            Pass::Optimizer => "the optimizer",
        };
        match &self.layer {
            Some(layer) => write!(f, "layer {layer:?}, {pass}")?,
            None => write!(f, "{pass}")?,
        }
        let (at, value) = self.first;
        let total: usize = self.shape.iter().product();
        write!(
            f,
            " ({}: {} output {} of shape {:?}): {} of its {total} values are not finite, the first {value} at element {at}",
            self.node, self.op, self.slot, self.shape, self.count
        )
    }
}

/// The first tensor of [`reported_tensors`] in graph order (the order the step computed them)
/// that holds a value which is not finite, as the last run of `run` (prepared with every one
/// of them as an output) left it; `passes` says which part of the step each node is.
pub(crate) fn first_non_finite(
    exec: &impl Executor,
    run: RunId,
    graph: &Graph,
    passes: &[Pass],
) -> Result<Option<Anomaly>> {
    for t in reported_tensors(graph) {
        let values = exec.read(run, t)?;
        let mut bad = values.iter().enumerate().filter(|(_, v)| !v.is_finite());
        let Some((at, &value)) = bad.next() else { continue };
        let node = graph.node(t.node);
        return Ok(Some(Anomaly {
            layer: node.layer.clone(),
            node: node.label.clone(),
            op: node.op.compute().map_or_else(|| node.op.name().to_string(), |op| op.kind()),
            pass: passes[t.node.index()],
            slot: t.slot,
            shape: graph.shape(t).to_vec(),
            count: 1 + bad.count(),
            first: (at, value),
        }));
    }
    Ok(None)
}
