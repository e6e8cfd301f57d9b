//! The contract every executor keeps (the CPU and GPU ones, and wrappers over them such as
//! [`crate::CrossCheck`]): prepare runs of graphs, run them with a feed, read what they
//! computed, and read and write the named tensors (parameters, state, optimizer state) that
//! all runs of one executor share.

use crate::error::Result;
use crate::feed::Feed;
use crate::ir::{Graph, Mode, TensorId};
use crate::profile::NodeTime;

/// A run an executor has prepared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RunId(pub(crate) usize);

/// What runs a graph: the CPU executor, the GPU one, or a cross-check of two. A run is
/// prepared once (its buffers planned and allocated) and then run as many times as asked.
pub trait Executor {
    /// Names the executor in logs and errors: its device, or the executors it wraps.
    fn name(&self) -> String;

    /// Plans a run of the nodes `outputs` depend on, in `mode`: its buffers are allocated
    /// here and never again. Named tensors the graph reads that do not exist yet are
    /// created as zeros, to be written before the first run.
    fn prepare(&mut self, graph: &Graph, mode: Mode, outputs: &[TensorId]) -> Result<RunId>;

    /// Runs `run` on `feed`. `step` picks this run's dropout masks and the optimizer's
    /// update number (step + 1).
    fn run(&mut self, run: RunId, feed: &Feed, step: u64) -> Result<()>;

    /// An output of the last run of `run`.
    fn read(&self, run: RunId, t: TensorId) -> Result<Vec<f32>>;

    /// A named tensor's values.
    fn read_named(&self, name: &str) -> Result<Vec<f32>>;

    /// Sets a named tensor (it keeps its place, so prepared runs see the new values).
    fn write_named(&mut self, name: &str, values: &[f32]) -> Result<()>;

    /// The time each node of `run` took over its runs so far, for an executor built to
    /// profile; empty for one that does not.
    fn profile(&self, run: RunId) -> Vec<NodeTime>;
}

impl<E: Executor + ?Sized> Executor for Box<E> {
    fn name(&self) -> String {
        (**self).name()
    }

    fn prepare(&mut self, graph: &Graph, mode: Mode, outputs: &[TensorId]) -> Result<RunId> {
        (**self).prepare(graph, mode, outputs)
    }

    fn run(&mut self, run: RunId, feed: &Feed, step: u64) -> Result<()> {
        (**self).run(run, feed, step)
    }

    fn read(&self, run: RunId, t: TensorId) -> Result<Vec<f32>> {
        (**self).read(run, t)
    }

    fn read_named(&self, name: &str) -> Result<Vec<f32>> {
        (**self).read_named(name)
    }

    fn write_named(&mut self, name: &str, values: &[f32]) -> Result<()> {
        (**self).write_named(name, values)
    }

    fn profile(&self, run: RunId) -> Vec<NodeTime> {
        (**self).profile(run)
    }
}
