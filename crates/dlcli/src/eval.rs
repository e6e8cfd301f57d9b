//! `dlcli eval`: loss, accuracy, per-class precision/recall/F1 and the confusion matrix of a
//! trained model on its config's test set.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use data::Batches;
use graph::{Checkpoint, Mode};

use crate::config::{Config, Device, EvalMetric};
use crate::dataset::Prepared;
use crate::inference::{self, Loaded, ModelSource};
use crate::train::Scoring;
use crate::{plots, train};

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
            let mut config = Config::parse(file, &text).context("the config stored in the checkpoint")?;
            // A run stores absolute paths; a checkpoint shipped with its data stores them
            // relative to itself.
            config.resolve_data_paths(file.parent().unwrap_or(Path::new("")));
            Ok((config, file.to_owned()))
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

/// What one pass over the test set counted.
struct Tally {
    loss: f64,
    accuracy: f64,
    /// [true class][predicted class] counts.
    confusion: Vec<Vec<usize>>,
    /// Each asked-for top-k metric's name and share of rows.
    top: Vec<(String, f64)>,
}

impl Tally {
    /// Precision, recall and F1 of each class.
    fn per_class(&self) -> Vec<(f64, f64, f64)> {
        let (k, confusion) = (self.confusion.len(), &self.confusion);
        (0..k)
            .map(|c| {
                let tp = confusion[c][c] as f64;
                let predicted: usize = (0..k).map(|r| confusion[r][c]).sum();
                let actual: usize = confusion[c].iter().sum();
                let precision = if predicted == 0 { 0.0 } else { tp / predicted as f64 };
                let recall = if actual == 0 { 0.0 } else { tp / actual as f64 };
                let f1 = if precision + recall == 0.0 { 0.0 } else { 2.0 * precision * recall / (precision + recall) };
                (precision, recall, f1)
            })
            .collect()
    }
}

/// One pass over the test set on the executor `device` picks: each batch's logits and mean
/// loss (padding rows count in neither).
fn tally(loaded: &Loaded, device: Device) -> Result<Tally> {
    let Loaded { config, model, params, test, .. } = loaded;
    let top_ks: Vec<usize> = config
        .eval
        .metrics
        .iter()
        .filter_map(|m| match m {
            EvalMetric::TopK(k) => Some(*k),
            _ => None,
        })
        .collect();
    let k = test.classes();
    let mut confusion = vec![vec![0usize; k]; k];
    let (mut loss_sum, mut top1) = (0.0, 0usize);
    let mut top_hits = vec![0usize; top_ks.len()];
    let gpu = train::open_device(device)?;
    let mut exec = inference::executor(gpu.as_ref(), params)?;
    let run = exec.prepare(&model.graph, Mode::Eval, &[model.output, model.loss])?;
    for b in Batches::in_order(test, config.train.batch_size) {
        exec.run(run, &train::feed(&b, test), 0)?;
        loss_sum += exec.read(run, model.loss)?[0] as f64 * b.valid as f64;
        for (row, logits) in exec.read(run, model.output)?.chunks(k).take(b.valid).enumerate() {
            let label = b.labels[row] as usize;
            let predicted = (0..k).max_by(|&a, &c| logits[a].total_cmp(&logits[c]).then(c.cmp(&a))).unwrap_or(0);
            confusion[label][predicted] += 1;
            // The label's rank: how many other classes score at least as high (ties count
            // against it, as in training's correct count).
            let above = (0..k).filter(|&c| c != label && logits[c] >= logits[label]).count();
            top1 += (above == 0) as usize;
            for (hits, &top) in top_hits.iter_mut().zip(&top_ks) {
                *hits += (above < top) as usize;
            }
        }
    }
    let n = test.len() as f64;
    let top = top_ks.iter().zip(&top_hits).map(|(&k, &h)| (EvalMetric::TopK(k).name(), h as f64 / n)).collect();
    Ok(Tally { loss: loss_sum / n, accuracy: top1 as f64 / n, confusion, top })
}

/// The test set's mean loss and figure under `scoring`, on the executor `device` picks.
fn held_out(loaded: &Loaded, device: Device, scoring: Scoring) -> Result<(f64, f64)> {
    let Loaded { config, model, params, test, .. } = loaded;
    let gpu = train::open_device(device)?;
    let mut exec = inference::executor(gpu.as_ref(), params)?;
    let run = exec.prepare(&model.graph, Mode::Eval, &[model.loss, model.metric])?;
    let (mut loss, mut metric) = (0.0, 0.0);
    for b in Batches::in_order(test, config.train.batch_size) {
        exec.run(run, &train::feed(&b, test), 0)?;
        loss += exec.read(run, model.loss)?[0] as f64 * b.valid as f64;
        metric += exec.read(run, model.metric)?[0] as f64;
    }
    Ok(scoring.score(loss, metric, test.len()))
}

/// A language model's or a regressor's figures on the test set.
fn report_sequence(args: &Args, loaded: &Loaded, scoring: Scoring) -> Result<()> {
    let (loss, figure) = held_out(loaded, args.model.device, scoring)?;
    let mut out = serde_json::json!({
        "checkpoint": loaded.file.display().to_string(), "samples": loaded.test.len(), "loss": loss,
        scoring.figure(): figure,
    });
    let mut headline = format!(
        "{}: {} test samples, loss {loss:.4} {}",
        loaded.file.display(),
        loaded.test.len(),
        scoring.show(figure)
    );
    for (name, value) in scoring.extra(loss) {
        out[name] = value.into();
        headline += &format!(", {name} {value:.3}");
    }
    if let Prepared::Series { persistence_rmse, .. } = loaded.prepared {
        out["persistence_rmse"] = persistence_rmse.into();
        headline += &format!(" (persistence baseline: rmse {persistence_rmse:.4})");
    }
    if args.json {
        println!("{out}");
    } else {
        println!("{headline}");
    }
    Ok(())
}

pub fn run(args: &Args) -> Result<()> {
    let loaded = inference::load(&args.model, None)?;
    let scoring = Scoring::of(&loaded.test, &loaded.prepared);
    if scoring != Scoring::Classes {
        return report_sequence(args, &loaded, scoring);
    }
    let tally = tally(&loaded, args.model.device)?;
    let Loaded { config, file, test, .. } = &loaded;
    let wants = |m: EvalMetric| config.eval.metrics.contains(&m);
    let picture = file.parent().unwrap_or(Path::new(".")).join("confusion.png");
    if wants(EvalMetric::Confusion) {
        plots::confusion(&picture, &tally.confusion)?;
    }
    if args.json {
        let mut out = serde_json::json!({ "checkpoint": file.display().to_string(), "samples": test.len() });
        if wants(EvalMetric::Loss) {
            out["loss"] = tally.loss.into();
        }
        if wants(EvalMetric::Accuracy) {
            out["accuracy"] = tally.accuracy.into();
        }
        for (name, value) in &tally.top {
            out[name] = (*value).into();
        }
        if wants(EvalMetric::PerClass) {
            let rows = tally.per_class().into_iter().enumerate();
            let classes: Vec<_> = rows
                .map(|(c, (p, r, f))| serde_json::json!({"class": c, "precision": p, "recall": r, "f1": f}))
                .collect();
            out["classes"] = classes.into();
        }
        if wants(EvalMetric::Confusion) {
            out["confusion"] = serde_json::json!(tally.confusion);
            out["confusion_png"] = picture.display().to_string().into();
        }
        println!("{out}");
        return Ok(());
    }
    let mut headline = format!("{}: {} test samples", file.display(), test.len());
    if wants(EvalMetric::Loss) {
        headline += &format!(", loss {:.4}", tally.loss);
    }
    if wants(EvalMetric::Accuracy) {
        headline += &format!(", accuracy {:.2}%", 100.0 * tally.accuracy);
    }
    for (name, value) in &tally.top {
        headline += &format!(", {name} {:.2}%", 100.0 * value);
    }
    println!("{headline}");
    if wants(EvalMetric::PerClass) {
        println!("\nclass  precision  recall     f1");
        for (c, (p, r, f)) in tally.per_class().iter().enumerate() {
            println!("{c:>5}  {:>8.2}%  {:>5.2}%  {:>5.2}%", 100.0 * p, 100.0 * r, 100.0 * f);
        }
    }
    if wants(EvalMetric::Confusion) {
        print_confusion(&tally.confusion);
        println!("drawn in {}", picture.display());
    }
    Ok(())
}

fn print_confusion(confusion: &[Vec<usize>]) {
    println!("\nconfusion matrix (rows: true class, columns: predicted)");
    print!("      ");
    (0..confusion.len()).for_each(|c| print!("{c:>6}"));
    println!();
    for (r, row) in confusion.iter().enumerate() {
        print!("{r:>6}");
        row.iter().for_each(|n| print!("{n:>6}"));
        println!();
    }
}
