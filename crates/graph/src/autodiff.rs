//! Reverse-mode autodiff as a graph transformation: [`backward`] appends, for every node the
//! loss depends on, the nodes that compute its gradient, by each op's own gradient rule
//! ([`crate::ops::Operation::backward`]). Gradients of inputs and intermediate tensors are
//! available as well as those of parameters (explain methods need them).

use std::collections::HashMap;

use kernels::Binary;

use crate::error::{GraphError, Result};
use crate::ir::{Graph, NodeId, TensorId};

/// The gradient tensor of each tensor the loss depends on.
#[derive(Debug, Clone, Default)]
pub struct Gradients {
    of: HashMap<TensorId, TensorId>,
}

impl Gradients {
    /// The tensor holding d(loss)/d(t), if the loss depends on `t`.
    pub fn of(&self, t: TensorId) -> Option<TensorId> {
        self.of.get(&t).copied()
    }
}

/// Appends the gradient of the scalar `loss` with respect to every tensor it depends on.
pub fn backward(g: &mut Graph, loss: TensorId) -> Result<Gradients> {
    if !g.shape(loss).is_empty() {
        return Err(GraphError::Shape {
            node: g.label(loss).to_string(),
            detail: format!("backward needs a scalar loss, not shape {:?}", g.shape(loss)),
        });
    }
    let mut grads = Gradients::default();
    let seed = g.fill(1.0, &[]);
    grads.of.insert(loss, seed);
    // Node ids are a topological order: visit from the loss back to the first node.
    for i in (0..=loss.node.0).rev() {
        let node = NodeId(i);
        let Some(op) = g.node(node).op.compute().cloned() else { continue };
        let outputs: Vec<Option<TensorId>> = (0..g.node(node).outputs.len()).map(|s| grads.of(node.out(s))).collect();
        if outputs.iter().all(Option::is_none) {
            continue;
        }
        let (inputs, first) = (g.node(node).inputs.clone(), g.len());
        for (input, contribution) in inputs.into_iter().zip(op.backward(g, node, &outputs)?) {
            let Some(contribution) = contribution else { continue };
            let total = match grads.of(input) {
                Some(earlier) => g.binary(Binary::Add, earlier, contribution)?,
                None => contribution,
            };
            grads.of.insert(input, total);
        }
        if let Some(layer) = g.node(node).layer.clone() {
            g.claim_for_layer(first, &layer);
        }
    }
    Ok(grads)
}
