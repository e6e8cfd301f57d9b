//! What a training step will hold in memory, weighed from the model's shapes before anything
//! is allocated, and the refusal of a model that would not fit: a clear error instead of an
//! allocation abort.

use anyhow::{Result, bail};
use graph::{Plan, Supervised, Training, TrainingStep};
use kernels::Gpu;

/// Bytes a training step needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    /// Parameters and state (batch norm's running statistics).
    pub params: u64,
    /// The optimizer's per-parameter state.
    pub optimizer: u64,
    /// The planned buffers of one step: activations, saved tensors, gradients, workspace.
    pub activations: u64,
    /// The largest of those buffers (a device has a limit per buffer).
    pub largest_buffer: u64,
}

impl Estimate {
    pub fn of(model: &Supervised, training: &Training) -> Result<Estimate> {
        let step = TrainingStep::new(model, training)?;
        let plan = Plan::new(&step.graph, &step.outputs);
        // Saturating: absurd sizes read as more than any memory, and are refused below.
        let bytes = |elements: usize| (elements as u64).saturating_mul(4);
        let trained = model.params.iter().fold(0usize, |n, p| n.saturating_add(model.graph.numel(p.node)));
        Ok(Estimate {
            params: bytes(model.init.elements()),
            optimizer: bytes(trained).saturating_mul(training.optimizer.state_count() as u64),
            activations: bytes(plan.planned_elements()),
            largest_buffer: bytes(plan.buffers.iter().copied().max().unwrap_or(0)),
        })
    }

    pub fn total(&self) -> u64 {
        self.params.saturating_add(self.optimizer).saturating_add(self.activations)
    }

    fn describe(&self) -> String {
        format!(
            "about {} (parameters and state {}, optimizer state {}, activations and gradients {})",
            gib(self.total()),
            gib(self.params),
            gib(self.optimizer),
            gib(self.activations)
        )
    }

    /// Refuses a step that would not fit the host's free memory (the CPU executor, and the
    /// host copies every executor starts from) or the device's buffer limits.
    pub fn check(&self, gpu: Option<&Gpu>, batch: usize) -> Result<()> {
        let advice = "lower [train] batch_size or the layer sizes";
        let on_host = if gpu.is_some() { self.params + self.optimizer } else { self.total() };
        if let Some(free) = host_available()
            && on_host > free
        {
            bail!(
                "a training step at batch {batch} needs {}, more than the {} of memory free on this machine: {advice}",
                self.describe(),
                gib(free)
            );
        }
        if let Some(gpu) = gpu {
            let limits = gpu.limits();
            let limit = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
            if self.largest_buffer > limit {
                bail!(
                    "a training step at batch {batch} needs a {} buffer, more than the {} one buffer may hold on {}: {advice}, \
                     or train with --device cpu",
                    gib(self.largest_buffer),
                    gib(limit),
                    gpu.summary().name
                );
            }
        }
        Ok(())
    }
}

/// The host's available memory (`MemAvailable` in /proc/meminfo), where the system says.
fn host_available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn gib(bytes: u64) -> String {
    if bytes >= 1 << 40 {
        format!("{:.1} TiB", bytes as f64 / (1u64 << 40) as f64)
    } else if bytes >= 1 << 30 {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}
