//! `dlcli config check FILE` and `dlcli config defaults`: the command that reports every
//! problem of a config at once (building its model on its data, so shape mismatches show too)
//! and the commented config of every key. The keys are declared in `config.rs`, written out
//! by `reference.rs`.

use std::path::PathBuf;

use crate::config::Config;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(clap::Subcommand)]
enum ConfigCommand {
    /// Report every problem in a config file, or say it is fine (builds the model on the
    /// config's data, so shape mismatches are found too).
    Check { file: PathBuf },
    /// Print a commented config with every key and its default (itself a valid config).
    Defaults {
        /// Print the keys as Markdown tables instead (the README's reference).
        #[arg(long)]
        markdown: bool,
    },
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    match &args.command {
        ConfigCommand::Check { file } => {
            let config = Config::load(file)?;
            let (_, task) = crate::task::load(&config.data, config.train.seed)?;
            let batch = config.train.batch_size;
            let model = crate::model::build(&config, task.as_ref(), batch)?;
            let estimate = crate::memory::Estimate::of(&model, &crate::context::training(&config.train, 1), false)?;
            estimate.check(None, batch)?;
            println!(
                "{}: ok ({} layers, {} parameter tensors; a training step at batch {batch} holds about {:.1} MiB)",
                file.display(),
                config.layers.len(),
                model.params.len(),
                estimate.total() as f64 / (1 << 20) as f64
            );
            Ok(())
        }
        ConfigCommand::Defaults { markdown } => {
            print!("{}", if *markdown { crate::reference::markdown() } else { crate::reference::defaults_toml() });
            Ok(())
        }
    }
}
