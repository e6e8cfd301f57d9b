//! The GPU executor: a graph lowered once onto the kernels crate's prepared dispatches, over
//! buffers planned by liveness ([`crate::plan`]). A run writes the fed data, records every
//! dispatch of the step into one command encoder, submits once, and reads back only what the
//! caller asks for. Pipelines, bind groups and buffers are made when the executor is built,
//! so running it again allocates nothing.

use std::collections::HashMap;

use kernels::{
    Broadcast, CrossEntropy, Dispatch, Dropout, Gpu, GpuTensor, Matmul, ReduceOp, Reduction, StridedCopy, conv,
    dropout, elementwise, layout, matmul, norm, pool, reduce, softmax,
};

use crate::error::{GraphError, Result};
use crate::feed::{Feed, check_len};
use crate::ir::{
    Graph, Mode, Node, NodeId, Op, batch_norm_shape, conv_shape, layer_norm_shape, pool_shape, sum_to_steps,
};
use crate::plan::{Needs, Plan, Storage};

/// Device memory of an executor, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// The planned buffers that the step's intermediate tensors share.
    pub planned: u64,
    /// What those tensors would take with one buffer each.
    pub unshared: u64,
    /// Parameters, fed data and constants.
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

/// A graph prepared to run on a device.
pub struct GpuExecutor<'g> {
    gpu: &'g Gpu,
    fed: Vec<FedTensor>,
    dispatches: Vec<Dispatch>,
    /// Indices into `dispatches` of the dropouts, whose mask stream follows the fed step.
    dropouts: Vec<(usize, Dropout)>,
    /// The tensors of the outputs, readable after a run.
    outputs: HashMap<NodeId, GpuTensor>,
    memory: Memory,
}

impl<'g> GpuExecutor<'g> {
    /// Prepares the nodes that `outputs` depend on, in `mode`. `params` holds the tensor of
    /// every parameter and state by name; `shared` lends the planned buffers.
    pub fn new(
        gpu: &'g Gpu,
        graph: &Graph,
        mode: Mode,
        outputs: &[NodeId],
        params: &HashMap<String, GpuTensor>,
        shared: &mut SharedBuffers,
    ) -> Result<Self> {
        let plan = Plan::new(graph, outputs, |id| needs(graph, graph.node(id)));
        let buffers: Vec<GpuTensor> =
            plan.buffers.iter().enumerate().map(|(i, &len)| shared.get(gpu, i, len)).collect::<Result<_>>()?;
        let mut tensors: Vec<Option<GpuTensor>> = vec![None; graph.nodes().count()];
        let mut fed = Vec::new();
        let mut persistent = 0;
        let mut dispatches = Vec::new();
        let mut dropouts = Vec::new();
        for &id in &plan.order {
            let node = graph.node(id);
            let tensor = match (&node.op, plan.output[id.0]) {
                (Op::Param { name } | Op::State { name }, _) => {
                    let t = params.get(name).ok_or_else(|| missing(node, name))?;
                    check_len(node, t.len())?;
                    t.clone()
                }
                (Op::Input { .. } | Op::Labels { .. }, _) => {
                    let tensor = gpu.tensor(node.len())?;
                    persistent += tensor.bytes();
                    fed.push(FedTensor { node: node.clone(), tensor: tensor.clone() });
                    tensor
                }
                (Op::Fill(value), _) => {
                    let tensor = gpu.upload(&vec![*value; node.len()])?;
                    persistent += tensor.bytes();
                    tensor
                }
                (Op::Reshape, _) => tensors[node.inputs[0].0].clone().expect("inputs run first"),
                (_, Some(buffer)) => buffers[buffer].prefix(node.len()),
                (_, None) => unreachable!("every computed node has a planned buffer"),
            };
            let inputs: Vec<GpuTensor> =
                node.inputs.iter().map(|i| tensors[i.0].clone().expect("inputs run first")).collect();
            let scratch: Vec<GpuTensor> = plan.scratch[id.0]
                .iter()
                .zip(&needs(graph, node).scratch)
                .map(|(&b, &len)| buffers[b].prefix(len))
                .collect();
            // The cross-entropy writes its mean and the rows it counted; the node is the mean.
            let out = match plan.output[id.0] {
                Some(buffer) if matches!(node.op, Op::CrossEntropy { .. }) => buffers[buffer].prefix(2),
                _ => tensor.clone(),
            };
            if let (Op::Dropout { p, seed }, Mode::Train) = (&node.op, mode) {
                let d = Dropout { n: node.len(), p: *p, seed: *seed, stream: 0 };
                dropouts.push((dispatches.len(), d));
                dispatches.push(dropout::dropout(gpu, &d, &inputs[0], &out)?);
            } else {
                dispatches.extend(lower(gpu, graph, mode, node, &out, &inputs, &scratch)?);
            }
            tensors[id.0] = Some(tensor);
        }
        let outputs = outputs.iter().map(|&o| (o, tensors[o.0].clone().expect("planned"))).collect();
        let memory = Memory {
            planned: plan.planned_elements() as u64 * 4,
            unshared: plan.unshared_elements as u64 * 4,
            persistent,
        };
        Ok(GpuExecutor { gpu, fed, dispatches, dropouts, outputs, memory })
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
        for &(i, d) in &self.dropouts {
            dropout::set_stream(self.gpu, &self.dispatches[i], &Dropout { stream: feed.step, ..d });
        }
        let all: Vec<&Dispatch> = self.dispatches.iter().chain(after.iter().copied()).collect();
        Ok(self.gpu.run(&all)?)
    }

    pub fn run(&self, feed: &Feed) -> Result<()> {
        self.run_with(feed, &[])
    }

    /// The device tensor of an output (to chain more dispatches onto it).
    pub fn output(&self, node: NodeId) -> &GpuTensor {
        &self.outputs[&node]
    }

    /// Reads an output back to the host.
    pub fn read(&self, node: NodeId) -> Result<Vec<f32>> {
        Ok(self.gpu.read(self.output(node))?)
    }

    pub fn memory(&self) -> Memory {
        self.memory
    }
}

/// The buffer plan the GPU executor would make for `outputs` of `graph`, without a device
/// (for summaries): planned bytes against one buffer per tensor.
pub fn planned_memory(graph: &Graph, outputs: &[NodeId]) -> (u64, u64) {
    let plan = Plan::new(graph, outputs, |id| needs(graph, graph.node(id)));
    (plan.planned_elements() as u64 * 4, plan.unshared_elements as u64 * 4)
}

fn missing(node: &Node, name: &str) -> GraphError {
    GraphError::MissingInput { node: node.label.clone(), name: name.into(), shape: node.shape.clone() }
}

/// Where a node's output lives and what scratch it needs (the order [`lower`] uses them in).
fn needs(graph: &Graph, node: &Node) -> Needs {
    let shape_of = |k: usize| graph.shape(node.inputs[k]);
    let planned = |scratch: Vec<usize>| Needs { output: Storage::Planned(node.len()), scratch };
    match &node.op {
        Op::Input { .. } | Op::Labels { .. } | Op::Param { .. } | Op::State { .. } | Op::Fill(_) => {
            Needs { output: Storage::Persistent, scratch: vec![] }
        }
        Op::Reshape => Needs { output: Storage::Alias, scratch: vec![] },
        Op::Conv2d(geo) => {
            let c = conv_shape(shape_of(0), shape_of(1), geo);
            planned(vec![c.col_rows() * c.col_cols(), c.output_len()])
        }
        Op::Conv2dGradWeight(geo) => {
            let c = conv_shape(shape_of(0), &node.shape, geo);
            planned(vec![c.col_rows() * c.col_cols(), c.output_len()])
        }
        Op::Conv2dGradInput(geo) => {
            let c = conv_shape(&node.shape, shape_of(0), geo);
            planned(vec![c.output_len(), c.col_rows() * c.col_cols()])
        }
        Op::MaxPool2d(geo) => planned(vec![pool_shape(shape_of(0), geo).output_len()]),
        Op::MaxPool2dGrad(geo) => {
            let out = pool_shape(shape_of(0), geo).output_len();
            planned(vec![out, out])
        }
        Op::LayerNorm { eps } => planned(vec![2 * layer_norm_shape(&node.shape, *eps).rows]),
        Op::LayerNormGradInput { eps } | Op::LayerNormGradGamma { eps } => {
            let ln = layer_norm_shape(shape_of(0), *eps);
            let n = ln.rows * ln.features;
            planned(vec![n, 2 * ln.rows, ln.features, n.max(ln.features)])
        }
        Op::BatchNorm { .. } => planned(vec![2 * node.shape[1]]),
        // Recomputed statistics, then the backward's other two outputs.
        Op::BatchNormGradInput { .. } | Op::BatchNormGradGamma { .. } => {
            let x = shape_of(0);
            let (c, n) = (x[1], x.iter().product::<usize>());
            planned(vec![n, 2 * c, c, c, n])
        }
        Op::CrossEntropy { .. } => Needs { output: Storage::Planned(2), scratch: vec![2 * shape_of(0)[0]] },
        Op::CrossEntropyGrad { .. } => planned(vec![2 * shape_of(0)[0], 2]),
        Op::Correct { .. } => planned(vec![shape_of(0)[0]]),
        Op::BceWithLogits => planned(vec![graph.node(node.inputs[0]).len()]),
        Op::SumTo => planned(sum_to_steps(shape_of(0), &node.shape).iter().skip(1).map(Reduction::input_len).collect()),
        Op::MatMul { .. }
        | Op::Binary(_)
        | Op::Unary(_)
        | Op::UnaryGrad(_)
        | Op::AvgPool2d(_)
        | Op::AvgPool2dGrad(_)
        | Op::Softmax { .. }
        | Op::SoftmaxGrad { .. }
        | Op::Concat { .. }
        | Op::Slice { .. }
        | Op::Dropout { .. } => planned(vec![]),
    }
}

/// The dispatches that compute `node` into `out` from its `inputs`, using `scratch` as
/// [`needs`] listed it.
fn lower(
    gpu: &Gpu,
    graph: &Graph,
    mode: Mode,
    node: &Node,
    out: &GpuTensor,
    inputs: &[GpuTensor],
    scratch: &[GpuTensor],
) -> Result<Vec<Dispatch>> {
    let shape_of = |k: usize| graph.shape(node.inputs[k]);
    let x = |k: usize| &inputs[k];
    let n = node.len();
    Ok(match &node.op {
        Op::Input { .. } | Op::Labels { .. } | Op::Param { .. } | Op::State { .. } | Op::Fill(_) | Op::Reshape => {
            vec![]
        }
        // Training-mode dropout is prepared by the executor, which re-streams it every run.
        Op::Dropout { .. } => {
            let copy = StridedCopy::slice(&[n], 0, 0, n).expect("whole range");
            vec![layout::strided_copy(gpu, &copy, x(0), out)?]
        }
        Op::BatchNorm { eps, momentum } => {
            let bn = batch_norm_shape(&node.shape, *eps, *momentum, mode);
            norm::batch_norm(gpu, &bn, x(0), x(1), x(2), x(3), x(4), &scratch[0], out)?.into()
        }
        // Both gradients find the forward's statistics again (momentum 0 leaves the running
        // ones as they are), then run the backward, keeping the output they are.
        Op::BatchNormGradInput { eps } => {
            let bn = batch_norm_shape(&node.shape, *eps, 0.0, mode);
            let [y, saved, dgamma, dbeta] = [&scratch[0], &scratch[1], &scratch[2], &scratch[3]];
            let mut d: Vec<Dispatch> = norm::batch_norm(gpu, &bn, x(0), x(1), x(1), x(2), x(3), saved, y)?.into();
            d.extend(norm::batch_norm_backward(gpu, &bn, x(0), x(4), saved, x(1), dgamma, dbeta, out)?);
            d
        }
        Op::BatchNormGradGamma { eps } => {
            let bn = batch_norm_shape(shape_of(0), *eps, 0.0, mode);
            let [y, saved, dbeta, dx] = [&scratch[0], &scratch[1], &scratch[3], &scratch[4]];
            // gamma and beta do not change the statistics; any [C] tensor stands in for them.
            let any_c = x(1);
            let mut d: Vec<Dispatch> = norm::batch_norm(gpu, &bn, x(0), any_c, any_c, x(1), x(2), saved, y)?.into();
            d.extend(norm::batch_norm_backward(gpu, &bn, x(0), x(3), saved, any_c, out, dbeta, dx)?);
            d
        }
        Op::MatMul { transpose_a, transpose_b } => {
            let sa = shape_of(0);
            let (m, k) = if *transpose_a { (sa[1], sa[0]) } else { (sa[0], sa[1]) };
            let mut mm = Matmul::new(m, node.shape[1], k);
            if *transpose_a {
                mm = mm.transpose_a();
            }
            if *transpose_b {
                mm = mm.transpose_b();
            }
            matmul::matmul(gpu, &mm, x(0), x(1), None, out)?
        }
        Op::Binary(op) => {
            let broadcast = Broadcast::new(shape_of(0), shape_of(1)).expect("checked when built");
            vec![elementwise::binary(gpu, *op, &broadcast, x(0), x(1), out)?]
        }
        Op::Unary(op) => vec![elementwise::unary(gpu, *op, x(0), out, n)?],
        Op::UnaryGrad(op) => vec![elementwise::unary_backward(gpu, *op, x(0), x(1), out, n)?],
        Op::SumTo => {
            let steps = sum_to_steps(shape_of(0), &node.shape);
            if steps.is_empty() {
                let copy = StridedCopy::slice(&[n], 0, 0, n).expect("whole range");
                return Ok(vec![layout::strided_copy(gpu, &copy, x(0), out)?]);
            }
            // Each step reads the previous one's result: the input, then scratch, then out.
            let mut sources = std::iter::once(x(0)).chain(scratch);
            let mut targets = scratch.iter().chain(std::iter::once(out));
            steps
                .iter()
                .map(|r| reduce::reduce(gpu, ReduceOp::Sum, r, sources.next().unwrap(), targets.next().unwrap()))
                .collect::<kernels::Result<_>>()?
        }
        Op::Conv2d(geo) => {
            let c = conv_shape(shape_of(0), shape_of(1), geo);
            conv::forward(gpu, &c, x(0), x(1), inputs.get(2), &scratch[0], &scratch[1], out)?
        }
        Op::Conv2dGradWeight(geo) => {
            let c = conv_shape(shape_of(0), &node.shape, geo);
            let mut d = vec![conv::im2col(gpu, &c, x(0), &scratch[0])?];
            d.extend(conv::backward_weight(gpu, &c, x(1), &scratch[0], &scratch[1], out, None)?);
            d
        }
        Op::Conv2dGradInput(geo) => {
            let c = conv_shape(&node.shape, shape_of(0), geo);
            let mut d = vec![layout::strided_copy(gpu, &c.grad_from_nchw(), x(1), &scratch[0])?];
            d.extend(conv::backward_input(gpu, &c, x(0), &scratch[0], &scratch[1], out)?);
            d
        }
        Op::MaxPool2d(geo) => vec![pool::max_pool(gpu, &pool_shape(shape_of(0), geo), x(0), out, &scratch[0])?],
        Op::MaxPool2dGrad(geo) => {
            // The winners of the windows are found again rather than kept from the forward.
            let p = pool_shape(shape_of(0), geo);
            vec![
                pool::max_pool(gpu, &p, x(0), &scratch[0], &scratch[1])?,
                pool::max_pool_backward(gpu, &p, x(1), &scratch[1], out)?,
            ]
        }
        Op::AvgPool2d(geo) => vec![pool::avg_pool(gpu, &pool_shape(shape_of(0), geo), x(0), out)?],
        Op::AvgPool2dGrad(geo) => vec![pool::avg_pool_backward(gpu, &pool_shape(&node.shape, geo), x(0), out)?],
        Op::LayerNorm { eps } => {
            let ln = layer_norm_shape(&node.shape, *eps);
            vec![norm::layer_norm(gpu, &ln, x(0), x(1), x(2), out, &scratch[0])?]
        }
        // Both gradients recompute the row statistics from x. The statistics do not depend on
        // gamma and beta, so any tensor long enough stands in for them where the kernel wants
        // one whose values do not matter (x itself).
        Op::LayerNormGradInput { eps } => {
            let ln = layer_norm_shape(shape_of(0), *eps);
            let (y, saved, dgamma, dbeta) = (&scratch[0], &scratch[1], &scratch[2], &scratch[3]);
            let mut d = vec![norm::layer_norm(gpu, &ln, x(0), x(1), x(1), y, saved)?];
            d.extend(norm::layer_norm_backward(gpu, &ln, x(0), x(2), saved, x(1), dgamma, dbeta, out)?);
            d
        }
        Op::LayerNormGradGamma { eps } => {
            let ln = layer_norm_shape(shape_of(0), *eps);
            let (y, saved, dbeta, dx) = (&scratch[0], &scratch[1], &scratch[2], &scratch[3]);
            let mut d = vec![norm::layer_norm(gpu, &ln, x(0), x(0), x(0), y, saved)?];
            d.extend(norm::layer_norm_backward(gpu, &ln, x(0), x(1), saved, x(0), out, dbeta, dx)?);
            d
        }
        Op::Softmax { log } => {
            let cols = *node.shape.last().unwrap();
            vec![softmax::softmax(gpu, *log, n / cols, cols, x(0), out)?]
        }
        Op::SoftmaxGrad { log } => {
            let cols = *node.shape.last().unwrap();
            vec![softmax::softmax_backward(gpu, *log, n / cols, cols, x(0), x(1), out)?]
        }
        Op::Concat { axis } => {
            let mut start = 0;
            let mut d = Vec::new();
            for k in 0..inputs.len() {
                let place = StridedCopy::place(shape_of(k), &node.shape, *axis, start).expect("checked when built");
                d.push(layout::strided_copy(gpu, &place, x(k), out)?);
                start += shape_of(k)[*axis];
            }
            d
        }
        Op::Slice { axis, start } => {
            let slice = StridedCopy::slice(shape_of(0), *axis, *start, node.shape[*axis]).expect("checked when built");
            vec![layout::strided_copy(gpu, &slice, x(0), out)?]
        }
        Op::CrossEntropy { label_smoothing } => {
            let ce = cross_entropy(shape_of(0), *label_smoothing);
            softmax::cross_entropy(gpu, &ce, x(0), x(1), &scratch[0], out)?.into()
        }
        Op::CrossEntropyGrad { label_smoothing } => {
            let ce = cross_entropy(shape_of(0), *label_smoothing);
            let (rows, loss) = (&scratch[0], &scratch[1]);
            let mut d: Vec<Dispatch> = softmax::cross_entropy(gpu, &ce, x(0), x(1), rows, loss)?.into();
            d.push(softmax::cross_entropy_backward(gpu, &ce, x(0), x(1), rows, loss, x(2), out)?);
            d
        }
        Op::BceWithLogits => {
            let len = x(0).len();
            let all = Reduction { outer: 1, axis: len, inner: 1 };
            vec![
                softmax::bce_with_logits_terms(gpu, len, x(0), x(1), &scratch[0])?,
                reduce::reduce(gpu, ReduceOp::Sum, &all, &scratch[0], out)?,
            ]
        }
        Op::Correct { top_k } => {
            let (rows, classes) = (shape_of(0)[0], shape_of(0)[1]);
            let all = Reduction { outer: 1, axis: rows, inner: 1 };
            vec![
                softmax::top_k_hits(gpu, rows, classes, *top_k, x(0), x(1), &scratch[0])?,
                reduce::reduce(gpu, ReduceOp::Sum, &all, &scratch[0], out)?,
            ]
        }
    })
}

fn cross_entropy(logits: &[usize], label_smoothing: f32) -> CrossEntropy {
    CrossEntropy { rows: logits[0], classes: logits[1], label_smoothing, ignore_index: None }
}
