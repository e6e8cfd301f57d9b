//! `dlcli summary`: a torchinfo-style table of a config's model: each layer's output shape,
//! parameters and FLOPs per sample, and the memory the GPU executor would plan.

use std::path::PathBuf;

use anyhow::Result;
use graph::{GpuExecutor, Plan, Trainer, TrainingStep};

use crate::config::{Config, LayerKind};
use crate::{dataset, model, train};

#[derive(clap::Args)]
pub struct Args {
    /// The model config (TOML).
    #[arg(long)]
    config: PathBuf,
}

pub fn run(args: &Args) -> Result<()> {
    let config = Config::load(&args.config)?;
    let (train, _) = dataset::load(&config.data, config.train.seed)?;
    let (classifier, outputs) = model::build_layers(&config, &train.sample_shape, train.classes, 1)?;
    let g = &classifier.graph;
    println!("{:<18} {:<16} {:<18} {:>10} {:>14}", "layer", "type", "output", "params", "FLOPs/sample");
    let (mut total_params, mut total_flops) = (0usize, 0u64);
    for (layer, &out) in config.layers.iter().zip(&outputs) {
        let params: usize = classifier
            .params
            .iter()
            .filter(|p| p.name.rsplit_once('.').is_some_and(|(owner, _)| owner == layer.name))
            .map(|p| g.numel(p.node))
            .sum();
        let out_len = g.numel(out) as u64;
        // Multiply-adds count two FLOPs; element-wise layers one per output.
        let flops = match &layer.kind {
            LayerKind::Conv2d { kernel, .. } => {
                let input = g.node(out.node).inputs.first().map_or(0, |&i| g.shape(i)[1]);
                2 * out_len * (input * kernel * kernel) as u64
            }
            LayerKind::Linear { .. } => 2 * params as u64,
            LayerKind::Flatten {} => 0,
            _ => out_len,
        };
        total_params += params;
        total_flops += flops;
        let kind = format!("{:?}", layer.kind).split([' ', '(', '{']).next().unwrap_or("").to_string();
        println!("{:<18} {:<16} {:<18} {:>10} {:>14}", layer.name, kind, format!("{:?}", g.shape(out)), params, flops);
    }
    println!(
        "total: {total_params} parameters ({:.2} MiB f32), {:.2} MFLOPs per sample forward",
        mib(4 * total_params as u64),
        total_flops as f64 / 1e6
    );
    let batch = config.train.batch_size;
    let at_batch = model::build(&config, &train.sample_shape, train.classes, batch)?;
    let training = train::training(&config.train, 1);
    let step = TrainingStep::new(&at_batch, &training)?;
    let plan = Plan::new(&step.graph, &step.outputs);
    println!(
        "training step at batch {batch}: {:.3} GFLOP, {:.1} MiB planned for activations and gradients (one buffer per tensor: {:.1} MiB)",
        plan.flops(&step.graph) as f64 / 1e9,
        mib(plan.planned_elements() as u64 * 4),
        mib(plan.unshared_elements as u64 * 4)
    );
    // Counting dispatches needs the kernels prepared on an adapter; without one, say so.
    match kernels::Gpu::open() {
        Ok(gpu) => {
            let trainer = Trainer::new(GpuExecutor::new(&gpu), &at_batch, training)?;
            let dispatches = trainer.executor().dispatch_count(trainer.runs().0);
            println!("GPU executor ({}): {dispatches} kernel dispatches per training step", gpu.summary().name);
        }
        Err(e) => println!("GPU executor: no adapter to count dispatches on ({e})"),
    }
    Ok(())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
