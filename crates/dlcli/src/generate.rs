//! `dlcli generate`: text from a trained character-level language model, streamed as it is
//! sampled. The model takes one character at a time and carries what earlier ones left (a
//! GPT's KV cache, an LSTM's state), so no character is run through the model twice, except
//! once more when a GPT's window outgrows its trained context and starts again from its
//! second half.

use std::io::Write;
use std::time::Instant;

use anyhow::{Result, bail};
use data::SplitMix64;

use crate::context::{self, Located, ModelSource};
use crate::task::encode;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    model: ModelSource,
    /// The text to continue (every character must be in the model's vocabulary).
    #[arg(long)]
    prompt: String,
    /// How many characters to sample.
    #[arg(long, default_value_t = 200)]
    tokens: usize,
    /// Divides the logits: below 1 sharper, above 1 more varied; 0 always takes the most
    /// likely character.
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// Sample among the k most likely characters only.
    #[arg(long)]
    top_k: Option<usize>,
    /// The same seed, model and settings give the same text.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn run(args: &Args) -> Result<()> {
    if !(args.temperature >= 0.0 && args.temperature.is_finite()) {
        bail!("--temperature {}: give a number >= 0 (0: always the most likely character)", args.temperature);
    }
    if args.top_k == Some(0) {
        bail!("--top-k 0: give at least 1");
    }
    let gpu = context::open_device(args.model.device)?;
    let (mut decoder, vocabulary) = Located::of(&args.model)?.decoder(gpu.as_ref())?;
    let prompt = encode(&vocabulary, &args.prompt, "--prompt")?;
    let mut out = std::io::stdout().lock();
    write!(out, "{}", args.prompt)?;
    let mut next = Vec::new();
    for &id in &prompt {
        next = decoder.push(id)?;
    }
    let (start, mut rng) = (Instant::now(), SplitMix64(args.seed));
    for i in 0..args.tokens {
        let id = sample(&next, args.temperature, args.top_k, &mut rng);
        write!(out, "{}", vocabulary[id])?;
        out.flush()?;
        if i + 1 < args.tokens {
            next = decoder.push(id as u32)?;
        }
    }
    writeln!(out)?;
    out.flush()?;
    let rate = args.tokens as f64 / start.elapsed().as_secs_f64();
    eprintln!("{} characters at {rate:.0} characters/s", args.tokens);
    Ok(())
}

/// A character drawn from softmax(logits / temperature) over the `top_k` largest logits; the
/// largest when the temperature is 0.
fn sample(logits: &[f32], temperature: f32, top_k: Option<usize>, rng: &mut SplitMix64) -> usize {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    if temperature == 0.0 {
        return order[0];
    }
    order.truncate(top_k.unwrap_or(order.len()).min(order.len()));
    let top = logits[order[0]] as f64;
    let weights: Vec<f64> = order.iter().map(|&c| ((logits[c] as f64 - top) / temperature as f64).exp()).collect();
    let mut target = rng.next_f64() * weights.iter().sum::<f64>();
    for (&c, w) in order.iter().zip(&weights) {
        target -= w;
        if target < 0.0 {
            return c;
        }
    }
    order[order.len() - 1]
}
