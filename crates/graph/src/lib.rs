//! The engine: a graph of typed ops over statically shaped tensors, reverse-mode autodiff as
//! a graph transformation, and executors that run it.
//!
//! A [`Graph`] is built through its methods (one per op), which infer and check shapes, so a
//! mismatch is caught where the layer is built and names both shapes. [`backward`] appends the
//! gradient nodes of any node (inputs and intermediate feature maps too, not only parameters).
//! Each op is defined once, in its file under `ops/` (shape rule, gradient rule, FLOPs, CPU
//! and GPU code). [`CpuExecutor`] runs a graph on the kernels crate's CPU references, one
//! implementation per op shared with the kernel tests; [`GpuExecutor`] on a device. Both
//! run over buffers planned by liveness ([`Plan`]). A [`Supervised`] is a model's complete training graph;
//! a [`Trainer`] trains any [`Trainable`] model on any executor.

#![cfg_attr(not(test), warn(clippy::too_many_lines))]
#![warn(missing_docs)]

mod anomaly;
mod autodiff;
mod build;
mod checkpoint;
mod cpu;
mod crosscheck;
mod decoding;
mod error;
mod executor;
mod feed;
mod gpu;
mod ir;
mod layers;
pub mod ops;
mod optim;
mod plan;
mod profile;
pub mod settings;
pub mod spec;
mod step;
mod supervised;
mod trainer;
pub mod zoo;

pub use anomaly::Anomaly;
pub use autodiff::{Gradients, backward};
pub use build::DataShape;
pub use checkpoint::{Checkpoint, Meta, remove_abandoned_writes, write_atomically};
pub use cpu::{CpuExecutor, Values, evaluate};
pub use crosscheck::CrossCheck;
pub use decoding::{Carried, Carry, Decoder, Decoding};
pub use error::{GraphError, Result};
pub use executor::{Executor, RunId};
pub use feed::{Feed, PADDING_LABEL};
pub use gpu::{GpuExecutor, Memory};
pub use ir::{DType, Graph, Mode, Node, NodeId, Op, TensorId, TensorType};
pub use layers::{AttentionSite, Init, Initializers, Model, RecurrentOutput};
pub use ops::{CellKind, ConvGeometry, CpuCall, GpuCall, Operation, PoolGeometry};
pub use optim::{Adam, Optimizer, Schedule, Sgd, Training, optimizer_slots, optimizer_state_name};
pub use plan::Plan;
pub use profile::{NodeTime, Profile};
pub use spec::{LayerKind, PositionEncoding, Recurrent, SequenceOutput, Transformer};
pub use step::{Parameter, Pass, Trainable, TrainingStep};
pub use supervised::{Objective, Supervised};
pub use trainer::{StepStats, Trainer, TrainerState};
