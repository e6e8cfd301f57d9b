//! Where a training step's time goes, as `torch.profiler`'s key averages: an executor built to
//! profile times every node of its runs (the CPU executor by the clock around each node, the
//! GPU executor by timestamps the device writes around each node's compute pass), and a
//! [`Profile`] places each node's time in its model layer and pass and sums it by op kind.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use crate::ir::{Graph, NodeId};
use crate::step::Pass;

/// The time one node of a run has taken over the runs since profiling began.
#[derive(Debug, Clone)]
pub struct NodeTime {
    /// The node.
    pub node: NodeId,
    /// The node's label (the layer that built it, or the op and its index).
    pub label: String,
    /// The op's name, with its kind for elementwise ops (`binary Add`).
    pub op: String,
    /// Its time over every run timed.
    pub time: Duration,
    /// Runs timed.
    pub calls: u32,
    /// FLOPs of one run, as the op counts them.
    pub flops: u64,
}

/// The nodes' times of a profiled training step, each with its layer and pass.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    nodes: Vec<(NodeTime, String, Pass)>,
}

/// One row of [`Profile::by_layer`]: a layer's time per step in each pass, in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerTime {
    /// The config's layer name, or `(outside the layers)` for the model's nodes no layer
    /// claimed (its loss and metrics), or `(optimizer)`.
    pub layer: String,
    pub forward: f64,
    pub backward: f64,
    /// The gradient norm, clipping and updates (the `(optimizer)` row only).
    pub optimizer: f64,
}

impl LayerTime {
    pub fn total(&self) -> f64 {
        self.forward + self.backward + self.optimizer
    }
}

/// One row of [`Profile::by_op`]: an op kind's nodes and their time per step.
#[derive(Debug, Clone, PartialEq)]
pub struct OpTime {
    pub op: String,
    pub nodes: usize,
    /// Seconds per step.
    pub seconds: f64,
    /// FLOPs per step.
    pub flops: u64,
}

impl Profile {
    /// The profile of `times`, nodes of `graph`, whose parts of the step `passes` gives.
    pub fn new(times: Vec<NodeTime>, graph: &Graph, passes: &[Pass]) -> Profile {
        let place = |t: NodeTime| {
            let pass = passes[t.node.index()];
            let layer = match (pass, &graph.node(t.node).layer) {
                (Pass::Optimizer, _) => "(optimizer)".to_string(),
                (_, Some(layer)) => layer.clone(),
                (_, None) => "(outside the layers)".to_string(),
            };
            (t, layer, pass)
        };
        Profile { nodes: times.into_iter().filter(|t| t.calls > 0).map(place).collect() }
    }

    /// Whether nothing was timed.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The steps timed.
    pub fn steps(&self) -> u32 {
        self.nodes.iter().map(|(t, ..)| t.calls).max().unwrap_or(0)
    }

    /// Seconds per step, all nodes together.
    pub fn step_seconds(&self) -> f64 {
        self.nodes.iter().map(|(t, ..)| per_step(t)).sum()
    }

    /// Time per step by layer, in the order the step first reaches each layer.
    pub fn by_layer(&self) -> Vec<LayerTime> {
        let mut rows: Vec<LayerTime> = Vec::new();
        for (time, layer, pass) in &self.nodes {
            let row = match rows.iter().position(|r| &r.layer == layer) {
                Some(i) => &mut rows[i],
                None => {
                    rows.push(LayerTime { layer: layer.clone(), forward: 0.0, backward: 0.0, optimizer: 0.0 });
                    rows.last_mut().expect("just pushed")
                }
            };
            match pass {
                Pass::Input | Pass::Forward => row.forward += per_step(time),
                Pass::Backward => row.backward += per_step(time),
                Pass::Optimizer => row.optimizer += per_step(time),
            }
        }
        rows
    }

    /// Time per step by op kind, most first.
    pub fn by_op(&self) -> Vec<OpTime> {
        let mut kinds: HashMap<&str, OpTime> = HashMap::new();
        for (time, ..) in &self.nodes {
            let row = kinds.entry(&time.op).or_insert(OpTime { op: time.op.clone(), nodes: 0, seconds: 0.0, flops: 0 });
            row.nodes += 1;
            row.seconds += per_step(time);
            row.flops += time.flops;
        }
        let mut rows: Vec<OpTime> = kinds.into_values().collect();
        rows.sort_by(|a, b| b.seconds.total_cmp(&a.seconds).then_with(|| a.op.cmp(&b.op)));
        rows
    }
}

/// Nodes the table of the slowest lists.
const SLOWEST: usize = 12;

fn per_step(t: &NodeTime) -> f64 {
    t.time.as_secs_f64() / t.calls as f64
}

impl fmt::Display for Profile {
    /// Three tables: per layer (forward, backward, share), per op kind (nodes, time, share,
    /// GFLOP/s) and the slowest nodes, each in milliseconds per step.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.step_seconds();
        let share = |seconds: f64| 100.0 * seconds / total.max(f64::MIN_POSITIVE);
        writeln!(f, "time per training step over {} steps: {:.3} ms", self.steps(), 1e3 * total)?;
        writeln!(f, "{:<28} {:>11} {:>12} {:>10} {:>7}", "layer", "forward ms", "backward ms", "total ms", "share")?;
        for row in self.by_layer() {
            let optimizer = row.optimizer > 0.0;
            let (forward, backward) = match optimizer {
                true => ("-".to_string(), "-".to_string()),
                false => (format!("{:.3}", 1e3 * row.forward), format!("{:.3}", 1e3 * row.backward)),
            };
            writeln!(
                f,
                "{:<28} {forward:>11} {backward:>12} {:>10.3} {:>6.1}%",
                row.layer,
                1e3 * row.total(),
                share(row.total())
            )?;
        }
        writeln!(f, "\n{:<28} {:>6} {:>10} {:>7} {:>9}", "op", "nodes", "ms", "share", "GFLOP/s")?;
        for row in self.by_op() {
            let gflops = row.flops as f64 / row.seconds.max(f64::MIN_POSITIVE) / 1e9;
            writeln!(
                f,
                "{:<28} {:>6} {:>10.3} {:>6.1}% {gflops:>9.2}",
                row.op,
                row.nodes,
                1e3 * row.seconds,
                share(row.seconds)
            )?;
        }
        writeln!(f, "\n{:<28} {:<24} {:<24} {:>10} {:>9}", "slowest nodes", "layer", "op", "ms", "GFLOP/s")?;
        let mut slowest: Vec<&(NodeTime, String, Pass)> = self.nodes.iter().collect();
        slowest.sort_by(|a, b| per_step(&b.0).total_cmp(&per_step(&a.0)));
        for (time, layer, pass) in slowest.into_iter().take(SLOWEST) {
            let seconds = per_step(time);
            let gflops = time.flops as f64 / seconds.max(f64::MIN_POSITIVE) / 1e9;
            let layer = format!("{layer} ({pass:?})").to_lowercase();
            writeln!(f, "{:<28} {layer:<24} {:<24} {:>10.3} {gflops:>9.2}", time.label, time.op, 1e3 * seconds)?;
        }
        Ok(())
    }
}
