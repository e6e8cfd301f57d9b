//! `dlcli predict`: what a trained model predicts for one input. A classifier: its most
//! likely classes with their probabilities. A character model: the distribution of the
//! character after `--text`. A forecaster: the next value after a window, in the data's units.

use anyhow::{Result, bail};
use graph::Mode;

use crate::config::DataSource;
use crate::dataset::Prepared;
use crate::inference::{self, ModelSource, SampleSource};
use crate::{eval, generate, train};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelSource,
    #[command(flatten)]
    sample: SampleSource,
    /// For a forecaster: the latest values, oldest first, comma-separated, in the data's
    /// units (at least the model's window; the last window of them is used).
    #[arg(long)]
    values: Option<String>,
    #[arg(long, default_value_t = 3)]
    top_k: usize,
    #[arg(long)]
    json: bool,
}

pub fn run(args: &Args) -> Result<()> {
    match eval::locate(&args.model)?.0.data.source {
        DataSource::Text { .. } => next_character(args),
        DataSource::Series { .. } => forecast(args),
        _ => classes(args),
    }
}

/// Prints `ranked` (what, probability) as JSON or as lines "`key` what: p%".
fn print_ranked(args: &Args, ranked: &[(serde_json::Value, f32)], key: &str) {
    if args.json {
        let top: Vec<_> = ranked.iter().map(|(c, p)| serde_json::json!({key: c, "probability": p})).collect();
        println!("{}", serde_json::json!({ "top": top }));
    } else {
        for (what, p) in ranked {
            println!("{key} {what}: {:.2}%", 100.0 * p);
        }
    }
}

/// The `top_k` largest of `probabilities` with their indices, largest first.
fn top(probabilities: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut ranked: Vec<(usize, f32)> = probabilities.iter().copied().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked.truncate(k.max(1));
    ranked
}

fn classes(args: &Args) -> Result<()> {
    let loaded = inference::load(&args.model, Some(1))?;
    let sample = loaded.sample(&args.sample)?;
    let gpu = train::open_device(args.model.device)?;
    let ranked = top(&loaded.probabilities(gpu.as_ref(), sample)?, args.top_k);
    print_ranked(args, &ranked.into_iter().map(|(c, p)| (c.into(), p)).collect::<Vec<_>>(), "class");
    Ok(())
}

fn next_character(args: &Args) -> Result<()> {
    let Some(text) = &args.sample.text else { bail!("a character model predicts from --text \"...\"") };
    let gpu = train::open_device(args.model.device)?;
    let (mut decoder, vocabulary) = generate::decoder(&args.model, gpu.as_ref())?;
    let mut logits = Vec::new();
    for id in generate::encode(&vocabulary, text, "--text")? {
        logits = decoder.push(id)?;
    }
    let ranked = self::top(&explain::softmax(&logits), args.top_k);
    let named: Vec<_> = ranked.into_iter().map(|(c, p)| (vocabulary[c].to_string().into(), p)).collect();
    print_ranked(args, &named, "character");
    Ok(())
}

fn forecast(args: &Args) -> Result<()> {
    let loaded = inference::load(&args.model, Some(1))?;
    let Prepared::Series { normalisation, .. } = loaded.prepared else {
        bail!("{}: the checkpoint holds no normalisation; was it trained on a series?", loaded.file.display());
    };
    let window = loaded.test.sample_len();
    let (sample, actual) = match (&args.values, args.sample.index) {
        (Some(values), None) => {
            let parsed: Vec<f64> = values
                .split(',')
                .map(|v| v.trim().parse::<f64>().map_err(|_| anyhow::anyhow!("--values: {v:?} is not a number")))
                .collect::<Result<_>>()?;
            if parsed.len() < window {
                bail!("--values: {} values given; this model reads windows of {window}", parsed.len());
            }
            (parsed[parsed.len() - window..].iter().map(|&v| normalisation.apply(v)).collect(), None)
        }
        (None, Some(_)) => {
            let i = args.sample.index.unwrap_or(0);
            let sample = loaded.sample(&args.sample)?;
            let data::Targets::Values { values, .. } = &loaded.test.targets else { unreachable!("a series") };
            (sample, Some(normalisation.invert(values[i])))
        }
        _ => bail!("give --values V1,V2,... (the latest {window} values) or --index N (a test window)"),
    };
    let gpu = train::open_device(args.model.device)?;
    let mut exec = inference::executor(gpu.as_ref(), &loaded.params)?;
    let run = exec.prepare(&loaded.model.graph, Mode::Eval, &[loaded.model.output])?;
    exec.run(run, &inference::feed(&loaded.test, sample), 0)?;
    let predicted = normalisation.invert(exec.read(run, loaded.model.output)?[0]);
    if args.json {
        println!("{}", serde_json::json!({ "forecast": predicted, "actual": actual }));
    } else {
        match actual {
            Some(actual) => println!("forecast {predicted:.4} (actual {actual:.4})"),
            None => println!("forecast {predicted:.4}"),
        }
    }
    Ok(())
}
