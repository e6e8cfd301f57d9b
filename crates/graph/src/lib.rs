//! The engine: a graph of typed ops over statically shaped tensors, reverse-mode autodiff as
//! a graph transformation, and executors that run it.
//!
//! A [`Graph`] is built through its methods (one per op), which infer and check shapes, so a
//! mismatch is caught where the layer is built and names both shapes. [`backward`] appends the
//! gradient nodes of any node (inputs and intermediate feature maps too, not only parameters).
//! [`CpuExecutor`] runs a graph on the kernels crate's CPU references, one implementation per
//! op shared with the kernel tests.

mod autodiff;
mod cpu;
mod error;
mod ir;
mod layers;

pub use autodiff::{Gradients, backward};
pub use cpu::{CpuExecutor, Feed, Values};
pub use error::{GraphError, Result};
pub use ir::{ConvGeometry, Graph, Node, NodeId, Op, PoolGeometry};
pub use layers::Model;
