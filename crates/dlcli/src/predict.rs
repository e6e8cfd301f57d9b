//! `dlcli predict`: what a trained model predicts for one input, as its task says it: a
//! classifier's most likely classes with their probabilities, a character model's
//! distribution of the character after `--text`, a forecaster's next value after a window.

use anyhow::Result;

use crate::context::{self, ModelSource, Predicting};
use crate::task::SampleSource;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelSource,
    #[command(flatten)]
    sample: SampleSource,
    #[arg(long, default_value_t = 3)]
    top_k: usize,
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let gpu = context::open_device(args.model.device)?;
    let (task, mut model) = Predicting::open(&args.model, gpu.as_ref())?;
    task.predict(&args.sample, &mut model, args.top_k)?.print(args.json);
    Ok(())
}
