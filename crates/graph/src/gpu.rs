//! The GPU executor: a graph lowered once onto the kernels crate's prepared dispatches, over
//! buffers planned by liveness ([`crate::plan`]). A run writes the fed data, records every
//! dispatch of the step into one command encoder, submits once, and reads back only what the
//! caller asks for. Pipelines, bind groups and buffers are made when the executor is built,
//! so running it again allocates nothing.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use kernels::{Dispatch, Gpu, GpuTensor};

use crate::error::{GraphError, Result};
use crate::feed::{Feed, check_len};
use crate::ir::{Graph, Mode, Node, Op, TensorId, TensorType};
use crate::ops::{GpuCall, Operation};
use crate::plan::{Plan, storage_len};

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
pub struct SharedBuffers {
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
    op: Arc<dyn Operation>,
    outputs: Vec<TensorType>,
    dispatches: Range<usize>,
}

/// A graph prepared to run on a device.
pub struct GpuExecutor<'g> {
    gpu: &'g Gpu,
    mode: Mode,
    fed: Vec<FedTensor>,
    dispatches: Vec<Dispatch>,
    lowered: Vec<Lowered>,
    /// The tensors of the outputs, readable after a run.
    outputs: HashMap<TensorId, GpuTensor>,
    memory: Memory,
}

impl<'g> GpuExecutor<'g> {
    /// Prepares the nodes that `outputs` depend on, in `mode`. `params` holds the tensor of
    /// every parameter and state by name; `shared` lends the planned buffers.
    pub fn new(
        gpu: &'g Gpu,
        graph: &Graph,
        mode: Mode,
        outputs: &[TensorId],
        params: &HashMap<String, GpuTensor>,
        shared: &mut SharedBuffers,
    ) -> Result<Self> {
        let plan = Plan::new(graph, outputs);
        let buffers: Vec<GpuTensor> =
            plan.buffers.iter().enumerate().map(|(i, &len)| shared.get(gpu, i, len)).collect::<Result<_>>()?;
        let mut exec = GpuExecutor {
            gpu,
            mode,
            fed: Vec::new(),
            dispatches: Vec::new(),
            lowered: Vec::new(),
            outputs: HashMap::new(),
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
                    let tensor = gpu.tensor(graph.numel(out))?;
                    exec.memory.persistent += tensor.bytes();
                    exec.fed.push(FedTensor { node: node.clone(), tensor: tensor.clone() });
                    tensor
                }
                Op::Fill(value) => {
                    let tensor = gpu.upload(&vec![*value; graph.numel(out)])?;
                    exec.memory.persistent += tensor.bytes();
                    tensor
                }
                Op::Compute(op) if op.is_view() => tensors[&node.inputs[0]].clone(),
                Op::Compute(op) => {
                    let outs: Vec<GpuTensor> = (0..node.outputs.len())
                        .map(|slot| buffers[plan.buffer[&id.out(slot)]].prefix(storage_len(graph, id.out(slot))))
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
                    let dispatches = start..exec.dispatches.len();
                    exec.lowered.push(Lowered { op: op.clone(), outputs: node.outputs.clone(), dispatches });
                    for (slot, t) in outs.into_iter().enumerate() {
                        tensors.insert(id.out(slot), t);
                    }
                    continue;
                }
            };
            tensors.insert(out, tensor);
        }
        exec.outputs = outputs.iter().map(|&o| (o, tensors[&o].prefix(graph.numel(o)))).collect();
        Ok(exec)
    }

    /// Writes `feed` and runs the step as one submission, followed by `after` (an
    /// optimizer's updates) in the same command encoder.
    pub fn run_with(&self, feed: &Feed, after: &[&Dispatch]) -> Result<()> {
        for f in &self.fed {
            match &f.node.op {
                Op::Input { name } => self.gpu.write(&f.tensor, feed.input(&f.node, name)?)?,
                Op::Labels { name, classes } => self.gpu.write(&f.tensor, feed.labels(&f.node, name, *classes)?)?,
                _ => unreachable!("only inputs and labels are fed"),
            }
        }
        for l in &self.lowered {
            l.op.before_run(self.gpu, self.mode, &l.outputs, &self.dispatches[l.dispatches.clone()], feed.step);
        }
        let all: Vec<&Dispatch> = self.dispatches.iter().chain(after.iter().copied()).collect();
        Ok(self.gpu.run(&all)?)
    }

    pub fn run(&self, feed: &Feed) -> Result<()> {
        self.run_with(feed, &[])
    }

    /// The device tensor of an output (to chain more dispatches onto it).
    pub fn output(&self, t: TensorId) -> &GpuTensor {
        &self.outputs[&t]
    }

    /// Reads an output back to the host.
    pub fn read(&self, t: TensorId) -> Result<Vec<f32>> {
        Ok(self.gpu.read(self.output(t))?)
    }

    pub fn memory(&self) -> Memory {
        self.memory
    }

    /// Kernel dispatches of one run.
    pub fn dispatch_count(&self) -> usize {
        self.dispatches.len()
    }
}

fn missing(node: &Node, name: &str) -> GraphError {
    GraphError::MissingInput { node: node.label.clone(), name: name.into(), shape: node.outputs[0].shape.clone() }
}
