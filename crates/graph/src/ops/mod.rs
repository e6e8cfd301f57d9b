//! Every op, one family per file. An op is defined once, by implementing [`Operation`]: its
//! name, its shape rule (input types to output types), its gradient rule, what it costs, and
//! how each executor runs it (the CPU on `kernels::cpu`, the GPU on the kernels crate's
//! dispatches). The builder methods that add it to a [`Graph`] sit beside it.
//!
//! An op's outputs are its result, what its backward reads (saved statistics, the winners
//! of a max pool) and its workspace (an im2col matrix): all are planned tensors with
//! lifetimes, so workspace nothing reads is free again as soon as the node has run.

use std::fmt;

use kernels::{Dispatch, Gpu, GpuTensor};

use crate::error::{GraphError, Result};
use crate::ir::{Graph, Mode, NodeId, TensorId, TensorType};

mod attention;
mod conv;
mod dropout;
mod elementwise;
mod embedding;
mod layout;
mod loss;
mod matmul;
mod norm;
mod optimizer;
mod pool;
mod recurrent;
mod reduce;
mod softmax;

pub use attention::{Attention, AttentionBackward};
pub use conv::{Conv2d, Conv2dBackward, ConvGeometry};
pub use dropout::Dropout;
pub use elementwise::{BinaryOp, UnaryBackward, UnaryOp};
pub use embedding::{Embedding, EmbeddingBackward};
pub use layout::{Concat, Permute, Reshape, Slice};
pub use loss::{BceWithLogits, Correct, CrossEntropy, CrossEntropyBackward};
pub use matmul::MatMul;
pub use norm::{BatchNorm, LayerNorm, Norm, NormBackward};
pub use optimizer::{GradNorm, Update};
pub use pool::{AvgPool2d, AvgPool2dBackward, MaxPool2d, MaxPool2dBackward, PoolGeometry};
pub use recurrent::{CellKind, Recurrence, RecurrenceBackward};
pub use reduce::SumTo;
pub use softmax::{Softmax, SoftmaxBackward};

/// One op: everything the engine knows about it. No method has a default that could hide a
/// missing rule except the properties at the end, which most ops do not have.
pub trait Operation: fmt::Debug + Send + Sync {
    /// Names the op in labels and errors.
    fn name(&self) -> &'static str;

    /// The shape rule: the types of the outputs given those of the inputs, or what does not
    /// fit (the graph adds the node's name).
    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String>;

    /// The gradient rule: the gradient of each input given those of the outputs (None where
    /// an output gets no gradient), built as nodes of `g`. None for an input that gets none.
    fn backward(&self, g: &mut Graph, node: NodeId, grads: &[Option<TensorId>]) -> Result<Vec<Option<TensorId>>>;

    /// Floating-point operations of one run (a multiply-add counts two), for summaries and
    /// the benchmarks; `wanted` as in [`CpuCall::wanted`].
    fn flops(&self, inputs: &[&TensorType], outputs: &[TensorType], wanted: &[bool]) -> u64;

    /// Computes the outputs on the CPU.
    fn cpu(&self, call: CpuCall);

    /// The dispatches that compute the outputs on a device.
    fn gpu(&self, gpu: &Gpu, call: &GpuCall) -> kernels::Result<Vec<Dispatch>>;

    /// Names the op in profiles: its name, and its function where one op runs many
    /// (`binary Add`, `unary Gelu`).
    fn kind(&self) -> String {
        self.name().into()
    }

    /// Elements the buffer of output `slot` holds: more than its shape where the kernel
    /// keeps something beside it (the cross-entropy's count of rows).
    fn storage_len(&self, outputs: &[TensorType], slot: usize) -> usize {
        outputs[slot].len()
    }

    /// Output 0 is input 0's buffer (a reshape's view, an update's parameter).
    fn aliases_input(&self) -> bool {
        false
    }

    /// `(axis, start)` where the output is input 0's entries from `start` along `axis` (a
    /// slice). Its backward then gives the gradient of the slice alone and autodiff places
    /// it: the gradients of a tensor's disjoint slices are joined into one tensor, rather than
    /// each padded with zeros and the padded tensors added up.
    fn slice_of_input(&self) -> Option<(usize, usize)> {
        None
    }

    /// Whether the op updates input `input` in place (batch norm's running statistics in
    /// training, an optimizer's parameters and state).
    fn updates(&self, _input: usize) -> bool {
        false
    }

    /// Called before each GPU run with the node's dispatches: an op whose parameters follow
    /// the step (dropout's mask stream) rewrites them here.
    fn before_run(&self, _gpu: &Gpu, _mode: Mode, _outputs: &[TensorType], _dispatches: &[Dispatch], _step: u64) {}
}

/// The refusal of a backward op's own gradient.
pub(crate) fn no_second_derivative(g: &Graph, node: NodeId) -> GraphError {
    let node = g.node(node).label.clone();
    GraphError::NotDifferentiable { node, detail: "second derivatives are not supported".into() }
}

/// One CPU run of a node: its inputs' data and its outputs' buffers (each of the op's
/// [`Operation::storage_len`]; an aliased output 0 is empty, its data is input 0's). Inputs
/// the op updates in place are in `updated`, in input order, and empty in `inputs`.
pub struct CpuCall<'a> {
    /// Training or evaluation.
    pub mode: Mode,
    /// The run's step, which picks dropout masks.
    pub step: u64,
    /// The inputs' types.
    pub input_types: Vec<&'a TensorType>,
    /// The outputs' types.
    pub output_types: &'a [TensorType],
    /// Per output, whether the run reads it. An op may skip work whose only result is an
    /// output nobody reads (the input gradient of a network's first convolution).
    pub wanted: &'a [bool],
    /// The inputs' data.
    pub inputs: Vec<&'a [f32]>,
    /// The outputs' buffers.
    pub outputs: Vec<&'a mut [f32]>,
    /// The inputs the op updates in place.
    pub updated: Vec<&'a mut [f32]>,
}

impl CpuCall<'_> {
    /// Input `input`'s shape.
    pub fn shape(&self, input: usize) -> &[usize] {
        &self.input_types[input].shape
    }
}

/// The u32 values (labels, indices) stored in a CPU buffer.
pub fn indices(data: &[f32]) -> &[u32] {
    bytemuck::cast_slice(data)
}

/// One node lowered onto a device: its inputs' and outputs' tensors.
pub struct GpuCall<'a> {
    /// Training or evaluation.
    pub mode: Mode,
    /// The inputs' types.
    pub input_types: Vec<&'a TensorType>,
    /// The outputs' types.
    pub output_types: &'a [TensorType],
    /// As [`CpuCall::wanted`].
    pub wanted: &'a [bool],
    /// The inputs' tensors.
    pub inputs: Vec<GpuTensor>,
    /// The outputs' tensors.
    pub outputs: Vec<GpuTensor>,
}

impl GpuCall<'_> {
    /// Input `input`'s shape.
    pub fn shape(&self, input: usize) -> &[usize] {
        &self.input_types[input].shape
    }
}

/// `f` of the one input, checked to be f32: most shape rules start here.
pub(crate) fn one_f32<'t>(inputs: &[&'t TensorType]) -> Result<&'t TensorType, String> {
    match inputs {
        [x] if x.dtype == crate::DType::F32 => Ok(x),
        _ => Err(format!("takes one f32 tensor, got {}", describe(inputs))),
    }
}

/// The inputs' types for an error message.
pub(crate) fn describe(inputs: &[&TensorType]) -> String {
    let parts: Vec<String> = inputs.iter().map(|t| format!("{:?} {:?}", t.dtype, t.shape)).collect();
    format!("[{}]", parts.join(", "))
}
