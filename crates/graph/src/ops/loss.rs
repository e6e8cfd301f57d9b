//! Losses and metrics: cross-entropy, binary cross-entropy with logits, mean squared error,
//! and the count of correctly ranked rows.

use kernels::{
    Binary, CrossEntropy as CrossEntropyShape, Dispatch, Gpu, ReduceOp, Reduction, Unary, cpu, reduce, softmax,
};

use super::{CpuCall, GpuCall, Operation, describe, no_second_derivative};
use crate::error::Result;
use crate::ir::{DType, Graph, NodeId, TensorId, TensorType};

/// Do `logits` [rows, classes] and `labels` [rows] (u32) go together?
fn logits_and_labels(inputs: &[&TensorType]) -> Result<(usize, usize), String> {
    match inputs {
        [logits, labels, ..] if logits.dtype == DType::F32 && labels.dtype == DType::U32 => {
            match (&logits.shape[..], &labels.shape[..]) {
                ([rows, classes], [n]) if rows == n => Ok((*rows, *classes)),
                _ => Err(format!(
                    "logits {:?} and labels {:?} must be [rows, classes] and [rows]",
                    logits.shape, labels.shape
                )),
            }
        }
        _ => Err(format!("takes f32 logits and u32 labels, got {}", describe(inputs))),
    }
}

fn cross_entropy_shape(logits: &[usize], label_smoothing: f32) -> CrossEntropyShape {
    CrossEntropyShape { rows: logits[0], classes: logits[1], label_smoothing, ignore_index: None }
}

/// Inputs [logits [rows, classes], labels [rows]]: the mean cross-entropy over the rows
/// whose label is a class (padding rows count in neither sum nor mean). Outputs: the loss, a
/// scalar whose buffer also keeps the number of rows counted, and each row's (loss,
/// log-sum-exp) [rows, 2], which the backward reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CrossEntropy {
    /// The share of the target's probability spread over every class.
    pub label_smoothing: f32,
}

impl Operation for CrossEntropy {
    fn name(&self) -> &'static str {
        "cross_entropy"
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        if inputs.len() != 2 {
            return Err(format!("takes logits and labels, got {}", describe(inputs)));
        }
        let (rows, _) = logits_and_labels(inputs)?;
        Ok(vec![TensorType::f32(&[]), TensorType::f32(&[rows, 2])])
    }

    fn backward(&self, g: &mut Graph, node: NodeId, grads: &[Option<TensorId>]) -> Result<Vec<Option<TensorId>>> {
        let Some(dloss) = grads[0] else { return Ok(vec![None, None]) };
        let [logits, labels] = g.node(node).inputs[..] else { unreachable!("two inputs") };
        let op = CrossEntropyBackward { label_smoothing: self.label_smoothing };
        let dlogits = g.apply1(op, &[logits, labels, node.out(1), node.out(0), dloss])?;
        Ok(vec![Some(dlogits), None])
    }

    fn flops(&self, inputs: &[&TensorType], _: &[TensorType], _: &[bool]) -> u64 {
        5 * inputs[0].len() as u64
    }

    fn storage_len(&self, outputs: &[TensorType], slot: usize) -> usize {
        if slot == 0 { 2 } else { outputs[slot].len() }
    }

    fn cpu(&self, mut call: CpuCall) {
        let ce = cross_entropy_shape(call.shape(0), self.label_smoothing);
        let labels = super::indices(call.inputs[1]);
        let [loss, rows] = &mut call.outputs[..] else { unreachable!("two outputs") };
        cpu::cross_entropy(&ce, call.inputs[0], labels, rows, loss);
    }

    fn gpu(&self, gpu: &Gpu, call: &GpuCall) -> kernels::Result<Vec<Dispatch>> {
        let ce = cross_entropy_shape(call.shape(0), self.label_smoothing);
        let [logits, labels] = &call.inputs[..] else { unreachable!("two inputs") };
        Ok(softmax::cross_entropy(gpu, &ce, logits, labels, &call.outputs[1], &call.outputs[0])?.into())
    }
}

/// Inputs [logits, labels, row statistics, loss, dloss]: d(loss)/d(logits) · dloss.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CrossEntropyBackward {
    /// The forward's.
    pub label_smoothing: f32,
}

impl Operation for CrossEntropyBackward {
    fn name(&self) -> &'static str {
        "cross_entropy_backward"
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        if inputs.len() != 5 {
            return Err(format!("takes logits, labels, row statistics, loss and dloss, got {}", describe(inputs)));
        }
        logits_and_labels(inputs)?;
        Ok(vec![inputs[0].clone()])
    }

    fn backward(&self, g: &mut Graph, node: NodeId, _: &[Option<TensorId>]) -> Result<Vec<Option<TensorId>>> {
        Err(no_second_derivative(g, node))
    }

    fn flops(&self, inputs: &[&TensorType], _: &[TensorType], _: &[bool]) -> u64 {
        3 * inputs[0].len() as u64
    }

    fn cpu(&self, mut call: CpuCall) {
        let ce = cross_entropy_shape(call.shape(0), self.label_smoothing);
        let [logits, labels, rows, loss, dloss] = call.inputs[..] else { unreachable!("five inputs") };
        let labels = super::indices(labels);
        cpu::cross_entropy_backward(&ce, logits, labels, rows, loss, dloss[0], call.outputs[0]);
    }

    fn gpu(&self, gpu: &Gpu, call: &GpuCall) -> kernels::Result<Vec<Dispatch>> {
        let ce = cross_entropy_shape(call.shape(0), self.label_smoothing);
        let [logits, labels, rows, loss, dloss] = &call.inputs[..] else { unreachable!("five inputs") };
        Ok(vec![softmax::cross_entropy_backward(gpu, &ce, logits, labels, rows, loss, dloss, &call.outputs[0])?])
    }
}

/// Inputs [logits, targets] of one shape, targets in [0, 1]: the mean binary cross-entropy
/// with logits (`nn.BCEWithLogitsLoss`), a scalar. Output 1 is the workspace of each
/// element's term. Its gradient is built from other ops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BceWithLogits;

impl Operation for BceWithLogits {
    fn name(&self) -> &'static str {
        "bce_with_logits"
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        match inputs {
            [x, t] if x == t && x.dtype == DType::F32 => Ok(vec![TensorType::f32(&[]), TensorType::f32(&[x.len()])]),
            [x, t] => Err(format!("logits {:?} and targets {:?} differ", x.shape, t.shape)),
            _ => Err(format!("takes logits and targets, got {}", describe(inputs))),
        }
    }

    // d/dx = (σ(x) - t) / n, d/dt = -x / n, each times dloss.
    fn backward(&self, g: &mut Graph, node: NodeId, grads: &[Option<TensorId>]) -> Result<Vec<Option<TensorId>>> {
        let Some(dy) = grads[0] else { return Ok(vec![None, None]) };
        let [x, t] = g.node(node).inputs[..] else { unreachable!("two inputs") };
        let scaled = g.unary(Unary::Scale(1.0 / g.numel(x) as f32), dy)?;
        let sigmoid = g.unary(Unary::Sigmoid, x)?;
        let diff = g.binary(Binary::Sub, sigmoid, t)?;
        let dx = g.binary(Binary::Mul, diff, scaled)?;
        let minus_x = g.unary(Unary::Scale(-1.0), x)?;
        let dt = g.binary(Binary::Mul, minus_x, scaled)?;
        Ok(vec![Some(dx), Some(dt)])
    }

    fn flops(&self, inputs: &[&TensorType], _: &[TensorType], _: &[bool]) -> u64 {
        5 * inputs[0].len() as u64
    }

    fn cpu(&self, mut call: CpuCall) {
        let [loss, terms] = &mut call.outputs[..] else { unreachable!("two outputs") };
        cpu::bce_with_logits_terms(call.inputs[0], call.inputs[1], terms);
        loss[0] = terms.iter().map(|&v| v as f64).sum::<f64>() as f32;
    }

    fn gpu(&self, gpu: &Gpu, call: &GpuCall) -> kernels::Result<Vec<Dispatch>> {
        let n = call.input_types[0].len();
        let all = Reduction { outer: 1, axis: n, inner: 1 };
        let [loss, terms] = &call.outputs[..] else { unreachable!("two outputs") };
        Ok(vec![
            softmax::bce_with_logits_terms(gpu, n, &call.inputs[0], &call.inputs[1], terms)?,
            reduce::reduce(gpu, ReduceOp::Sum, &all, terms, loss)?,
        ])
    }
}

/// Inputs [logits [rows, classes], labels [rows]]: how many rows rank their label among the
/// `top_k` largest logits, a scalar (ties count against the label). Output 1 is the
/// workspace of each row's hit. A metric: no gradient flows through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Correct {
    /// A row counts when its label ranks within this many.
    pub top_k: usize,
}

impl Operation for Correct {
    fn name(&self) -> &'static str {
        "correct"
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        let (rows, classes) = logits_and_labels(inputs)?;
        if !(1..=classes).contains(&self.top_k) {
            return Err(format!("top-{} is not within the {classes} classes", self.top_k));
        }
        Ok(vec![TensorType::f32(&[]), TensorType::f32(&[rows])])
    }

    fn backward(&self, _: &mut Graph, _: NodeId, _: &[Option<TensorId>]) -> Result<Vec<Option<TensorId>>> {
        Ok(vec![None, None])
    }

    fn flops(&self, inputs: &[&TensorType], _: &[TensorType], _: &[bool]) -> u64 {
        inputs[0].len() as u64
    }

    fn cpu(&self, mut call: CpuCall) {
        let [rows, classes] = call.shape(0)[..] else { unreachable!("checked when built") };
        let labels = super::indices(call.inputs[1]);
        let [count, hits] = &mut call.outputs[..] else { unreachable!("two outputs") };
        cpu::top_k_hits(rows, classes, self.top_k, call.inputs[0], labels, hits);
        count[0] = hits.iter().sum();
    }

    fn gpu(&self, gpu: &Gpu, call: &GpuCall) -> kernels::Result<Vec<Dispatch>> {
        let [rows, classes] = call.shape(0)[..] else { unreachable!("checked when built") };
        let all = Reduction { outer: 1, axis: rows, inner: 1 };
        let [count, hits] = &call.outputs[..] else { unreachable!("two outputs") };
        Ok(vec![
            softmax::top_k_hits(gpu, rows, classes, self.top_k, &call.inputs[0], &call.inputs[1], hits)?,
            reduce::reduce(gpu, ReduceOp::Sum, &all, hits, count)?,
        ])
    }
}

impl Graph {
    /// Mean cross-entropy of `logits` [rows, classes] against `labels` [rows].
    pub fn cross_entropy(&mut self, logits: TensorId, labels: TensorId, label_smoothing: f32) -> Result<TensorId> {
        self.check_classes(logits, labels, "cross_entropy")?;
        self.apply1(CrossEntropy { label_smoothing }, &[logits, labels])
    }

    /// Mean binary cross-entropy of `logits` against `targets` of the same shape.
    pub fn bce_with_logits(&mut self, logits: TensorId, targets: TensorId) -> Result<TensorId> {
        self.apply1(BceWithLogits, &[logits, targets])
    }

    /// How many rows of `logits` [rows, classes] have their label among the `top_k` largest.
    pub fn correct(&mut self, logits: TensorId, labels: TensorId, top_k: usize) -> Result<TensorId> {
        self.check_classes(logits, labels, "correct")?;
        self.apply1(Correct { top_k }, &[logits, labels])
    }

    /// Mean squared error between `prediction` and `target` of one shape (`nn.MSELoss`).
    pub fn mse(&mut self, prediction: TensorId, target: TensorId) -> Result<TensorId> {
        if self.shape(prediction) != self.shape(target) {
            let detail = format!("prediction {:?} and target {:?} differ", self.shape(prediction), self.shape(target));
            return Err(self.error("mse", detail));
        }
        let diff = self.binary(Binary::Sub, prediction, target)?;
        let square = self.binary(Binary::Mul, diff, diff)?;
        self.mean(square)
    }

    /// Labels fed to a loss over logits must be declared with as many classes.
    fn check_classes(&self, logits: TensorId, labels: TensorId, op: &str) -> Result<()> {
        let classes = self.shape(logits).get(1).copied();
        match &self.node(labels.node).op {
            crate::ir::Op::Labels { classes: c, .. } if Some(*c) == classes => Ok(()),
            _ => Err(self.error(
                op,
                format!(
                    "logits {:?} and labels {:?} must be [rows, classes] and [rows] of those classes",
                    self.shape(logits),
                    self.shape(labels)
                ),
            )),
        }
    }
}
