//! `dlcli config check FILE` and `dlcli config defaults`: the command that reports every
//! problem of a config at once (building its model on its data, so shape mismatches show too)
//! and the commented config of every key. The schema itself lives in `config.rs`.

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
    /// Print a commented config with every key and its default.
    Defaults,
}

/// Every key with its default and what it means; a valid config itself.
const DEFAULTS: &str = include_str!("defaults.toml");

pub fn run(args: &Args) -> anyhow::Result<()> {
    match &args.command {
        ConfigCommand::Check { file } => {
            let config = Config::load(file)?;
            let (train, _) = crate::dataset::load(&config.data, config.train.seed)?;
            let model = crate::model::build(&config, &train.sample_shape, train.classes, config.train.batch_size)?;
            println!(
                "{}: ok ({} layers, {} parameter tensors)",
                file.display(),
                config.layers.len(),
                model.params.len()
            );
            Ok(())
        }
        ConfigCommand::Defaults => {
            print!("{DEFAULTS}");
            Ok(())
        }
    }
}

