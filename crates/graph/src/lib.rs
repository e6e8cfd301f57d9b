//! The engine: a graph of typed ops over statically shaped tensors, reverse-mode autodiff as
//! a graph transformation, and executors that run it.
//!
//! A [`Graph`] is built through its methods (one per op), which infer and check shapes, so a
//! mismatch is caught where the layer is built and names both shapes. [`backward`] appends the
//! gradient nodes of any node (inputs and intermediate feature maps too, not only parameters).
//! [`CpuExecutor`] runs a graph on the kernels crate's CPU references, one implementation per
//! op shared with the kernel tests. A [`Classifier`] is a model's complete training graph;
//! a [`Trainer`] trains it on one executor.

mod autodiff;
mod checkpoint;
mod classifier;
mod cpu;
mod error;
mod feed;
mod gpu;
mod ir;
mod layers;
mod optim;
mod plan;
mod trainer;
pub mod zoo;

pub use autodiff::{Gradients, backward};
pub use checkpoint::{Checkpoint, Meta};
pub use classifier::{Classifier, PADDING_LABEL, Parameter};
pub use cpu::{CpuExecutor, Values};
pub use error::{GraphError, Result};
pub use feed::Feed;
pub use gpu::{GpuExecutor, Memory, SharedBuffers, planned_memory};
pub use ir::{ConvGeometry, Graph, Mode, Node, NodeId, Op, PoolGeometry};
pub use layers::Model;
pub use optim::{Adam, Optimizer, Schedule, Sgd, Training};
pub use plan::{Needs, Plan, Storage};
pub use trainer::{CpuTrainer, GpuTrainer, StepStats, Trainer, TrainerState};
