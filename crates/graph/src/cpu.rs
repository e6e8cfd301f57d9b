//! The reference executor: evaluates every node in order on the kernels crate's CPU
//! implementations (`kernels::cpu`), the same code the kernel tests hold the GPU to. Clear
//! before clever: it allocates each node's output.

use std::collections::HashMap;

use kernels::{BatchNorm, Broadcast, CrossEntropy, Dropout, Matmul, ReduceOp, StridedCopy, cpu};

use crate::error::Result;
use crate::feed::{Feed, present};
use crate::ir::{
    Graph, Mode, Node, NodeId, Op, batch_norm_shape, conv_shape, layer_norm_shape, pool_shape, sum_to_steps,
};

/// Runs a graph on the CPU.
pub struct CpuExecutor<'g> {
    graph: &'g Graph,
    mode: Mode,
}

/// A node's value: f32 data, or u32 class labels.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    F32(Vec<f32>),
    U32(Vec<u32>),
}

/// The values of the nodes a run computed.
#[derive(Debug, Clone)]
pub struct Values {
    values: Vec<Option<Value>>,
    /// New values of the state tensors the run updated (training-mode batch norm), by name.
    pub updated_state: HashMap<String, Vec<f32>>,
}

impl Values {
    /// The f32 value of `node`, which the run computed.
    pub fn get(&self, node: NodeId) -> &[f32] {
        match &self.values[node.0] {
            Some(Value::F32(v)) => v,
            Some(Value::U32(_)) => panic!("node {node:?} holds labels, not f32 data"),
            None => panic!("node {node:?} was not computed by this run"),
        }
    }

    /// A scalar node's value.
    pub fn scalar(&self, node: NodeId) -> f32 {
        self.get(node)[0]
    }
}

impl<'g> CpuExecutor<'g> {
    pub fn new(graph: &'g Graph, mode: Mode) -> Self {
        CpuExecutor { graph, mode }
    }

    /// Evaluates every node, with `params` by state_dict name.
    pub fn run(&self, params: &HashMap<String, Vec<f32>>, feed: &Feed) -> Result<Values> {
        let all: Vec<NodeId> = self.graph.nodes().map(|(id, _)| id).collect();
        self.run_for(params, feed, &all)
    }

    /// Evaluates `outputs` and the nodes they depend on, nothing else.
    pub fn run_for(&self, params: &HashMap<String, Vec<f32>>, feed: &Feed, outputs: &[NodeId]) -> Result<Values> {
        let mut run = Values { values: vec![None; self.graph.nodes().count()], updated_state: HashMap::new() };
        for id in self.graph.ancestors(outputs) {
            let value = self.eval(self.graph.node(id), &mut run, params, feed)?;
            run.values[id.0] = Some(value);
        }
        Ok(run)
    }

    fn eval(&self, node: &Node, run: &mut Values, params: &HashMap<String, Vec<f32>>, feed: &Feed) -> Result<Value> {
        let values = &run.values;
        let f = |k: usize| match &values[node.inputs[k].0] {
            Some(Value::F32(v)) => v.as_slice(),
            _ => unreachable!("shape inference keeps labels out of f32 ops; inputs come first"),
        };
        let shape_of = |k: usize| self.graph.shape(node.inputs[k]);
        let mut out = vec![0f32; node.len()];
        match &node.op {
            Op::Input { name } => return Ok(Value::F32(feed.input(node, name)?.to_vec())),
            Op::Param { name } | Op::State { name } => {
                return Ok(Value::F32(present(node, name, params.get(name))?.to_vec()));
            }
            Op::Labels { name, classes } => return Ok(Value::U32(feed.labels(node, name, *classes)?.to_vec())),
            Op::Fill(v) => out.fill(*v),
            Op::MatMul { transpose_a, transpose_b } => {
                let (sa, sb) = (shape_of(0), shape_of(1));
                let (m, k) = if *transpose_a { (sa[1], sa[0]) } else { (sa[0], sa[1]) };
                let n = if *transpose_b { sb[0] } else { sb[1] };
                let mut mm = Matmul::new(m, n, k);
                if *transpose_a {
                    mm = mm.transpose_a();
                }
                if *transpose_b {
                    mm = mm.transpose_b();
                }
                cpu::matmul(&mm, f(0), f(1), None, &mut out);
            }
            Op::Binary(op) => {
                let broadcast = Broadcast::new(shape_of(0), shape_of(1)).expect("checked when built");
                cpu::binary(*op, &broadcast, f(0), f(1), &mut out);
            }
            Op::Unary(op) => cpu::unary(*op, f(0), &mut out),
            Op::UnaryGrad(op) => cpu::unary_backward(*op, f(0), f(1), &mut out),
            Op::SumTo => sum_to(&node.shape, shape_of(0), f(0), &mut out),
            Op::Conv2d(geo) => {
                let bias = (node.inputs.len() == 3).then(|| f(2));
                cpu::conv2d_forward(&conv_shape(shape_of(0), shape_of(1), geo), f(0), f(1), bias, &mut out)
            }
            Op::Conv2dGradInput(geo) => {
                let conv = conv_shape(&node.shape, shape_of(0), geo);
                cpu::conv2d_backward_input(&conv, f(0), f(1), &mut out);
            }
            Op::Conv2dGradWeight(geo) => {
                let conv = conv_shape(shape_of(0), &node.shape, geo);
                cpu::conv2d_backward_weight(&conv, f(0), f(1), &mut out, None);
            }
            Op::MaxPool2d(geo) => {
                let pool = pool_shape(shape_of(0), geo);
                cpu::max_pool(&pool, f(0), &mut out, &mut vec![0; pool.output_len()]);
            }
            Op::MaxPool2dGrad(geo) => {
                // The CPU recomputes each window's winner from x rather than keeping it.
                let pool = pool_shape(shape_of(0), geo);
                let (mut y, mut argmax) = (vec![0.0; pool.output_len()], vec![0; pool.output_len()]);
                cpu::max_pool(&pool, f(0), &mut y, &mut argmax);
                cpu::max_pool_backward(&pool, f(1), &argmax, &mut out);
            }
            Op::AvgPool2d(geo) => cpu::avg_pool(&pool_shape(shape_of(0), geo), f(0), &mut out),
            Op::AvgPool2dGrad(geo) => cpu::avg_pool_backward(&pool_shape(&node.shape, geo), f(0), &mut out),
            Op::Reshape => out.copy_from_slice(f(0)),
            Op::LayerNorm { eps } => {
                let ln = layer_norm_shape(&node.shape, *eps);
                cpu::layer_norm(&ln, f(0), f(1), f(2), &mut out, &mut vec![0.0; 2 * ln.rows]);
            }
            Op::LayerNormGradInput { eps } => {
                let (ln, saved) = layer_norm_stats(&node.shape, *eps, f(0));
                let (mut dgamma, mut dbeta) = (vec![0.0; ln.features], vec![0.0; ln.features]);
                cpu::layer_norm_backward(&ln, f(0), f(2), &saved, f(1), &mut dgamma, &mut dbeta, &mut out);
            }
            Op::LayerNormGradGamma { eps } => {
                let (ln, saved) = layer_norm_stats(shape_of(0), *eps, f(0));
                let (ones, mut dbeta, mut dx) = (vec![1.0; ln.features], vec![0.0; ln.features], vec![0.0; f(0).len()]);
                cpu::layer_norm_backward(&ln, f(0), f(1), &saved, &ones, &mut out, &mut dbeta, &mut dx);
            }
            Op::BatchNorm { eps, momentum } => {
                let bn = batch_norm_shape(&node.shape, *eps, *momentum, self.mode);
                let (mut mean, mut var) = (f(3).to_vec(), f(4).to_vec());
                let mut saved = vec![0.0; 2 * bn.channels];
                cpu::batch_norm(&bn, f(0), f(1), f(2), &mut mean, &mut var, &mut saved, &mut out);
                if self.mode == Mode::Train {
                    let [mean_name, var_name] = [3, 4].map(|k| state_name(self.graph, node.inputs[k]));
                    run.updated_state.insert(mean_name, mean);
                    run.updated_state.insert(var_name, var);
                }
            }
            Op::BatchNormGradInput { eps } => {
                let (bn, saved) = self.batch_norm_stats(&node.shape, *eps, f(0), f(2), f(3));
                let (mut dgamma, mut dbeta) = (vec![0.0; bn.channels], vec![0.0; bn.channels]);
                cpu::batch_norm_backward(&bn, f(0), f(4), &saved, f(1), &mut dgamma, &mut dbeta, &mut out);
            }
            Op::BatchNormGradGamma { eps } => {
                let (bn, saved) = self.batch_norm_stats(shape_of(0), *eps, f(0), f(1), f(2));
                let (ones, mut dbeta, mut dx) = (vec![1.0; bn.channels], vec![0.0; bn.channels], vec![0.0; bn.len()]);
                cpu::batch_norm_backward(&bn, f(0), f(3), &saved, &ones, &mut out, &mut dbeta, &mut dx);
            }
            Op::Dropout { p, seed } => match self.mode {
                Mode::Train => {
                    cpu::dropout(&Dropout { n: node.len(), p: *p, seed: *seed, stream: feed.step }, f(0), &mut out)
                }
                Mode::Eval => out.copy_from_slice(f(0)),
            },
            Op::Softmax { log } => {
                let cols = *node.shape.last().unwrap();
                cpu::softmax(*log, node.len() / cols, cols, f(0), &mut out);
            }
            Op::SoftmaxGrad { log } => {
                let cols = *node.shape.last().unwrap();
                cpu::softmax_backward(*log, node.len() / cols, cols, f(0), f(1), &mut out);
            }
            Op::Concat { axis } => {
                let mut start = 0;
                for k in 0..node.inputs.len() {
                    let place = StridedCopy::place(shape_of(k), &node.shape, *axis, start).expect("checked when built");
                    cpu::strided_copy(&place, f(k), &mut out);
                    start += shape_of(k)[*axis];
                }
            }
            Op::Slice { axis, start } => {
                let slice =
                    StridedCopy::slice(shape_of(0), *axis, *start, node.shape[*axis]).expect("checked when built");
                cpu::strided_copy(&slice, f(0), &mut out);
            }
            Op::CrossEntropy { label_smoothing } => {
                let ce = cross_entropy(shape_of(0), *label_smoothing);
                let mut rows = vec![0.0; 2 * ce.rows];
                let mut loss = [0.0; 2];
                cpu::cross_entropy(&ce, f(0), labels(values, node.inputs[1]), &mut rows, &mut loss);
                out[0] = loss[0];
            }
            Op::CrossEntropyGrad { label_smoothing } => {
                let ce = cross_entropy(shape_of(0), *label_smoothing);
                cpu::cross_entropy_backward(&ce, f(0), labels(values, node.inputs[1]), f(2)[0], &mut out);
            }
            Op::BceWithLogits => {
                let mut terms = vec![0.0; f(0).len()];
                cpu::bce_with_logits_terms(f(0), f(1), &mut terms);
                out[0] = terms.iter().map(|&v| v as f64).sum::<f64>() as f32;
            }
            Op::Correct { top_k } => {
                let [rows, classes] = shape_of(0)[..] else { unreachable!("checked when built") };
                let mut hits = vec![0.0; rows];
                cpu::top_k_hits(rows, classes, *top_k, f(0), labels(values, node.inputs[1]), &mut hits);
                out[0] = hits.iter().sum();
            }
        }
        Ok(Value::F32(out))
    }
}

fn labels(values: &[Option<Value>], id: NodeId) -> &[u32] {
    match &values[id.0] {
        Some(Value::U32(v)) => v,
        _ => unreachable!("shape inference checks the labels input, which comes first"),
    }
}

impl CpuExecutor<'_> {
    /// A batch norm's shape and the statistics it normalises `x` with in this mode, found
    /// again for the backward pass (momentum 0: the running statistics stay as they are).
    fn batch_norm_stats(
        &self,
        x_shape: &[usize],
        eps: f32,
        x: &[f32],
        mean: &[f32],
        var: &[f32],
    ) -> (BatchNorm, Vec<f32>) {
        let bn = batch_norm_shape(x_shape, eps, 0.0, self.mode);
        let (ones, zeros) = (vec![1.0; bn.channels], vec![0.0; bn.channels]);
        let (mut mean, mut var) = (mean.to_vec(), var.to_vec());
        let (mut y, mut saved) = (vec![0.0; x.len()], vec![0.0; 2 * bn.channels]);
        cpu::batch_norm(&bn, x, &ones, &zeros, &mut mean, &mut var, &mut saved, &mut y);
        (bn, saved)
    }
}

fn state_name(graph: &Graph, id: NodeId) -> String {
    match &graph.node(id).op {
        Op::State { name } => name.clone(),
        _ => unreachable!("batch norm's running statistics are state nodes"),
    }
}

/// A layer norm's shape and the statistics of `x` it normalises with (the CPU recomputes them
/// rather than keeping them from the forward pass).
fn layer_norm_stats(x_shape: &[usize], eps: f32, x: &[f32]) -> (kernels::LayerNorm, Vec<f32>) {
    let ln = layer_norm_shape(x_shape, eps);
    let ones = vec![1.0; ln.features];
    let zeros = vec![0.0; ln.features];
    let (mut y, mut saved) = (vec![0.0; x.len()], vec![0.0; 2 * ln.rows]);
    cpu::layer_norm(&ln, x, &ones, &zeros, &mut y, &mut saved);
    (ln, saved)
}

fn cross_entropy(logits: &[usize], label_smoothing: f32) -> CrossEntropy {
    CrossEntropy { rows: logits[0], classes: logits[1], label_smoothing, ignore_index: None }
}

/// out (shape `to`) = x (shape `from`) summed over the axes `to` broadcasts along, by the
/// same single-axis sums the GPU runs.
fn sum_to(to: &[usize], from: &[usize], x: &[f32], out: &mut [f32]) {
    let mut current = x.to_vec();
    for step in sum_to_steps(from, to) {
        let mut next = vec![0.0; step.output_len()];
        cpu::reduce(ReduceOp::Sum, &step, &current, &mut next);
        current = next;
    }
    out.copy_from_slice(&current);
}
