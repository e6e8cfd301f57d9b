//! Reverse-mode autodiff as a graph transformation: [`backward`] appends, for every node the
//! loss depends on, the nodes that compute its gradient. Gradients of inputs and intermediate
//! nodes are available as well as those of parameters (explain methods need them).

use std::collections::HashMap;

use kernels::{Binary, Unary};

use crate::error::{GraphError, Result};
use crate::ir::{Graph, NodeId, Op};

/// The gradient node of each node the loss depends on.
#[derive(Debug, Clone, Default)]
pub struct Gradients {
    of: HashMap<NodeId, NodeId>,
}

impl Gradients {
    /// The node holding d(loss)/d(node), if the loss depends on `node`.
    pub fn of(&self, node: NodeId) -> Option<NodeId> {
        self.of.get(&node).copied()
    }
}

/// Appends the gradient of the scalar `loss` with respect to every node it depends on.
pub fn backward(g: &mut Graph, loss: NodeId) -> Result<Gradients> {
    if !g.shape(loss).is_empty() {
        return Err(GraphError::Shape {
            node: g.node(loss).label.clone(),
            detail: format!("backward needs a scalar loss, not shape {:?}", g.shape(loss)),
        });
    }
    let mut grads = Gradients::default();
    let seed = g.fill(1.0, &[]);
    grads.of.insert(loss, seed);
    // Node ids are a topological order: visit from the loss back to the first node.
    for i in (0..=loss.0).rev() {
        let node = NodeId(i);
        let Some(dy) = grads.of(node) else { continue };
        for (input, contribution) in input_gradients(g, node, dy)? {
            let total = match grads.of(input) {
                Some(earlier) => g.binary(Binary::Add, earlier, contribution)?,
                None => contribution,
            };
            grads.of.insert(input, total);
        }
    }
    Ok(grads)
}

/// The gradient contribution of `node` (whose gradient is `dy`) to each of its inputs: the
/// whole table of gradient rules, one arm per op.
fn input_gradients(g: &mut Graph, node: NodeId, dy: NodeId) -> Result<Vec<(NodeId, NodeId)>> {
    let n = g.node(node).clone();
    let x = |k: usize| n.inputs[k];
    Ok(match n.op {
        Op::Input { .. }
        | Op::Labels { .. }
        | Op::Param { .. }
        | Op::State { .. }
        | Op::Fill(_)
        | Op::Correct { .. } => {
            vec![]
        }
        // C = op(A) op(B): d op(A) = dC op(B)ᵀ, d op(B) = op(A)ᵀ dC, transposed back as stored.
        Op::MatMul { transpose_a: ta, transpose_b: tb } => {
            let (a, b) = (x(0), x(1));
            let da = if ta { g.matmul(b, dy, tb, true)? } else { g.matmul(dy, b, false, !tb)? };
            let db = if tb { g.matmul(dy, a, true, ta)? } else { g.matmul(a, dy, !ta, false)? };
            vec![(a, da), (b, db)]
        }
        Op::Binary(op) => {
            let (a, b) = (x(0), x(1));
            let (sa, sb) = (g.shape(a).to_vec(), g.shape(b).to_vec());
            let (da, db) = match op {
                Binary::Add => (dy, dy),
                Binary::Sub => (dy, g.unary(Unary::Scale(-1.0), dy)),
                Binary::Mul => (g.binary(Binary::Mul, dy, b)?, g.binary(Binary::Mul, dy, a)?),
                // d(a/b)/db = -a/b² = -(a/b)/b
                Binary::Div => {
                    let quotient = g.binary(Binary::Div, a, b)?;
                    let t = g.binary(Binary::Mul, dy, quotient)?;
                    let t = g.binary(Binary::Div, t, b)?;
                    (g.binary(Binary::Div, dy, b)?, g.unary(Unary::Scale(-1.0), t))
                }
            };
            vec![(a, g.sum_to(da, &sa)), (b, g.sum_to(db, &sb))]
        }
        Op::Unary(op) => {
            let shape = g.shape(x(0)).to_vec();
            vec![(x(0), g.gradient(Op::UnaryGrad(op), vec![x(0), dy], &shape))]
        }
        // Broadcasting dy back up: dy + zeros of the input's shape.
        Op::SumTo => {
            let shape = g.shape(x(0)).to_vec();
            let zeros = g.fill(0.0, &shape);
            vec![(x(0), g.binary(Binary::Add, zeros, dy)?)]
        }
        Op::Conv2d(geo) => {
            let (x_shape, w_shape) = (g.shape(x(0)).to_vec(), g.shape(x(1)).to_vec());
            let dx = g.gradient(Op::Conv2dGradInput(geo), vec![x(1), dy], &x_shape);
            let dw = g.gradient(Op::Conv2dGradWeight(geo), vec![x(0), dy], &w_shape);
            let mut grads = vec![(x(0), dx), (x(1), dw)];
            if let Some(&bias) = n.inputs.get(2) {
                let db = g.sum_to(dy, &[1, w_shape[0], 1, 1]);
                grads.push((bias, g.reshape(db, &[w_shape[0]])?));
            }
            grads
        }
        Op::MaxPool2d(geo) => {
            let shape = g.shape(x(0)).to_vec();
            vec![(x(0), g.gradient(Op::MaxPool2dGrad(geo), vec![x(0), dy], &shape))]
        }
        Op::AvgPool2d(geo) => {
            let shape = g.shape(x(0)).to_vec();
            vec![(x(0), g.gradient(Op::AvgPool2dGrad(geo), vec![dy], &shape))]
        }
        Op::Reshape => {
            let shape = g.shape(x(0)).to_vec();
            vec![(x(0), g.reshape(dy, &shape)?)]
        }
        Op::LayerNorm { eps } => {
            let (x_shape, g_shape) = (g.shape(x(0)).to_vec(), g.shape(x(1)).to_vec());
            let dx = g.gradient(Op::LayerNormGradInput { eps }, vec![x(0), x(1), dy], &x_shape);
            let dgamma = g.gradient(Op::LayerNormGradGamma { eps }, vec![x(0), dy], &g_shape);
            let dbeta = g.sum_to(dy, &g_shape);
            vec![(x(0), dx), (x(1), dgamma), (x(2), dbeta)]
        }
        // Running statistics get no gradient: in training they are not an input of y.
        Op::BatchNorm { eps, .. } => {
            let (x_shape, c) = (g.shape(x(0)).to_vec(), g.shape(x(1)).to_vec());
            let dx = g.gradient(Op::BatchNormGradInput { eps }, vec![x(0), x(1), x(3), x(4), dy], &x_shape);
            let dgamma = g.gradient(Op::BatchNormGradGamma { eps }, vec![x(0), x(3), x(4), dy], &c);
            // dbeta sums dy over every axis but the channels.
            let per_channel: Vec<usize> = (0..x_shape.len()).map(|a| if a == 1 { x_shape[1] } else { 1 }).collect();
            let dbeta = g.sum_to(dy, &per_channel);
            let dbeta = g.reshape(dbeta, &c)?;
            vec![(x(0), dx), (x(1), dgamma), (x(2), dbeta)]
        }
        // d/dx = (σ(x) - t) / n, d/dt = -x / n, each times dloss.
        Op::BceWithLogits => {
            let (x_node, t) = (x(0), x(1));
            let n = g.node(x_node).len() as f32;
            let scaled = g.unary(Unary::Scale(1.0 / n), dy);
            let sigmoid = g.unary(Unary::Sigmoid, x_node);
            let diff = g.binary(Binary::Sub, sigmoid, t)?;
            let dx = g.binary(Binary::Mul, diff, scaled)?;
            let minus_x = g.unary(Unary::Scale(-1.0), x_node);
            let dt = g.binary(Binary::Mul, minus_x, scaled)?;
            vec![(x_node, dx), (t, dt)]
        }
        Op::Dropout { p, seed } => vec![(x(0), g.dropout(dy, p, seed)?)],
        Op::Softmax { log } => {
            let shape = g.shape(node).to_vec();
            vec![(x(0), g.gradient(Op::SoftmaxGrad { log }, vec![node, dy], &shape))]
        }
        // Each part's gradient is its slice of dy.
        Op::Concat { axis } => {
            let mut start = 0;
            let mut out = Vec::new();
            for &part in &n.inputs {
                let len = g.shape(part)[axis];
                out.push((part, g.slice(dy, axis, start, len)?));
                start += len;
            }
            out
        }
        // dy back in place, zeros around it.
        Op::Slice { axis, start } => {
            let full = g.shape(x(0)).to_vec();
            let mut parts = Vec::new();
            let zeros = |g: &mut Graph, len: usize| {
                let mut shape = full.clone();
                shape[axis] = len;
                g.fill(0.0, &shape)
            };
            if start > 0 {
                parts.push(zeros(g, start));
            }
            parts.push(dy);
            let after = full[axis] - start - n.shape[axis];
            if after > 0 {
                parts.push(zeros(g, after));
            }
            vec![(x(0), g.concat(&parts, axis)?)]
        }
        Op::CrossEntropy { label_smoothing } => {
            let shape = g.shape(x(0)).to_vec();
            vec![(x(0), g.gradient(Op::CrossEntropyGrad { label_smoothing }, vec![x(0), x(1), dy], &shape))]
        }
        Op::UnaryGrad(_)
        | Op::LayerNormGradInput { .. }
        | Op::LayerNormGradGamma { .. }
        | Op::BatchNormGradInput { .. }
        | Op::BatchNormGradGamma { .. }
        | Op::SoftmaxGrad { .. }
        | Op::CrossEntropyGrad { .. }
        | Op::Conv2dGradInput(_)
        | Op::Conv2dGradWeight(_)
        | Op::MaxPool2dGrad(_)
        | Op::AvgPool2dGrad(_) => {
            return Err(GraphError::Shape { node: n.label, detail: "second derivatives are not supported".into() });
        }
    })
}
