//! What a training step will hold in memory, weighed from the model's shapes before anything
//! is allocated, and the refusal of a model that would not fit: a clear error instead of an
//! allocation abort.

use anyhow::{Result, bail};
use graph::{Op, Plan, Supervised, Training, TrainingStep};
use kernels::Gpu;

/// Bytes a training step needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Estimate {
    /// Parameters and state (batch norm's running statistics).
    pub params: u64,
    /// The optimizer's per-parameter state.
    pub optimizer: u64,
    /// The planned buffers of one step: activations, saved tensors, gradients, workspace.
    pub activations: u64,
    /// The largest buffer of the step, planned or a parameter's (a device has a limit per
    /// buffer).
    pub largest_buffer: u64,
    /// The tensor that sizes it, for a user.
    pub largest_tensor: String,
}

impl Estimate {
    /// The estimate of a training step of `model`; with `every_tensor` (`--detect-anomaly`)
    /// of one that keeps every tensor in a buffer of its own.
    pub fn of(model: &Supervised, training: &Training, every_tensor: bool) -> Result<Estimate> {
        let step = TrainingStep::new(model, training)?;
        let kept = if every_tensor { step.every_tensor() } else { step.outputs.clone() };
        let plan = Plan::new(&step.graph, &kept);
        // Saturating: absurd sizes read as more than any memory, and are refused below.
        let bytes = |elements: usize| (elements as u64).saturating_mul(4);
        let trained = model.params.iter().fold(0usize, |n, p| n.saturating_add(model.graph.numel(p.node)));
        let g = &step.graph;
        let planned = (0..plan.buffers.len()).filter_map(|b| Some((plan.buffers[b], plan.largest_in(g, b)?)));
        // The model's own parameters and state (the optimizer's are the same sizes), named
        // before a planned buffer of the same size (a gradient of one of them).
        let kept = model.graph.nodes().filter(|(_, n)| matches!(n.op, Op::Param { .. } | Op::State { .. }));
        let kept = kept.map(|(id, _)| (g.numel(id.out(0)), id.out(0)));
        let largest = kept.chain(planned).reduce(|a, b| if b.0 > a.0 { b } else { a });
        Ok(Estimate {
            params: bytes(model.init.elements()),
            optimizer: bytes(trained).saturating_mul(training.optimizer.state_count() as u64),
            activations: bytes(plan.planned_elements()),
            largest_buffer: bytes(largest.map_or(0, |(len, _)| len)),
            largest_tensor: largest.map_or_else(String::new, |(_, t)| g.describe(t)),
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
                    "a training step at batch {batch} needs a buffer of {} bytes for {}, more than the {limit} bytes \
                     one buffer may hold on {}: {advice}, or train with --device cpu",
                    self.largest_buffer,
                    self.largest_tensor,
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use kernels::Gpu;

    use crate::config::Config;

    /// A layer whose weight is one row more than one buffer of this adapter may hold is
    /// refused before anything is allocated, naming the layer and the limit, with advice.
    #[test]
    fn a_buffer_beyond_the_adapters_limit_is_refused_naming_its_tensor() {
        let gpu = match Gpu::open() {
            Ok(gpu) => gpu,
            Err(e) => return kernels::no_adapter("memory::a_buffer_beyond_the_adapters_limit", &e),
        };
        let limits = gpu.limits();
        let limit = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
        let rows = limit / (4 * 64) + 1;
        let text = format!(
            "[data]\nkind = \"digits\"\n[model]\nlayers = [{{ type = \"flatten\" }}, \
             {{ type = \"linear\", name = \"wide\", out_features = {rows} }}, {{ type = \"linear\", out_features = 10 }}]\n\
             [train]\nbatch_size = 2\n"
        );
        let config = Config::parse(Path::new("wide.toml"), &text).unwrap();
        let digits = crate::task::Classification::new(vec![1, 8, 8], 10, (0.0, 1.0));
        let model = crate::model::build(&config, &digits, 2).unwrap();
        let estimate = super::Estimate::of(&model, &crate::context::training(&config.train, 1), false).unwrap();
        assert_eq!(estimate.largest_buffer, rows * 64 * 4);
        let message = estimate.check(Some(&gpu), 2).unwrap_err().to_string();
        let named = format!("for parameter wide.weight of shape [{rows}, 64]");
        for part in [&named[..], "more than the", "--device cpu", "lower [train] batch_size or the layer sizes"] {
            assert!(message.contains(part), "{message} lacks {part}");
        }
    }
}
