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

/// The gradient contributions to one tensor, gathered until every consumer has given its
/// own: node ids are a topological order, so that is when the tensor's producer is visited.
#[derive(Debug, Default)]
struct Contributions {
    /// Contributions of the tensor's whole shape, in the order they came.
    whole: Vec<TensorId>,
    /// Gradients of slices of it, as (axis, start, gradient of the slice).
    slices: Vec<(usize, usize, TensorId)>,
}

impl Contributions {
    /// The gradient of `t`: the whole contributions added in order, then the slices along each
    /// axis joined into one tensor (zeros where no slice reached) and added. Slices that
    /// overlap an earlier one are joined alone.
    fn total(mut self, g: &mut Graph, t: TensorId) -> Result<TensorId> {
        let shape = g.shape(t).to_vec();
        let mut parts = std::mem::take(&mut self.whole);
        self.slices.sort_by_key(|&(axis, start, _)| (axis, start));
        let mut rest = self.slices.into_iter().peekable();
        while let Some(&(axis, ..)) = rest.peek() {
            let (mut joined, mut end) = (Vec::new(), 0);
            let mut overlapping = Vec::new();
            while let Some((_, start, grad)) = rest.next_if(|&(a, ..)| a == axis) {
                match start >= end {
                    true => {
                        end = start + g.shape(grad)[axis];
                        joined.push((start, grad));
                    }
                    false => overlapping.push((start, grad)),
                }
            }
            parts.push(g.join_slices(&shape, axis, &joined)?);
            for piece in overlapping {
                parts.push(g.join_slices(&shape, axis, &[piece])?);
            }
        }
        let mut parts = parts.into_iter();
        let first = parts.next().expect("a tensor with contributions");
        parts.try_fold(first, |sum, part| g.binary(Binary::Add, sum, part))
    }
}

/// Appends the gradient of the scalar `loss` with respect to every tensor it depends on.
pub fn backward(g: &mut Graph, loss: TensorId) -> Result<Gradients> {
    if !g.shape(loss).is_empty() {
        return Err(GraphError::Usage {
            node: g.label(loss).to_string(),
            detail: format!("backward needs a scalar loss, not shape {:?}", g.shape(loss)),
        });
    }
    let mut grads = Gradients::default();
    let mut pending: HashMap<TensorId, Contributions> = HashMap::new();
    let seed = g.fill(1.0, &[]);
    pending.entry(loss).or_default().whole.push(seed);
    // Node ids are a topological order: visit from the loss back to the first node.
    for i in (0..=loss.node.0).rev() {
        let node = NodeId(i);
        let Some(op) = g.node(node).op.compute().cloned() else { continue };
        let first = g.len();
        for slot in 0..g.node(node).outputs.len() {
            if let Some(contributions) = pending.remove(&node.out(slot)) {
                let total = contributions.total(g, node.out(slot))?;
                grads.of.insert(node.out(slot), total);
            }
        }
        let outputs: Vec<Option<TensorId>> = (0..g.node(node).outputs.len()).map(|s| grads.of(node.out(s))).collect();
        if outputs.iter().all(Option::is_none) {
            continue;
        }
        let inputs = g.node(node).inputs.clone();
        for (input, contribution) in inputs.into_iter().zip(op.backward(g, node, &outputs)?) {
            let Some(contribution) = contribution else { continue };
            let contributions = pending.entry(input).or_default();
            match op.slice_of_input() {
                Some((axis, start)) => contributions.slices.push((axis, start, contribution)),
                None => contributions.whole.push(contribution),
            }
        }
        if let Some(layer) = g.node(node).layer.clone() {
            g.claim_for_layer(first, &layer);
        }
    }
    // What no computing node produced (parameters, inputs), in id order so that the graph
    // is the same every time.
    let mut leaves: Vec<(TensorId, Contributions)> = pending.into_iter().collect();
    leaves.sort_by_key(|(t, _)| *t);
    for (t, contributions) in leaves {
        let total = contributions.total(g, t)?;
        grads.of.insert(t, total);
    }
    Ok(grads)
}
