//! Buffer planning for the GPU executor: which device buffer each tensor of a step lives in.
//!
//! Tensors whose lifetimes do not overlap share a buffer. A tensor lives from the node that
//! writes it to the last node that reads it (or to the end of the step for the outputs the
//! caller reads); a reshape is the same buffer under another shape, so it extends its input's
//! life. Scratch tensors (an im2col matrix, a pooling's argmax) live for their node only.
//! Parameters, fed inputs and constants are not planned: they persist across steps.

use crate::ir::{Graph, NodeId};

/// Where a node's output lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// A buffer of its own that outlives the step (parameters, fed data, constants).
    Persistent,
    /// The buffer of its first input (a reshape).
    Alias,
    /// A planned buffer of at least this many 32-bit elements.
    Planned(usize),
}

/// The buffers a node needs while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needs {
    pub output: Storage,
    /// Lengths of the scratch tensors it uses and drops.
    pub scratch: Vec<usize>,
}

/// The result of planning one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The nodes to run, in order.
    pub order: Vec<NodeId>,
    /// Per node id: its planned buffer, following aliases (None for persistent tensors and
    /// nodes not run).
    pub output: Vec<Option<usize>>,
    /// Per node id: the buffers of its scratch tensors.
    pub scratch: Vec<Vec<usize>>,
    /// Size of each planned buffer, in 32-bit elements.
    pub buffers: Vec<usize>,
    /// Elements one buffer per planned tensor would take.
    pub unshared_elements: usize,
}

impl Plan {
    /// Plans the nodes `outputs` depend on; `outputs` stay readable after the step.
    pub fn new(graph: &Graph, outputs: &[NodeId], needs: impl Fn(NodeId) -> Needs) -> Plan {
        let order = graph.ancestors(outputs);
        let count = graph.nodes().count();
        let needs: Vec<Option<Needs>> = {
            let mut all = vec![None; count];
            for &id in &order {
                all[id.0] = Some(needs(id));
            }
            all
        };
        // The node whose buffer each node's output is (itself unless it aliases).
        let mut root: Vec<usize> = (0..count).collect();
        for &id in &order {
            if needs[id.0].as_ref().is_some_and(|n| n.output == Storage::Alias) {
                root[id.0] = root[graph.node(id).inputs[0].0];
            }
        }
        // The last position at which each root's buffer is read.
        let mut last_use = vec![None::<usize>; count];
        for (position, &id) in order.iter().enumerate() {
            for input in &graph.node(id).inputs {
                last_use[root[input.0]] = Some(position);
            }
        }
        for &o in outputs {
            last_use[root[o.0]] = Some(usize::MAX);
        }

        let mut plan = Plan {
            order: order.clone(),
            output: vec![None; count],
            scratch: vec![Vec::new(); count],
            buffers: Vec::new(),
            unshared_elements: 0,
        };
        let mut free: Vec<usize> = Vec::new();
        for (position, &id) in order.iter().enumerate() {
            let need = needs[id.0].as_ref().expect("planned");
            let scratch: Vec<usize> = need.scratch.iter().map(|&len| plan.take(&mut free, len)).collect();
            match need.output {
                Storage::Planned(len) => plan.output[id.0] = Some(plan.take(&mut free, len)),
                Storage::Alias => plan.output[id.0] = plan.output[root[id.0]],
                Storage::Persistent => {}
            }
            free.extend(&scratch);
            plan.scratch[id.0] = scratch;
            // Buffers read for the last time here, and outputs nothing reads, are free again.
            let mut done: Vec<usize> = graph.node(id).inputs.iter().map(|i| root[i.0]).collect();
            done.push(root[id.0]);
            done.sort_unstable();
            done.dedup();
            for r in done {
                let finished = last_use[r].is_none_or(|last| last == position);
                if finished
                    && let Some(buffer) = plan.output[r]
                    && !free.contains(&buffer)
                {
                    free.push(buffer);
                }
            }
        }
        plan
    }

    /// A free buffer for `len` elements: the smallest that fits, else the largest grown to
    /// fit, else a new one.
    fn take(&mut self, free: &mut Vec<usize>, len: usize) -> usize {
        self.unshared_elements += len;
        let fits =
            free.iter().enumerate().filter(|&(_, &b)| self.buffers[b] >= len).min_by_key(|&(_, &b)| self.buffers[b]);
        let largest = free.iter().enumerate().max_by_key(|&(_, &b)| self.buffers[b]);
        match fits.or(largest).map(|(i, _)| i) {
            Some(i) => {
                let b = free.swap_remove(i);
                self.buffers[b] = self.buffers[b].max(len);
                b
            }
            None => {
                self.buffers.push(len);
                self.buffers.len() - 1
            }
        }
    }

    /// Elements of all planned buffers together.
    pub fn planned_elements(&self) -> usize {
        self.buffers.iter().sum()
    }
}
