//! The `dlcli` binary. Each subcommand lives in its own module, over what they share: the
//! config (`config.rs`, `schema.rs`), the tasks (`task/`), the model (`model.rs`), the device,
//! executors and trained models (`context.rs`) and run directories (`run_dir.rs`). `main`
//! parses the command line, runs the command, and sets the exit code: an error is printed
//! once, with 1.

#![cfg_attr(not(test), warn(clippy::too_many_lines))]

mod bench;
mod config;
mod config_command;
mod context;
mod dataset;
mod devices;
mod eval;
mod explain;
#[cfg(test)]
mod fuzz;
mod generate;
mod memory;
mod model;
mod npy;
mod plots;
mod predict;
mod reference;
mod run_dir;
mod run_lock;
mod schema;
mod summary;
mod task;
mod train;

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
    /// Train a config's model; writes runs/NAME/ (config, metrics, checkpoints).
    Train(train::Args),
    /// Loss, accuracy, per-class precision/recall/F1 and the confusion matrix on the test set.
    Eval(eval::Args),
    /// The most likely classes of one input, with probabilities.
    Predict(predict::Args),
    /// Text from a trained character-level language model, streamed as it is sampled.
    Generate(generate::Args),
    /// What the model looks at: an attribution (saliency, input × gradient, Integrated Gradients,
    /// SmoothGrad, Grad-CAM, Grad-CAM++, occlusion, LIME, KernelSHAP) or attention maps, as
    /// pictures with a JSON sidecar, faithfulness checks and an HTML report.
    Explain(Box<explain::Args>),
    /// A table of a config's layers: output shapes, parameters, FLOPs, planned memory.
    Summary(summary::Args),
    /// Check a config file and report every problem in it at once.
    Config(config_command::Args),
    /// How fast a config's model trains and evaluates here: first step, samples/s, memory.
    Bench(bench::Args),
}

/// Signal dispositions for a command-line tool. A closed output pipe (`dlcli eval --run r |
/// head -1`) ends the process quietly, as it does Unix tools, instead of a panic at the next
/// print (Rust starts with SIGPIPE ignored). A file-size limit (`ulimit -f`) makes a write
/// fail with EFBIG, an error the writer reports with the file's name and removes its partial
/// file for, instead of SIGXFSZ killing the process mid-checkpoint.
fn signal_dispositions() {
    #[cfg(unix)]
    {
        unsafe extern "C" {
            fn signal(signum: i32, handler: usize) -> usize;
        }
        // The same numbers on Linux, macOS and the BSDs.
        const SIGPIPE: i32 = 13;
        const SIGXFSZ: i32 = 25;
        const SIG_DFL: usize = 0;
        const SIG_IGN: usize = 1;
        // SAFETY: sets dispositions before any thread exists.
        unsafe {
            signal(SIGPIPE, SIG_DFL);
            signal(SIGXFSZ, SIG_IGN);
        }
    }
}

fn main() {
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        // Mesa prints an error on every device probe when this is unset; it only wants a
        // writable directory. SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", std::env::temp_dir()) };
    }
    signal_dispositions();
    let cli = Cli::parse();
    let done = |result: anyhow::Result<()>| result.map(|()| 0);
    let result = match cli.command {
        Command::Devices(args) => done(devices::run(&args)),
        Command::Train(args) => train::run(&args).map(|outcome| outcome.exit_code()),
        Command::Eval(args) => done(eval::run(&args)),
        Command::Predict(args) => done(predict::run(&args)),
        Command::Explain(args) => done(explain::run(&args)),
        Command::Generate(args) => done(generate::run(&args)),
        Command::Summary(args) => done(summary::run(&args)),
        Command::Config(args) => done(config_command::run(&args)),
        Command::Bench(args) => done(bench::run(&args)),
    };
    let code = result.unwrap_or_else(|e| {
        eprintln!("dlcli: {e:#}");
        1
    });
    std::process::exit(code);
}
