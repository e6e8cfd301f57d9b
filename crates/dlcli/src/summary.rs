//! `dlcli summary`: a torchinfo-style table of a config's model: each layer's output shape,
//! parameters and FLOPs per sample, and the memory the GPU executor would plan.

use std::path::PathBuf;

use anyhow::Result;
use graph::{GpuExecutor, Op, Plan, Trainer, TrainingStep};

use crate::config::Config;
use crate::{context, model, task};
use graph::settings::Tagged;

#[derive(clap::Args)]
pub struct Args {
    /// The model config (TOML).
    #[arg(long)]
    config: PathBuf,
}

pub fn run(args: &Args) -> Result<()> {
    let config = Config::load(&args.config)?;
    let (_, task) = task::load_test(&config.data, config.train.seed, None)?;
    let (classifier, outputs) = model::build_layers(&config, task.as_ref(), 1)?;
    let g = &classifier.graph;
    println!("{:<18} {:<16} {:<18} {:>10} {:>14}", "layer", "type", "output", "params", "FLOPs/sample");
    let (mut total_params, mut total_flops) = (0usize, 0u64);
    // A layer's nodes (its parameters among them) are those built after the previous layer's
    // output, up to its own.
    let mut first = 0;
    for (layer, &out) in config.layers.iter().zip(&outputs) {
        let nodes: Vec<_> = g.nodes().filter(|(id, _)| (first..=out.node.index()).contains(&id.index())).collect();
        let params: usize = nodes
            .iter()
            .filter(|(_, node)| matches!(node.op, Op::Param { .. }))
            .map(|(id, _)| g.numel(id.out(0)))
            .sum();
        let flops: u64 = nodes.iter().map(|(id, node)| g.node_flops(*id, &vec![true; node.outputs.len()])).sum();
        first = out.node.index() + 1;
        total_params += params;
        total_flops += flops;
        let kind = layer.kind.write().0;
        println!("{:<18} {:<16} {:<18} {:>10} {:>14}", layer.name, kind, format!("{:?}", g.shape(out)), params, flops);
    }
    println!(
        "total: {total_params} parameters ({:.2} MiB f32), {:.2} MFLOPs per sample forward",
        mib(4 * total_params as u64),
        total_flops as f64 / 1e6
    );
    let batch = config.train.batch_size;
    let at_batch = model::build(&config, task.as_ref(), batch)?;
    let training = context::training(&config.train, 1);
    let step = TrainingStep::new(&at_batch, &training)?;
    let plan = Plan::new(&step.graph, &step.outputs);
    println!(
        "training step at batch {batch}: {:.3} GFLOP, {:.1} MiB planned for activations and gradients (at most {:.1} MiB live at once; one buffer per tensor: {:.1} MiB), its ops reading and writing {:.1} MiB",
        plan.flops(&step.graph) as f64 / 1e9,
        mib(plan.planned_elements() as u64 * 4),
        mib(plan.peak_elements as u64 * 4),
        mib(plan.unshared_elements as u64 * 4),
        mib(plan.bytes_moved(&step.graph))
    );
    // Counting dispatches needs the kernels prepared on an adapter; without one, say so.
    match kernels::Gpu::open() {
        Ok(gpu) => {
            let trainer = Trainer::new(GpuExecutor::new(&gpu), &at_batch, training)?;
            let run = trainer.runs().0;
            let dispatches = trainer.executor().dispatch_count(run);
            let (written, read) = trainer.executor().transfers(run);
            println!(
                "GPU executor ({}): {dispatches} kernel dispatches per training step in one submission, writing {:.2} MiB of data to the device and reading {read} bytes back",
                gpu.summary().name,
                mib(written)
            );
        }
        Err(e) => println!("GPU executor: no adapter to count dispatches on ({e})"),
    }
    Ok(())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
