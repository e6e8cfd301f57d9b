//! `dlcli eval`: a trained model's figures on its config's test set, as its task reports
//! them: a classifier's loss, accuracy, top-k accuracy, per-class precision/recall/F1 and
//! confusion matrix; a language model's perplexity; a forecaster's RMSE beside its baselines.

use anyhow::Result;

use crate::context::{self, Located, ModelSource};
use crate::task::Evaluation;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelSource,
    /// One JSON object instead of tables.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let (loaded, task) = Located::of(&args.model)?.load(None)?;
    let gpu = context::open_device(args.model.device)?;
    let mut exec = context::executor_with(gpu.as_ref(), &loaded.params)?;
    let evaluation = Evaluation {
        exec: exec.as_mut(),
        model: &loaded.model,
        test: &loaded.test,
        batch: loaded.config.train.batch_size,
        metrics: &loaded.config.eval.metrics[..],
        checkpoint: loaded.file.clone(),
    };
    task.report(evaluation)?.print(args.json);
    Ok(())
}
