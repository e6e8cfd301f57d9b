//! The IR: nodes of typed ops over statically shaped tensors, in the order they were built,
//! which is a topological order. A node has one or more outputs, each a [`TensorId`] (the
//! node and the output's slot): a forward op outputs what its backward will need (a layer
//! norm's row statistics, a max pool's winners) besides its result. Every op's shape rule,
//! gradient rule and both executors' code live together in its file under `ops/`; this file
//! holds what all nodes share and the leaves (inputs, labels, parameters, state, constants).

use std::sync::Arc;

use crate::error::{GraphError, Result};
use crate::ops::Operation;

/// A node of one [`Graph`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub(crate) usize);

impl NodeId {
    /// The node's output in `slot`.
    pub fn out(self, slot: usize) -> TensorId {
        TensorId { node: self, slot }
    }

    /// Its position: nodes are numbered in the order they were added, a topological order.
    pub fn index(self) -> usize {
        self.0
    }
}

/// One output of a node: what ops read, gradients are taken of, and runs return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId {
    /// The node computing it.
    pub node: NodeId,
    /// Which of the node's outputs it is.
    pub slot: usize,
}

/// The element type of a tensor. Both are 32 bits, so either lives in the same buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DType {
    /// Real values.
    F32,
    /// Class labels and indices (a max pool's winners).
    U32,
}

/// The element type and shape of a tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorType {
    /// Its axes' lengths.
    pub shape: Vec<usize>,
    /// Its elements' type.
    pub dtype: DType,
}

impl TensorType {
    /// An f32 tensor of `shape`.
    pub fn f32(shape: &[usize]) -> Self {
        TensorType { shape: shape.to_vec(), dtype: DType::F32 }
    }

    /// A u32 tensor of `shape`.
    pub fn u32(shape: &[usize]) -> Self {
        TensorType { shape: shape.to_vec(), dtype: DType::U32 }
    }

    /// The element count, saturating at usize::MAX: a shape from absurd user sizes reads as
    /// too large for any memory (which the memory check refuses) instead of overflowing.
    pub fn len(&self) -> usize {
        self.shape.iter().fold(1, |n, &d| n.saturating_mul(d))
    }

    /// Whether it holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a node computes: a leaf the executors provide, or an op.
#[derive(Debug, Clone)]
pub enum Op {
    /// f32 data fed per run.
    Input {
        /// The feed's name for it.
        name: String,
    },
    /// u32 class indices fed per run, below `classes`.
    Labels {
        /// The feed's name for it.
        name: String,
        /// The labels lie below it.
        classes: usize,
    },
    /// A trainable tensor, named as the PyTorch `state_dict` key.
    Param {
        /// The `state_dict` key.
        name: String,
    },
    /// Model state that is not trained but kept (batch norm's running statistics), named as
    /// the `state_dict` key. Training-mode batch norm updates it.
    State {
        /// The `state_dict` key.
        name: String,
    },
    /// Every element equal to the value.
    Fill(f32),
    /// An op on input tensors.
    Compute(Arc<dyn Operation>),
}

impl Op {
    /// The leaf's kind, or the op's name.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Labels { .. } => "labels",
            Op::Param { .. } => "param",
            Op::State { .. } => "state",
            Op::Fill(_) => "fill",
            Op::Compute(op) => op.name(),
        }
    }

    /// The op, unless this is a leaf.
    pub(crate) fn compute(&self) -> Option<&Arc<dyn Operation>> {
        match self {
            Op::Compute(op) => Some(op),
            _ => None,
        }
    }
}

/// Whether a run trains (batch statistics, dropout) or evaluates (running statistics, no
/// dropout), as PyTorch's `module.train()` / `module.eval()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Training.
    Train,
    /// Evaluation.
    Eval,
}

/// One node of a graph: what it applies to which tensors, and the types of what it gives.
#[derive(Debug, Clone)]
pub struct Node {
    /// What it computes.
    pub op: Op,
    /// The tensors it reads.
    pub inputs: Vec<TensorId>,
    /// The type of each output.
    pub outputs: Vec<TensorType>,
    /// How errors name this node: the op and its index, or the layer that built it.
    pub label: String,
    /// The model layer this node computes part of, forward or backward (see
    /// [`Graph::claim_for_layer`]); None for a node no layer claimed (a loss, an update).
    pub layer: Option<String>,
}

/// A graph under construction or ready to run.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    nodes: Vec<Node>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// Node `id`.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0]
    }

    /// Every node with its id, in topological order.
    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, &Node)> {
        self.nodes.iter().enumerate().map(|(i, n)| (NodeId(i), n))
    }

    /// Nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether it has no node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Tensor `t`'s type.
    pub fn ty(&self, t: TensorId) -> &TensorType {
        &self.nodes[t.node.0].outputs[t.slot]
    }

    /// FLOPs of one run of node `id` as its op counts them (0 for a leaf), `wanted` saying
    /// which outputs the run reads.
    pub fn node_flops(&self, id: NodeId, wanted: &[bool]) -> u64 {
        let node = self.node(id);
        let inputs: Vec<&TensorType> = node.inputs.iter().map(|&t| self.ty(t)).collect();
        node.op.compute().map_or(0, |op| op.flops(&inputs, &node.outputs, wanted))
    }

    /// Tensor `t`'s shape.
    pub fn shape(&self, t: TensorId) -> &[usize] {
        &self.ty(t).shape
    }

    /// Elements of tensor `t`.
    pub fn numel(&self, t: TensorId) -> usize {
        self.ty(t).len()
    }

    /// How errors and summaries name the node of `t`.
    pub fn label(&self, t: TensorId) -> &str {
        &self.nodes[t.node.0].label
    }

    /// Names tensor `t` for a user: its layer (if a layer claimed it), node, output and shape.
    pub fn describe(&self, t: TensorId) -> String {
        let node = self.node(t.node);
        if let Op::Param { name } | Op::State { name } = &node.op {
            return format!("parameter {name} of shape {:?}", self.shape(t));
        }
        let at = format!("{} output {} of shape {:?}", node.label, t.slot, self.shape(t));
        match &node.layer {
            Some(layer) => format!("layer {layer:?} ({at})"),
            None => at,
        }
    }

    /// Renames how errors and summaries refer to a node (layers name what they build).
    pub fn set_label(&mut self, t: TensorId, label: impl Into<String>) {
        self.nodes[t.node.0].label = label.into();
    }

    /// Puts the nodes from index `first` on that no layer has claimed yet in `layer`: what a
    /// config's layer built, so that a report on any of its nodes (`--detect-anomaly`) names
    /// the layer as the user wrote it. [`crate::backward`] puts each gradient node in the
    /// layer of the node it differentiates.
    pub fn claim_for_layer(&mut self, first: usize, layer: &str) {
        for node in self.nodes.iter_mut().skip(first).filter(|n| n.layer.is_none()) {
            node.layer = Some(layer.to_string());
        }
    }

    fn push(&mut self, op: Op, inputs: Vec<TensorId>, outputs: Vec<TensorType>) -> NodeId {
        let label = format!("{}#{}", op.name(), self.nodes.len());
        self.nodes.push(Node { op, inputs, outputs, label, layer: None });
        NodeId(self.nodes.len() - 1)
    }

    /// A shape error of the node about to be built by `op`.
    pub(crate) fn error(&self, op: &str, detail: String) -> GraphError {
        GraphError::Shape { node: format!("{op}#{}", self.nodes.len()), detail }
    }

    /// Adds a node applying `op` to `inputs`, its outputs typed by the op's shape rule.
    pub fn apply(&mut self, op: impl Operation + 'static, inputs: &[TensorId]) -> Result<NodeId> {
        let types: Vec<&TensorType> = inputs.iter().map(|&t| self.ty(t)).collect();
        let outputs = op.infer(&types).map_err(|detail| self.error(op.name(), detail))?;
        Ok(self.push(Op::Compute(Arc::new(op)), inputs.to_vec(), outputs))
    }

    /// As [`Graph::apply`], for the op's main output (slot 0).
    pub fn apply1(&mut self, op: impl Operation + 'static, inputs: &[TensorId]) -> Result<TensorId> {
        Ok(self.apply(op, inputs)?.out(0))
    }

    fn leaf(&mut self, op: Op, ty: TensorType) -> TensorId {
        self.push(op, vec![], vec![ty]).out(0)
    }

    /// f32 data of `shape` fed per run as `name`.
    pub fn input(&mut self, name: &str, shape: &[usize]) -> TensorId {
        self.leaf(Op::Input { name: name.into() }, TensorType::f32(shape))
    }

    /// u32 class labels [rows] fed per run as `name`, each below `classes`.
    pub fn labels(&mut self, name: &str, rows: usize, classes: usize) -> TensorId {
        self.indices(name, &[rows], classes)
    }

    /// u32 indices of any shape fed per run (class labels, token ids), each below `below`.
    pub fn indices(&mut self, name: &str, shape: &[usize], below: usize) -> TensorId {
        self.leaf(Op::Labels { name: name.into(), classes: below }, TensorType::u32(shape))
    }

    /// The trainable tensor `name` (a `state_dict` key) of `shape`.
    pub fn param(&mut self, name: &str, shape: &[usize]) -> TensorId {
        self.leaf(Op::Param { name: name.into() }, TensorType::f32(shape))
    }

    /// The untrained but kept tensor `name` of `shape` (batch norm's running statistics).
    pub fn state(&mut self, name: &str, shape: &[usize]) -> TensorId {
        self.leaf(Op::State { name: name.into() }, TensorType::f32(shape))
    }

    /// A tensor of `shape`, every element `value`.
    pub fn fill(&mut self, value: f32, shape: &[usize]) -> TensorId {
        self.leaf(Op::Fill(value), TensorType::f32(shape))
    }

    /// Makes `t`, the only output of its node, an f32 input named `name` that runs feed:
    /// what computed it no longer runs. Attribution methods perturb an embedding's output this
    /// way, since token ids cannot be moved continuously.
    pub fn cut(&mut self, t: TensorId, name: &str) -> Result<()> {
        let node = &mut self.nodes[t.node.0];
        if node.outputs.len() != 1 || node.outputs[0].dtype != DType::F32 {
            return Err(GraphError::Usage {
                node: node.label.clone(),
                detail: "only a node with one f32 output can become an input".into(),
            });
        }
        node.op = Op::Input { name: name.into() };
        node.inputs.clear();
        Ok(())
    }

    /// The parameter named `name`.
    pub fn find_param(&self, name: &str) -> Option<TensorId> {
        self.nodes().find(|(_, n)| matches!(&n.op, Op::Param { name: p } if p == name)).map(|(id, _)| id.out(0))
    }

    /// The nodes `outputs` depend on, theirs included, in graph order.
    pub fn ancestors(&self, outputs: &[TensorId]) -> Vec<NodeId> {
        let mut needed = vec![false; self.nodes.len()];
        for o in outputs {
            needed[o.node.0] = true;
        }
        for i in (0..self.nodes.len()).rev() {
            if needed[i] {
                for input in &self.nodes[i].inputs {
                    needed[input.node.0] = true;
                }
            }
        }
        (0..self.nodes.len()).filter(|&i| needed[i]).map(NodeId).collect()
    }
}
