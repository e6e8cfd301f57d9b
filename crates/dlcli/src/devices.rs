//! `dlcli devices`: which adapters exist, and which one dlcli picks (honouring DLCLI_ADAPTER).

use anyhow::Context;
use kernels::{Gpu, list_adapters};

#[derive(clap::Args)]
pub struct Args {
    /// Also print the chosen adapter's optional features and main limits.
    #[arg(long)]
    pub verbose: bool,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let adapters = list_adapters();
    if adapters.is_empty() {
        anyhow::bail!(
            "no GPU adapter found; install a Vulkan driver (on Debian/Ubuntu: apt-get install mesa-vulkan-drivers) \
             or train on the CPU"
        );
    }
    println!("adapters, best first:");
    for a in &adapters {
        println!("  {a}");
    }
    let gpu = Gpu::open().context("opening the chosen adapter")?;
    println!("dlcli uses: {} ({:?} class)", gpu.summary(), gpu.class());
    if args.verbose {
        let limits = gpu.limits();
        println!("features: {:?}", gpu.features());
        println!(
            "limits: storage binding {} MiB, buffer {} MiB, workgroup memory {} KiB, {} invocations per workgroup, \
             {} storage buffers per stage",
            limits.max_storage_buffer_binding_size >> 20,
            limits.max_buffer_size >> 20,
            limits.max_compute_workgroup_storage_size >> 10,
            limits.max_compute_invocations_per_workgroup,
            limits.max_storage_buffers_per_shader_stage
        );
        if let Some(budget) = gpu.loop_budget() {
            println!("loop budget: {budget} iterations per shader invocation (CPU rasteriser)");
        }
    }
    Ok(())
}
