//! The CPU executor: runs every node on the kernels crate's CPU implementations
//! (`kernels::cpu`, the same code the kernel tests hold the GPU to), over buffers planned by
//! liveness as the GPU executor's are ([`crate::plan`]). Buffers are allocated when the
//! executor is built; a run writes the fed data into them and allocates nothing.

use std::collections::HashMap;

use crate::error::Result;
use crate::feed::{Feed, present};
use crate::ir::{Graph, Mode, NodeId, Op, TensorId};
use crate::ops::CpuCall;
use crate::plan::{Plan, storage_len};

/// Where a tensor's data is.
#[derive(Debug, Clone)]
enum Location {
    /// A prefix of a planned buffer.
    Buffer { buffer: usize, len: usize },
    /// A parameter or state tensor, by name.
    Named(String),
    /// Fed data or a constant, by index.
    Held(usize),
}

/// A graph prepared to run on the CPU for some of its outputs.
pub struct CpuExecutor {
    /// The executor's own copy (ops are shared), so that it can live beside the model.
    graph: Graph,
    mode: Mode,
    order: Vec<NodeId>,
    /// Per node, which of its outputs the run reads.
    wanted: HashMap<NodeId, Vec<bool>>,
    location: HashMap<TensorId, Location>,
    buffers: Vec<Vec<f32>>,
    /// Fed data (labels as their bits) and constants, indexed by [`Location::Held`].
    held: Vec<Vec<f32>>,
    /// The fed nodes and where their data goes.
    fed: Vec<(NodeId, usize)>,
}

impl CpuExecutor {
    /// Prepares the nodes that `outputs` depend on, in `mode`.
    pub fn new(graph: &Graph, mode: Mode, outputs: &[TensorId]) -> Self {
        let plan = Plan::new(graph, outputs);
        let buffers = plan.buffers.iter().map(|&len| vec![0.0; len]).collect();
        let mut location: HashMap<TensorId, Location> = HashMap::new();
        let (mut held, mut fed) = (Vec::new(), Vec::new());
        for &id in &plan.order {
            let node = graph.node(id);
            let out = id.out(0);
            let place = match &node.op {
                Op::Param { name } | Op::State { name } => Location::Named(name.clone()),
                Op::Input { .. } | Op::Labels { .. } => {
                    fed.push((id, held.len()));
                    held.push(vec![0.0; graph.numel(out)]);
                    Location::Held(held.len() - 1)
                }
                Op::Fill(value) => {
                    held.push(vec![*value; graph.numel(out)]);
                    Location::Held(held.len() - 1)
                }
                Op::Compute(op) if op.is_view() => location[&node.inputs[0]].clone(),
                Op::Compute(_) => {
                    for slot in 0..node.outputs.len() {
                        let t = id.out(slot);
                        location.insert(t, Location::Buffer { buffer: plan.buffer[&t], len: storage_len(graph, t) });
                    }
                    continue;
                }
            };
            location.insert(out, place);
        }
        let wanted = plan.order.iter().map(|&id| (id, plan.wanted(graph, id))).collect();
        CpuExecutor { graph: graph.clone(), mode, order: plan.order, wanted, location, buffers, held, fed }
    }

    /// Runs the step on `feed`, with parameters and state from `tensors` by `state_dict`
    /// name; training updates the state there (batch norm's running statistics).
    pub fn run(&mut self, tensors: &mut HashMap<String, Vec<f32>>, feed: &Feed) -> Result<()> {
        for &(id, index) in &self.fed {
            let node = self.graph.node(id);
            let target = &mut self.held[index];
            match &node.op {
                Op::Input { name } => target.copy_from_slice(feed.input(node, name)?),
                Op::Labels { name, classes } => {
                    target.copy_from_slice(bytemuck::cast_slice(feed.labels(node, name, *classes)?))
                }
                _ => unreachable!("only inputs and labels are fed"),
            }
        }
        for &id in &self.order {
            let node = self.graph.node(id);
            if let Op::Param { name } | Op::State { name } = &node.op {
                present(node, name, tensors.get(name))?;
            }
        }
        for i in 0..self.order.len() {
            self.run_node(self.order[i], tensors, feed.step);
        }
        Ok(())
    }

    fn run_node(&mut self, id: NodeId, tensors: &mut HashMap<String, Vec<f32>>, step: u64) {
        let Some(op) = self.graph.node(id).op.compute().filter(|op| !op.is_view()).cloned() else { return };
        let (graph, node) = (&self.graph, self.graph.node(id));
        // Take the outputs' buffers and the state updated in place out of their stores, so the
        // inputs can be borrowed from what remains.
        let outputs: Vec<(usize, usize, Vec<f32>)> = (0..node.outputs.len())
            .map(|slot| match self.location[&id.out(slot)] {
                Location::Buffer { buffer, len } => (buffer, len, std::mem::take(&mut self.buffers[buffer])),
                _ => unreachable!("computed tensors are planned"),
            })
            .collect();
        let updated_names: Vec<String> = op
            .updates_inputs()
            .iter()
            .map(|&k| match &self.location[&node.inputs[k]] {
                Location::Named(name) => name.clone(),
                _ => unreachable!("what an op updates in place is state"),
            })
            .collect();
        let mut updated: Vec<Vec<f32>> =
            updated_names.iter().map(|name| tensors.remove(name).expect("checked before the run")).collect();
        let mut outputs = outputs;
        {
            let inputs: Vec<&[f32]> = node
                .inputs
                .iter()
                .enumerate()
                .map(|(k, t)| {
                    if op.updates_inputs().contains(&k) {
                        return &[][..];
                    }
                    match &self.location[t] {
                        Location::Buffer { buffer, len } => &self.buffers[*buffer][..*len],
                        Location::Named(name) => tensors[name].as_slice(),
                        Location::Held(index) => self.held[*index].as_slice(),
                    }
                })
                .collect();
            op.cpu(CpuCall {
                mode: self.mode,
                step,
                input_types: node.inputs.iter().map(|&t| graph.ty(t)).collect(),
                output_types: &node.outputs,
                wanted: &self.wanted[&id],
                inputs,
                outputs: outputs.iter_mut().map(|(_, len, data)| &mut data[..*len]).collect(),
                updated: updated.iter_mut().map(|v| v.as_mut_slice()).collect(),
            });
        }
        for (buffer, _, data) in outputs {
            self.buffers[buffer] = data;
        }
        for (name, value) in updated_names.into_iter().zip(updated) {
            tensors.insert(name, value);
        }
    }

    /// The data of tensor `t` after a run (an output the executor was prepared for).
    pub fn read(&self, t: TensorId) -> &[f32] {
        match &self.location[&t] {
            Location::Buffer { buffer, .. } => &self.buffers[*buffer][..self.graph.numel(t)],
            Location::Held(index) => &self.held[*index],
            Location::Named(_) => panic!("{t:?} is a named tensor; read it from the tensors the run was given"),
        }
    }

    /// Bytes of the planned buffers.
    pub fn planned_bytes(&self) -> u64 {
        self.buffers.iter().map(|b| b.len() as u64 * 4).sum()
    }
}

/// The values of the tensors a one-off run computed.
#[derive(Debug, Clone)]
pub struct Values {
    values: HashMap<TensorId, Vec<f32>>,
    /// New values of the state tensors the run updated (training-mode batch norm), by name.
    pub updated_state: HashMap<String, Vec<f32>>,
}

impl Values {
    /// The f32 value of `t`, which the run was asked for.
    pub fn get(&self, t: TensorId) -> &[f32] {
        self.values.get(&t).unwrap_or_else(|| panic!("{t:?} was not asked of this run"))
    }

    /// A scalar tensor's value.
    pub fn scalar(&self, t: TensorId) -> f32 {
        self.get(t)[0]
    }
}

/// Runs `graph` once for `outputs` in `mode`, with `params` by `state_dict` name: planning,
/// buffers and all, for one-off uses (tests, a single explanation).
pub fn evaluate(
    graph: &Graph,
    mode: Mode,
    params: &HashMap<String, Vec<f32>>,
    feed: &Feed,
    outputs: &[TensorId],
) -> Result<Values> {
    let mut exec = CpuExecutor::new(graph, mode, outputs);
    let mut tensors = params.clone();
    exec.run(&mut tensors, feed)?;
    let values = outputs
        .iter()
        .map(|&t| {
            let value = match &graph.node(t.node).op {
                Op::Param { name } | Op::State { name } => tensors[name].clone(),
                _ => exec.read(t).to_vec(),
            };
            (t, value)
        })
        .collect();
    let updated_state = graph
        .nodes()
        .filter_map(|(_, n)| match &n.op {
            Op::State { name } if tensors.get(name) != params.get(name) => Some((name.clone(), tensors[name].clone())),
            _ => None,
        })
        .collect();
    Ok(Values { values, updated_state })
}
