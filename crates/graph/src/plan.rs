//! Buffer planning, shared by both executors: which buffer each tensor of a run lives in.
//!
//! Tensors whose lifetimes do not overlap share a buffer. A tensor lives from the node that
//! writes it to the last node that reads it (or to the end of the run for the outputs the
//! caller reads); a view (reshape) is the same buffer under another shape, so it extends its
//! input's life (so does an optimizer update, whose output is its parameter). What a forward
//! saves for its backward is an ordinary output that lives until the backward reads it;
//! workspace that nothing reads is free once its node has run. Parameters, state, fed data
//! and constants are not planned: they persist across runs.

use std::collections::{HashMap, HashSet};

use crate::ir::{Graph, NodeId, Op, TensorId};

/// The result of planning one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The nodes to run, in order.
    pub order: Vec<NodeId>,
    /// The planned buffer of each computed tensor, following views.
    pub buffer: HashMap<TensorId, usize>,
    /// Size of each planned buffer, in 32-bit elements.
    pub buffers: Vec<usize>,
    /// Elements one buffer per planned tensor would take.
    pub unshared_elements: usize,
    /// The most elements the run's tensors hold at one time: no plan of whole buffers takes
    /// less.
    pub peak_elements: usize,
    /// The tensors that a later node or the caller reads.
    pub read: HashSet<TensorId>,
}

/// A planned tensor, its size in elements and the positions in the run order between which
/// its buffer is in use.
struct Life {
    tensor: TensorId,
    len: usize,
    first: usize,
    last: usize,
}

/// The most elements `lives` hold at any one of `positions`.
fn peak(lives: &[Life], positions: usize) -> usize {
    let mut change = vec![0i128; positions + 1];
    for life in lives {
        change[life.first] += life.len as i128;
        change[life.last + 1] -= life.len as i128;
    }
    let held = change.iter().scan(0i128, |held, &c| {
        *held += c;
        Some(*held)
    });
    held.max().unwrap_or(0) as usize
}

/// Elements the buffer of `t` holds (its op may keep more than its shape).
pub(crate) fn storage_len(graph: &Graph, t: TensorId) -> usize {
    let node = graph.node(t.node);
    match &node.op {
        Op::Compute(op) => op.storage_len(&node.outputs, t.slot),
        _ => graph.numel(t),
    }
}

/// Is `t` the buffer of its node's first input (a view, an updated parameter)?
pub(crate) fn is_alias(graph: &Graph, t: TensorId) -> bool {
    graph.node(t.node).op.compute().is_some_and(|op| op.aliases_input() && t.slot == 0)
}

impl Plan {
    /// Plans the nodes `outputs` depend on; `outputs` stay readable after the run.
    pub fn new(graph: &Graph, outputs: &[TensorId]) -> Plan {
        let order = graph.ancestors(outputs);
        // The tensor whose buffer each tensor is (itself unless it is a view).
        let mut root: HashMap<TensorId, TensorId> = HashMap::new();
        let root_of = |root: &HashMap<TensorId, TensorId>, t: TensorId| root.get(&t).copied().unwrap_or(t);
        for &id in &order {
            let out = id.out(0);
            if is_alias(graph, out) {
                let source = root_of(&root, graph.node(id).inputs[0]);
                root.insert(out, source);
            }
        }
        // The last position at which each root's buffer is read.
        let mut last_use: HashMap<TensorId, usize> = HashMap::new();
        for (position, &id) in order.iter().enumerate() {
            for &input in &graph.node(id).inputs {
                last_use.insert(root_of(&root, input), position);
            }
        }
        for &o in outputs {
            last_use.insert(root_of(&root, o), usize::MAX);
        }

        let read = order.iter().flat_map(|&id| graph.node(id).inputs.iter().copied()).chain(outputs.iter().copied());
        let mut plan = Plan {
            order: order.clone(),
            buffer: HashMap::new(),
            buffers: Vec::new(),
            unshared_elements: 0,
            peak_elements: 0,
            read: read.collect(),
        };
        // Each tensor with a buffer of its own lives from the position that writes it to the
        // last that reads it (workspace nothing reads: its own position only).
        let mut lives: Vec<Life> = Vec::new();
        for (position, &id) in order.iter().enumerate() {
            let node = graph.node(id);
            if node.op.compute().is_none() {
                continue;
            }
            let owned = (0..node.outputs.len()).map(|slot| id.out(slot)).filter(|&t| !is_alias(graph, t));
            lives.extend(owned.map(|t| Life {
                tensor: t,
                len: storage_len(graph, t),
                first: position,
                // An output the caller reads lives to the end of the run.
                last: last_use.get(&t).map_or(position, |&last| last.min(order.len() - 1)).max(position),
            }));
        }
        plan.unshared_elements = lives.iter().fold(0, |n, l| n.saturating_add(l.len));
        plan.peak_elements = peak(&lives, order.len());
        plan.assign(lives);
        for &id in &order {
            let out = id.out(0);
            if is_alias(graph, out)
                && let Some(&b) = plan.buffer.get(&root_of(&root, out))
            {
                plan.buffer.insert(out, b);
            }
        }
        plan
    }

    /// Largest tensor first, each into the first buffer that no tensor of an overlapping
    /// life holds, else a new one: a buffer is as large as its first tensor and never grows,
    /// and the total comes close to the most the step ever holds at once. (Handing out freed
    /// buffers in run order instead grows them to fit whatever comes next, and planned a
    /// third more for the CNN's step.)
    fn assign(&mut self, mut lives: Vec<Life>) {
        lives.sort_by_key(|l| (std::cmp::Reverse(l.len), l.first, l.tensor));
        let mut held: Vec<Vec<(usize, usize)>> = Vec::new();
        for life in lives {
            let overlaps = |&(first, last): &(usize, usize)| first <= life.last && life.first <= last;
            let b = match held.iter().position(|spans| !spans.iter().any(overlaps)) {
                Some(b) => b,
                None => {
                    self.buffers.push(life.len);
                    held.push(Vec::new());
                    held.len() - 1
                }
            };
            held[b].push((life.first, life.last));
            self.buffer.insert(life.tensor, b);
        }
    }

    /// The largest tensor planned into buffer `buffer`: what it is sized for.
    pub fn largest_in(&self, graph: &Graph, buffer: usize) -> Option<TensorId> {
        let tensors = self.buffer.iter().filter(|&(_, &b)| b == buffer).map(|(&t, _)| t);
        tensors.max_by_key(|&t| (storage_len(graph, t), std::cmp::Reverse(t)))
    }

    /// Elements of all planned buffers together.
    pub fn planned_elements(&self) -> usize {
        self.buffers.iter().fold(0, |n, &b| n.saturating_add(b))
    }

    /// Per output of node `id`, whether the run reads it.
    pub fn wanted(&self, graph: &Graph, id: NodeId) -> Vec<bool> {
        (0..graph.node(id).outputs.len()).map(|slot| self.read.contains(&id.out(slot))).collect()
    }

    /// FLOPs of one run of the planned nodes, as their ops count them.
    pub fn flops(&self, graph: &Graph) -> u64 {
        self.order.iter().map(|&id| graph.node_flops(id, &self.wanted(graph, id))).sum()
    }

    /// Bytes one run's computing nodes read and write, each input and output once (4 bytes an
    /// element): the least memory traffic of a run that fuses nothing further. A view moves
    /// nothing.
    pub fn bytes_moved(&self, graph: &Graph) -> u64 {
        let computing = self.order.iter().map(|&id| graph.node(id)).filter(|node| {
            node.op
                .compute()
                .is_some_and(|op| !(op.aliases_input() && node.inputs.len() == 1 && node.outputs.len() == 1))
        });
        let elements = computing.map(|node| {
            let read: usize = node.inputs.iter().map(|&t| graph.numel(t)).sum();
            read + node.outputs.iter().map(|t| t.len()).sum::<usize>()
        });
        elements.map(|n| 4 * n as u64).sum()
    }
}
