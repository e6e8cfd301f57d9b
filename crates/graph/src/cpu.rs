//! The CPU executor: runs every node on the kernels crate's CPU implementations
//! (`kernels::cpu`, the same code the kernel tests hold the GPU to), over buffers planned by
//! liveness as the GPU executor's are ([`crate::plan`]). A run's buffers are allocated when it
//! is prepared; running it writes the fed data into them and allocates nothing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::error::{GraphError, Result};
use crate::executor::{Executor, RunId};
use crate::feed::{Feed, check_len};
use crate::ir::{Graph, Mode, NodeId, Op, TensorId};
use crate::ops::CpuCall;
use crate::plan::{Plan, storage_len};
use crate::profile::NodeTime;

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

/// Runs graphs on the CPU; owns the named tensors its runs share.
#[derive(Default)]
pub struct CpuExecutor {
    named: HashMap<String, Vec<f32>>,
    runs: Vec<CpuRun>,
    profiling: bool,
}

impl CpuExecutor {
    /// An executor holding nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Times every node of the runs prepared from now on (a clock read around each node).
    pub fn profiled() -> Self {
        Self { profiling: true, ..Self::default() }
    }
}

impl Executor for CpuExecutor {
    fn name(&self) -> String {
        "cpu".into()
    }

    fn prepare(&mut self, graph: &Graph, mode: Mode, outputs: &[TensorId]) -> Result<RunId> {
        for (_, node) in graph.nodes() {
            if let Op::Param { name } | Op::State { name } = &node.op {
                self.named.entry(name.clone()).or_insert_with(|| vec![0.0; node.outputs[0].len()]);
            }
        }
        let mut run = CpuRun::new(graph, mode, outputs);
        if self.profiling {
            run.times = Some(vec![(Duration::ZERO, 0); run.order.len()]);
        }
        self.runs.push(run);
        Ok(RunId(self.runs.len() - 1))
    }

    fn run(&mut self, run: RunId, feed: &Feed, step: u64) -> Result<()> {
        self.runs[run.0].run(&mut self.named, feed, step)
    }

    fn read(&self, run: RunId, t: TensorId) -> Result<Vec<f32>> {
        let run = &self.runs[run.0];
        if !run.outputs.contains(&t) {
            return Err(not_an_output(&run.graph.node(t.node).label, t));
        }
        Ok(run.read(&self.named, t).to_vec())
    }

    fn read_named(&self, name: &str) -> Result<Vec<f32>> {
        self.named.get(name).cloned().ok_or_else(|| unknown(name))
    }

    /// Time per node of `run`, in run order; empty unless the executor is [`Self::profiled`].
    fn profile(&self, run: RunId) -> Vec<NodeTime> {
        let run = &self.runs[run.0];
        let Some(times) = &run.times else { return Vec::new() };
        run.order
            .iter()
            .zip(times)
            .filter_map(|(&id, &(time, calls))| {
                let node = run.graph.node(id);
                let op = node.op.compute()?;
                Some(NodeTime {
                    node: id,
                    label: node.label.clone(),
                    op: op.kind(),
                    time,
                    calls,
                    flops: run.graph.node_flops(id, &run.wanted[&id]),
                })
            })
            .collect()
    }

    fn write_named(&mut self, name: &str, values: &[f32]) -> Result<()> {
        match self.named.get_mut(name) {
            Some(t) if t.len() != values.len() => Err(GraphError::Shape {
                node: name.into(),
                detail: format!("{} values for a tensor of {}", values.len(), t.len()),
            }),
            Some(t) => {
                t.copy_from_slice(values);
                Ok(())
            }
            None => {
                self.named.insert(name.into(), values.to_vec());
                Ok(())
            }
        }
    }
}

pub(crate) fn unknown(name: &str) -> GraphError {
    GraphError::UnknownName { name: name.into(), what: "tensor" }
}

/// A read of a tensor the run was not prepared for: its buffer may hold another tensor by now.
pub(crate) fn not_an_output(node: &str, t: TensorId) -> GraphError {
    let detail = format!("output {} is not one the run was prepared for; prepare a run that asks for it", t.slot);
    GraphError::Usage { node: node.to_string(), detail }
}

/// One prepared run of a graph on the CPU.
struct CpuRun {
    /// The run's own copy of the graph (ops are shared).
    graph: Graph,
    mode: Mode,
    order: Vec<NodeId>,
    /// What the run was prepared for: the tensors a read may ask for.
    outputs: Vec<TensorId>,
    /// Per node, which of its outputs the run reads.
    wanted: HashMap<NodeId, Vec<bool>>,
    location: HashMap<TensorId, Location>,
    buffers: Vec<Vec<f32>>,
    /// Fed data (labels as their bits) and constants, indexed by [`Location::Held`].
    held: Vec<Vec<f32>>,
    /// The fed nodes and where their data goes.
    fed: Vec<(NodeId, usize)>,
    /// Per node in `order`, the time it took and how many runs, when profiling.
    times: Option<Vec<(Duration, u32)>>,
}

impl CpuRun {
    fn new(graph: &Graph, mode: Mode, outputs: &[TensorId]) -> Self {
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
                Op::Compute(op) => {
                    for slot in 0..node.outputs.len() {
                        let t = id.out(slot);
                        let place = match slot == 0 && op.aliases_input() {
                            true => location[&node.inputs[0]].clone(),
                            false => Location::Buffer { buffer: plan.buffer[&t], len: storage_len(graph, t) },
                        };
                        location.insert(t, place);
                    }
                    continue;
                }
            };
            location.insert(out, place);
        }
        let wanted = plan.order.iter().map(|&id| (id, plan.wanted(graph, id))).collect();
        let outputs = outputs.to_vec();
        CpuRun {
            graph: graph.clone(),
            mode,
            order: plan.order,
            outputs,
            wanted,
            location,
            buffers,
            held,
            fed,
            times: None,
        }
    }

    fn run(&mut self, named: &mut HashMap<String, Vec<f32>>, feed: &Feed, step: u64) -> Result<()> {
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
                check_len(node, named.get(name).ok_or_else(|| unknown(name))?.len())?;
            }
        }
        for i in 0..self.order.len() {
            let start = self.times.is_some().then(Instant::now);
            self.run_node(self.order[i], named, step);
            if let (Some(times), Some(start)) = (&mut self.times, start) {
                times[i].0 += start.elapsed();
                times[i].1 += 1;
            }
        }
        Ok(())
    }

    /// Takes a tensor's data out of its store, to lend it mutably while the rest is read.
    fn take(&mut self, named: &mut HashMap<String, Vec<f32>>, place: &Location) -> Vec<f32> {
        match place {
            Location::Buffer { buffer, .. } => std::mem::take(&mut self.buffers[*buffer]),
            Location::Named(name) => named.remove(name).expect("checked before the run"),
            // A constant gradient (zeros, for a parameter the loss does not reach) that
            // clipping scales in place.
            Location::Held(index) => std::mem::take(&mut self.held[*index]),
        }
    }

    fn put_back(&mut self, named: &mut HashMap<String, Vec<f32>>, place: &Location, data: Vec<f32>) {
        match place {
            Location::Buffer { buffer, .. } => self.buffers[*buffer] = data,
            Location::Named(name) => drop(named.insert(name.clone(), data)),
            Location::Held(index) => self.held[*index] = data,
        }
    }

    fn run_node(&mut self, id: NodeId, named: &mut HashMap<String, Vec<f32>>, step: u64) {
        let Some(op) = self.graph.node(id).op.compute().cloned() else { return };
        let node = self.graph.node(id).clone();
        // The outputs' buffers and the inputs updated in place leave their stores while the op
        // runs, so that the other inputs can be borrowed from what remains.
        let aliased = op.aliases_input() as usize;
        let out_places: Vec<Location> =
            (aliased..node.outputs.len()).map(|s| self.location[&id.out(s)].clone()).collect();
        let updated: Vec<usize> = (0..node.inputs.len()).filter(|&k| op.updates(k)).collect();
        let updated_places: Vec<Location> = updated.iter().map(|&k| self.location[&node.inputs[k]].clone()).collect();
        let mut outputs: Vec<Vec<f32>> = out_places.iter().map(|p| self.take(named, p)).collect();
        let mut updated_data: Vec<Vec<f32>> = updated_places.iter().map(|p| self.take(named, p)).collect();
        {
            // A planned buffer may be longer than the tensor in it.
            let extent = |p: &Location, data: &mut Vec<f32>| -> usize {
                match p {
                    Location::Buffer { len, .. } => *len,
                    _ => data.len(),
                }
            };
            let inputs: Vec<&[f32]> = node
                .inputs
                .iter()
                .enumerate()
                .map(|(k, t)| match &self.location[t] {
                    _ if updated.contains(&k) => &[][..],
                    Location::Buffer { buffer, len } => &self.buffers[*buffer][..*len],
                    Location::Named(name) => named[name].as_slice(),
                    Location::Held(index) => self.held[*index].as_slice(),
                })
                .collect();
            let mut output_views: Vec<&mut [f32]> = outputs
                .iter_mut()
                .zip(&out_places)
                .map(|(d, p)| {
                    let n = extent(p, d);
                    &mut d[..n]
                })
                .collect();
            if aliased == 1 {
                output_views.insert(0, &mut []);
            }
            op.cpu(CpuCall {
                mode: self.mode,
                step,
                input_types: node.inputs.iter().map(|&t| self.graph.ty(t)).collect(),
                output_types: &node.outputs,
                wanted: &self.wanted[&id],
                inputs,
                outputs: output_views,
                updated: updated_data
                    .iter_mut()
                    .zip(&updated_places)
                    .map(|(d, p)| {
                        let n = extent(p, d);
                        &mut d[..n]
                    })
                    .collect(),
            });
        }
        for (place, data) in out_places.iter().zip(outputs) {
            self.put_back(named, place, data);
        }
        for (place, data) in updated_places.iter().zip(updated_data) {
            self.put_back(named, place, data);
        }
    }

    /// The data of tensor `t` after a run (an output the run was prepared for).
    fn read<'a>(&'a self, named: &'a HashMap<String, Vec<f32>>, t: TensorId) -> &'a [f32] {
        match &self.location[&t] {
            Location::Buffer { buffer, .. } => &self.buffers[*buffer][..self.graph.numel(t)],
            Location::Held(index) => &self.held[*index],
            Location::Named(name) => &named[name],
        }
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

/// Runs `graph` once for `outputs` in `mode` on the CPU at step 0, with `params` by
/// `state_dict` name: planning, buffers and all, for one-off uses (tests, a single
/// explanation). [`Executor`]s prepare once and run many times.
pub fn evaluate(
    graph: &Graph,
    mode: Mode,
    params: &HashMap<String, Vec<f32>>,
    feed: &Feed,
    outputs: &[TensorId],
) -> Result<Values> {
    let mut named = params.clone();
    let mut run = CpuRun::new(graph, mode, outputs);
    run.run(&mut named, feed, 0)?;
    let values = outputs.iter().map(|&t| (t, run.read(&named, t).to_vec())).collect();
    let updated_state = graph
        .nodes()
        .filter_map(|(_, n)| match &n.op {
            Op::State { name } if named.get(name) != params.get(name) => Some((name.clone(), named[name].clone())),
            _ => None,
        })
        .collect();
    Ok(Values { values, updated_state })
}
