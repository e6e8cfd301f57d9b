//! `dlcli predict`: the most likely classes of one input with their probabilities.

use anyhow::Result;

use crate::inference::{self, ModelSource, SampleSource};

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
    let loaded = inference::load(&args.model, Some(1))?;
    let sample = loaded.sample(&args.sample)?;
    let gpu = crate::train::open_device(args.model.device)?;
    let mut explainer = loaded.explainer(gpu.as_ref())?;
    let probabilities = explainer.probabilities(&sample)?;
    let mut ranked: Vec<(usize, f32)> = probabilities.into_iter().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked.truncate(args.top_k.max(1));
    if args.json {
        let top: Vec<_> = ranked.iter().map(|(c, p)| serde_json::json!({"class": c, "probability": p})).collect();
        println!("{}", serde_json::json!({ "top": top }));
    } else {
        for (class, p) in ranked {
            println!("class {class}: {:.2}%", 100.0 * p);
        }
    }
    Ok(())
}
