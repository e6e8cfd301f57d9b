//! An executor that runs two others side by side and stops at the first node whose outputs
//! differ beyond a tolerance: how the GPU executor is held to the CPU one in tests, and what
//! `DLCLI_CROSSCHECK=1` gives a user who suspects a driver.

use kernels::Tolerance;

use crate::error::{GraphError, Result};
use crate::executor::{Executor, RunId};
use crate::feed::Feed;
use crate::ir::{DType, Graph, Mode, NodeId, TensorId};
use crate::plan::Plan;
use crate::profile::NodeTime;

/// Runs `checked` and `reference` together; reads come from `checked`.
pub struct CrossCheck<A: Executor, B: Executor> {
    checked: A,
    reference: B,
    /// How far `checked` may stray from `reference`.
    tolerance: Tolerance,
    runs: Vec<Compared>,
}

/// A run prepared on both executors, and what is compared after it.
struct Compared {
    checked: RunId,
    reference: RunId,
    /// Every f32 tensor the run reads or returns, in node order, with how errors name it.
    tensors: Vec<(TensorId, String)>,
}

impl<A: Executor, B: Executor> CrossCheck<A, B> {
    /// Runs `checked` beside `reference`; a value beyond `tolerance` of the reference's stops the run.
    pub fn new(checked: A, reference: B, tolerance: Tolerance) -> Self {
        CrossCheck { checked, reference, tolerance, runs: Vec::new() }
    }

    /// The reference executor, to write what only it should see (a test of the check).
    pub fn reference_mut(&mut self) -> &mut B {
        &mut self.reference
    }

    /// The first element of `t` beyond the tolerance, as an error naming the node.
    fn compare(&self, c: &Compared, t: TensorId, label: &str) -> Result<()> {
        let (got, want) = (self.checked.read(c.checked, t)?, self.reference.read(c.reference, t)?);
        match self.tolerance.outside(&got, &want).first().copied() {
            None => Ok(()),
            Some(i) => Err(GraphError::ExecutorMismatch {
                node: label.to_string(),
                detail: format!(
                    "output {} element {i}: {} gives {}, {} gives {} (cross-check tolerance {})",
                    t.slot,
                    self.checked.name(),
                    got[i],
                    self.reference.name(),
                    want[i],
                    self.tolerance.relative
                ),
            }),
        }
    }
}

impl<A: Executor, B: Executor> Executor for CrossCheck<A, B> {
    fn name(&self) -> String {
        format!("crosscheck({} against {})", self.checked.name(), self.reference.name())
    }

    /// Both executors prepare the run for every tensor it reads, so that each can be compared.
    fn prepare(&mut self, graph: &Graph, mode: Mode, outputs: &[TensorId]) -> Result<RunId> {
        let mut read: Vec<TensorId> = Plan::new(graph, outputs).read.into_iter().collect();
        read.retain(|&t| graph.ty(t).dtype == DType::F32 && graph.node(t.node).op.compute().is_some());
        read.sort_by_key(|t| (t.node, t.slot));
        let checked = self.checked.prepare(graph, mode, &read)?;
        let reference = self.reference.prepare(graph, mode, &read)?;
        let label = |node: NodeId| graph.node(node).label.clone();
        let tensors = read.into_iter().map(|t| (t, label(t.node))).collect();
        self.runs.push(Compared { checked, reference, tensors });
        Ok(RunId(self.runs.len() - 1))
    }

    fn run(&mut self, run: RunId, feed: &Feed, step: u64) -> Result<()> {
        let c = &self.runs[run.0];
        self.checked.run(c.checked, feed, step)?;
        self.reference.run(c.reference, feed, step)?;
        for (t, label) in &c.tensors {
            self.compare(c, *t, label)?;
        }
        Ok(())
    }

    fn read(&self, run: RunId, t: TensorId) -> Result<Vec<f32>> {
        self.checked.read(self.runs[run.0].checked, t)
    }

    fn read_named(&self, name: &str) -> Result<Vec<f32>> {
        self.checked.read_named(name)
    }

    fn write_named(&mut self, name: &str, values: &[f32]) -> Result<()> {
        self.checked.write_named(name, values)?;
        self.reference.write_named(name, values)
    }

    /// The checked executor's times.
    fn profile(&self, run: RunId) -> Vec<NodeTime> {
        self.checked.profile(self.runs[run.0].checked)
    }
}
