//! The `dlcli` binary. Each subcommand lives in its own module; `main` parses the command
//! line, runs the command, and prints any error once, as one line, with a non-zero exit code.

mod devices;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "dlcli", version, about = "Train, evaluate and explain neural networks on any GPU")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the GPU adapters wgpu finds and show the one dlcli would use.
    Devices(devices::Args),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Devices(args) => devices::run(&args),
    };
    if let Err(e) = result {
        eprintln!("dlcli: {e:#}");
        std::process::exit(1);
    }
}
