//! `dlcli eval`: loss, accuracy, per-class precision/recall/F1 and the confusion matrix of a
//! trained model on its config's test set.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use data::Batches;
use graph::{Checkpoint, CpuExecutor, Mode, Trainer};

use crate::config::Config;
use crate::inference::ModelSource;
use crate::{dataset, plots, train};

/// The config and checkpoint of `--run RUN` (its best checkpoint) or `--checkpoint FILE` (the
/// config stored inside it).
pub fn locate(source: &ModelSource) -> Result<(Config, PathBuf)> {
    match (source.run.as_deref(), source.checkpoint.as_deref()) {
        (Some(run), None) => {
            let config = Config::load(&run.join("config.toml"))?;
            let best = run.join("best.safetensors");
            if !best.exists() {
                bail!("{} has no best.safetensors: did its training finish an epoch?", run.display());
            }
            Ok((config, best))
        }
        (None, Some(file)) => {
            let text = Checkpoint::config_text(file)?;
            Ok((Config::parse(file, &text).context("the config stored in the checkpoint")?, file.to_owned()))
        }
        _ => bail!("give exactly one of --run RUN or --checkpoint FILE"),
    }
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelSource,
    /// One JSON object instead of tables.
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> Result<()> {
    let json = args.json;
    let (config, file) = locate(&args.model)?;
    let (_, test) = dataset::load(&config.data, config.train.seed)?;
    let (classifier, mut trainer) = train::restore(&config, &file, &test.sample_shape, test.classes)?;
    let params = trainer.params()?;
    let (loss, accuracy) = train::evaluate(&mut trainer, &test, config.train.batch_size)?;
    let k = test.classes;
    let mut confusion = vec![vec![0usize; k]; k];
    let exec = CpuExecutor::new(&classifier.graph, Mode::Eval);
    for b in Batches::in_order(&test, config.train.batch_size) {
        let values = exec.run_for(&params, &train::feed(&b, 0), &[classifier.logits])?;
        for (row, logits) in values.get(classifier.logits).chunks(k).take(b.valid).enumerate() {
            let predicted = (0..k).max_by(|&a, &c| logits[a].total_cmp(&logits[c]).then(c.cmp(&a))).unwrap_or(0);
            confusion[b.labels[row] as usize][predicted] += 1;
        }
    }
    let per_class: Vec<(f64, f64, f64)> = (0..k)
        .map(|c| {
            let tp = confusion[c][c] as f64;
            let predicted: usize = (0..k).map(|r| confusion[r][c]).sum();
            let actual: usize = confusion[c].iter().sum();
            let precision = if predicted == 0 { 0.0 } else { tp / predicted as f64 };
            let recall = if actual == 0 { 0.0 } else { tp / actual as f64 };
            let f1 = if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
            (precision, recall, f1)
        })
        .collect();
    let picture = file.parent().unwrap_or(Path::new(".")).join("confusion.png");
    plots::confusion(&picture, &confusion)?;
    if json {
        let classes: Vec<_> = per_class
            .iter()
            .enumerate()
            .map(|(c, (p, r, f))| serde_json::json!({"class": c, "precision": p, "recall": r, "f1": f}))
            .collect();
        let out = serde_json::json!({
            "checkpoint": file.display().to_string(), "samples": test.len(), "loss": loss, "accuracy": accuracy,
            "classes": classes, "confusion": confusion, "confusion_png": picture.display().to_string(),
        });
        println!("{out}");
        return Ok(());
    }
    println!("{}: {} test samples, loss {loss:.4}, accuracy {:.2}%", file.display(), test.len(), 100.0 * accuracy);
    println!("\nclass  precision  recall     f1");
    for (c, (p, r, f)) in per_class.iter().enumerate() {
        println!("{c:>5}  {:>8.2}%  {:>5.2}%  {:>5.2}%", 100.0 * p, 100.0 * r, 100.0 * f);
    }
    println!("\nconfusion matrix (rows: true class, columns: predicted)");
    print!("      ");
    (0..k).for_each(|c| print!("{c:>6}"));
    println!();
    for (r, row) in confusion.iter().enumerate() {
        print!("{r:>6}");
        row.iter().for_each(|n| print!("{n:>6}"));
        println!();
    }
    println!("drawn in {}", picture.display());
    Ok(())
}
