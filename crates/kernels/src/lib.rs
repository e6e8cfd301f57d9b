//! The GPU layer of dlcli: a wgpu context ([`Gpu`]) and one module per WGSL kernel family,
//! each exposing typed calls that take shapes and [`GpuTensor`]s and return a prepared
//! [`Dispatch`]. Every kernel has a CPU reference in [`cpu`] with the same call shape; the
//! tests hold one to the other.
//!
//! Prepared dispatches are the design's centre: pipelines, bind groups and parameter blocks
//! are built once, so an executor records a whole training step as a list of dispatches into
//! one command encoder and reads back only what it needs.

#![cfg_attr(not(test), warn(clippy::too_many_lines))]
#![warn(missing_docs)]

pub mod attention;
pub mod conv;
pub mod cpu;
pub mod dropout;
pub mod elementwise;
pub mod embedding;
mod error;
mod gpu;
mod gpu_tests;
pub mod layout;
pub mod matmul;
pub mod norm;
pub mod optimizer;
pub mod pool;
pub mod recurrent;
pub mod reduce;
pub mod shape;
pub mod softmax;
mod tensor;
pub mod timing;
mod tolerance;
mod unary;

pub use attention::Attention;
pub use conv::Conv2d;
pub use dropout::Dropout;
pub use elementwise::{Binary, Broadcast};
pub use embedding::Embedding;
pub use error::{KernelError, Result};
pub use gpu::{
    Access, AdapterClass, AdapterSummary, Dispatch, Gpu, Kernel, LINEAR_WG, Shader, Staged, linear_grid, list_adapters,
};
pub use gpu_tests::{SKIP_GPU, no_adapter, rerun_on_gl};
pub use layout::StridedCopy;
pub use matmul::{Bias, Matmul, MatrixView};
pub use norm::{BatchNorm, LayerNorm};
pub use optimizer::{Adam, Optimizer, Sgd};
pub use pool::Pool2d;
pub use recurrent::{Cell, RowView};
pub use reduce::{ReduceOp, Reduction};
pub use softmax::CrossEntropy;
pub use tensor::{GpuTensor, PoolStats};
pub use tolerance::Tolerance;
pub use unary::{Unary, UnaryRow};
