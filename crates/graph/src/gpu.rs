//! The GPU executor: a graph lowered once onto the kernels crate's prepared dispatches, over
//! buffers planned by liveness ([`crate::plan`]). A run writes the fed data, records every
//! dispatch of the step into one command encoder, and copies its small outputs (a training
//! step's loss and metrics) to host-readable buffers in the same submission; reading one of
//! those is then a map, and any other output is copied back when asked for. Pipelines, bind groups and buffers are made when the executor is built,
//! so running it again allocates nothing.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use kernels::{Dispatch, Gpu, GpuTensor, Staged};

use crate::cpu::{not_an_output, unknown};
use crate::error::{GraphError, Result};
use crate::executor::{Executor, RunId};
use crate::feed::{Feed, check_len};
use crate::ir::{Graph, Mode, Node, NodeId, Op, TensorId, TensorType};
use crate::ops::{GpuCall, Operation};
use crate::plan::{Plan, is_alias, storage_len};
use crate::profile::NodeTime;

/// Device memory of an executor, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// The planned buffers that the step's intermediate tensors share.
    pub planned: u64,
    /// What those tensors would take with one buffer each.
    pub unshared: u64,
    /// Fed data and constants.
    pub persistent: u64,
}

/// Planned buffers that several executors of one model take turns using (a training step and
/// an evaluation never run at once), so they are allocated once, at the larger size.
#[derive(Default)]
struct SharedBuffers {
    buffers: Vec<GpuTensor>,
}

impl SharedBuffers {
    fn get(&mut self, gpu: &Gpu, index: usize, len: usize) -> Result<GpuTensor> {
        if index == self.buffers.len() {
            self.buffers.push(gpu.tensor(len)?);
        } else if self.buffers[index].len() < len {
            self.buffers[index] = gpu.tensor(len)?;
        }
        Ok(self.buffers[index].clone())
    }
}

/// Data fed per run: an input or labels node and its device tensor.
struct FedTensor {
    node: Node,
    tensor: GpuTensor,
}

/// A node's dispatches, which its op may rewrite before each run.
struct Lowered {
    node: NodeId,
    op: Arc<dyn Operation>,
    outputs: Vec<TensorType>,
    dispatches: Range<usize>,
    /// The node's label and FLOPs per run, for a profile.
    label: String,
    flops: u64,
}

/// Runs graphs on a device; owns the named tensors its runs share and the planned buffers
/// they take turns using (a training step and an evaluation never run at once).
pub struct GpuExecutor<'g> {
    gpu: &'g Gpu,
    named: HashMap<String, GpuTensor>,
    shared: SharedBuffers,
    runs: Vec<GpuRun>,
    profiling: bool,
}

impl<'g> GpuExecutor<'g> {
    /// An executor on `gpu`, holding nothing yet.
    pub fn new(gpu: &'g Gpu) -> Self {
        GpuExecutor { gpu, named: HashMap::new(), shared: SharedBuffers::default(), runs: Vec::new(), profiling: false }
    }

    /// Times every node of the runs prepared from now on: each node's dispatches run in a
    /// compute pass of their own, with timestamps around it where the adapter has them (else
    /// each node is submitted and waited for alone, timed by the host), and a run reads the
    /// timestamps back.
    pub fn profiled(gpu: &'g Gpu) -> Self {
        GpuExecutor { profiling: true, ..Self::new(gpu) }
    }

    /// Device memory of a prepared run.
    pub fn memory(&self, run: RunId) -> Memory {
        self.runs[run.0].memory
    }

    /// Kernel dispatches of one run of `run`.
    pub fn dispatch_count(&self, run: RunId) -> usize {
        self.runs[run.0].dispatches.len()
    }

    /// Bytes one run of `run` writes to the device (its fed inputs and labels) and reads back
    /// (its small outputs, copied in the run's own submission).
    pub fn transfers(&self, run: RunId) -> (u64, u64) {
        let run = &self.runs[run.0];
        let written = run.fed.iter().map(|f| f.tensor.bytes()).sum();
        (written, run.staged.iter().map(|(_, s)| Gpu::staged_bytes(s)).sum())
    }
}

impl Executor for GpuExecutor<'_> {
    fn name(&self) -> String {
        format!("gpu ({})", self.gpu.summary().name)
    }

    fn prepare(&mut self, graph: &Graph, mode: Mode, outputs: &[TensorId]) -> Result<RunId> {
        for (_, node) in graph.nodes() {
            if let Op::Param { name } | Op::State { name } = &node.op
                && !self.named.contains_key(name)
            {
                let zeros = self.gpu.upload(&vec![0f32; node.outputs[0].len()])?;
                self.named.insert(name.clone(), zeros);
            }
        }
        let mut run = GpuRun::new(self.gpu, graph, mode, outputs, &self.named, &mut self.shared)?;
        if self.profiling {
            run.times = Some(vec![(Duration::ZERO, 0); run.lowered.len()]);
        }
        self.runs.push(run);
        Ok(RunId(self.runs.len() - 1))
    }

    fn run(&mut self, run: RunId, feed: &Feed, step: u64) -> Result<()> {
        self.runs[run.0].run(self.gpu, feed, step)
    }

    /// Time per node of `run`, in run order; empty unless the executor is [`Self::profiled`].
    fn profile(&self, run: RunId) -> Vec<NodeTime> {
        let run = &self.runs[run.0];
        let Some(times) = &run.times else { return Vec::new() };
        (run.lowered.iter().zip(times))
            .map(|(l, &(time, calls))| NodeTime {
                node: l.node,
                label: l.label.clone(),
                op: l.op.kind(),
                time,
                calls,
                flops: l.flops,
            })
            .collect()
    }

    fn read(&self, run: RunId, t: TensorId) -> Result<Vec<f32>> {
        let r = &self.runs[run.0];
        if let Some((_, staged)) = r.staged.iter().find(|(s, _)| *s == t) {
            return Ok(self.gpu.read_staged(staged)?);
        }
        let tensor = r.outputs.get(&t).ok_or_else(|| not_an_output(&format!("node {}", t.node.0), t))?;
        Ok(self.gpu.read(tensor)?)
    }

    fn read_named(&self, name: &str) -> Result<Vec<f32>> {
        Ok(self.gpu.read(self.named.get(name).ok_or_else(|| unknown(name))?)?)
    }

    /// Writes into the existing tensor, so every prepared dispatch stays valid.
    fn write_named(&mut self, name: &str, values: &[f32]) -> Result<()> {
        match self.named.get(name) {
            Some(t) if t.len() != values.len() => Err(GraphError::Shape {
                node: name.into(),
                detail: format!("{} values for a tensor of {}", values.len(), t.len()),
            }),
            Some(t) => Ok(self.gpu.write(t, values)?),
            None => {
                self.named.insert(name.into(), self.gpu.upload(values)?);
                Ok(())
            }
        }
    }
}

/// A graph prepared to run on a device.
struct GpuRun {
    mode: Mode,
    fed: Vec<FedTensor>,
    dispatches: Vec<Dispatch>,
    lowered: Vec<Lowered>,
    /// The tensors of the outputs, readable after a run.
    outputs: HashMap<TensorId, GpuTensor>,
    /// The small outputs, copied to the host's side by every run.
    staged: Vec<(TensorId, Staged)>,
    memory: Memory,
    /// Per lowered node, the time it took and how many runs, when profiling.
    times: Option<Vec<(Duration, u32)>>,
}

impl GpuRun {
    /// Prepares the nodes that `outputs` depend on, in `mode`. `params` holds the tensor of
    /// every parameter and state by name; `shared` lends the planned buffers.
    fn new(
        gpu: &Gpu,
        graph: &Graph,
        mode: Mode,
        outputs: &[TensorId],
        params: &HashMap<String, GpuTensor>,
        shared: &mut SharedBuffers,
    ) -> Result<Self> {
        let plan = Plan::new(graph, outputs);
        let buffers: Vec<GpuTensor> = (plan.buffers.iter().enumerate())
            .map(|(i, &len)| shared.get(gpu, i, len).map_err(|e| name_too_large(e, graph, plan.largest_in(graph, i))))
            .collect::<Result<_>>()?;
        let mut exec = GpuRun {
            mode,
            fed: Vec::new(),
            dispatches: Vec::new(),
            lowered: Vec::new(),
            outputs: HashMap::new(),
            staged: Vec::new(),
            times: None,
            memory: Memory {
                planned: plan.planned_elements() as u64 * 4,
                unshared: plan.unshared_elements as u64 * 4,
                persistent: 0,
            },
        };
        let mut tensors: HashMap<TensorId, GpuTensor> = HashMap::new();
        for &id in &plan.order {
            let node = graph.node(id);
            let out = id.out(0);
            let tensor = match &node.op {
                Op::Param { name } | Op::State { name } => {
                    let t = params.get(name).ok_or_else(|| missing(node, name))?;
                    check_len(node, t.len())?;
                    t.clone()
                }
                Op::Input { .. } | Op::Labels { .. } => {
                    let tensor =
                        gpu.tensor(graph.numel(out)).map_err(|e| name_too_large(e.into(), graph, Some(out)))?;
                    exec.memory.persistent += tensor.bytes();
                    exec.fed.push(FedTensor { node: node.clone(), tensor: tensor.clone() });
                    tensor
                }
                Op::Fill(value) => {
                    let tensor = gpu.upload(&vec![*value; graph.numel(out)])?;
                    exec.memory.persistent += tensor.bytes();
                    tensor
                }
                Op::Compute(op) => {
                    let outs: Vec<GpuTensor> = (0..node.outputs.len())
                        .map(|slot| match slot == 0 && op.aliases_input() {
                            true => tensors[&node.inputs[0]].clone(),
                            false => buffers[plan.buffer[&id.out(slot)]].prefix(storage_len(graph, id.out(slot))),
                        })
                        .collect();
                    let call = GpuCall {
                        mode,
                        input_types: node.inputs.iter().map(|&t| graph.ty(t)).collect(),
                        output_types: &node.outputs,
                        wanted: &plan.wanted(graph, id),
                        inputs: node.inputs.iter().map(|t| tensors[t].clone()).collect(),
                        outputs: outs.clone(),
                    };
                    let start = exec.dispatches.len();
                    exec.dispatches.extend(op.gpu(gpu, &call)?);
                    exec.lowered.push(Lowered {
                        node: id,
                        op: op.clone(),
                        outputs: node.outputs.clone(),
                        dispatches: start..exec.dispatches.len(),
                        label: node.label.clone(),
                        flops: graph.node_flops(id, call.wanted),
                    });
                    for (slot, t) in outs.into_iter().enumerate() {
                        tensors.insert(id.out(slot), t);
                    }
                    continue;
                }
            };
            tensors.insert(out, tensor);
        }
        exec.outputs = outputs.iter().map(|&o| (o, tensors[&o].prefix(graph.numel(o)))).collect();
        // Outputs of their own (not a parameter an update wrote in place) and small.
        let small = |o: &&TensorId| graph.numel(**o) <= STAGED_ELEMENTS && !is_alias(graph, **o);
        for &o in outputs.iter().filter(small) {
            exec.staged.push((o, gpu.staged(&exec.outputs[&o])?));
        }
        Ok(exec)
    }

    /// Writes `feed` and runs the step, with the copies of its small outputs, as one submission
    /// (profiled: with each node's time, the copies after).
    fn run(&mut self, gpu: &Gpu, feed: &Feed, step: u64) -> Result<()> {
        for f in &self.fed {
            match &f.node.op {
                Op::Input { name } => gpu.write(&f.tensor, feed.input(&f.node, name)?)?,
                Op::Labels { name, classes } => gpu.write(&f.tensor, feed.labels(&f.node, name, *classes)?)?,
                _ => unreachable!("only inputs and labels are fed"),
            }
        }
        for l in &self.lowered {
            l.op.before_run(gpu, self.mode, &l.outputs, &self.dispatches[l.dispatches.clone()], step);
        }
        let copies: Vec<(&GpuTensor, &Staged)> = self.staged.iter().map(|(t, s)| (&self.outputs[t], s)).collect();
        let Some(times) = &mut self.times else {
            let all: Vec<&Dispatch> = self.dispatches.iter().collect();
            return Ok(gpu.run_with_copies(&all, &copies)?);
        };
        let per_node: Vec<Vec<&Dispatch>> =
            self.lowered.iter().map(|l| self.dispatches[l.dispatches.clone()].iter().collect()).collect();
        let groups: Vec<&[&Dispatch]> = per_node.iter().map(Vec::as_slice).collect();
        let (_, seconds) = kernels::timing::run_timed(gpu, &groups)?;
        for ((time, calls), s) in times.iter_mut().zip(seconds) {
            *time += Duration::from_secs_f64(s);
            *calls += 1;
        }
        Ok(gpu.run_with_copies(&[], &copies)?)
    }
}

/// A buffer beyond the adapter's limits, named by the tensor `t` that needs it, with advice.
fn name_too_large(e: GraphError, graph: &Graph, t: Option<TensorId>) -> GraphError {
    match (e, t) {
        (GraphError::Kernel(limit @ kernels::KernelError::TooLarge { .. }), Some(t)) => {
            GraphError::TooLarge { tensor: graph.describe(t), limit }
        }
        (e, _) => e,
    }
}

/// Elements up to which a run's output is copied to the host by the run itself.
const STAGED_ELEMENTS: usize = 4096;

fn missing(node: &Node, name: &str) -> GraphError {
    GraphError::MissingInput { node: node.label.clone(), name: name.into(), shape: node.outputs[0].shape.clone() }
}
