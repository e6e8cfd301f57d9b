//! `dlcli generate`: text from a trained character-level language model, streamed as it is
//! sampled. The model takes one character at a time and carries what earlier ones left (a
//! GPT's KV cache, an LSTM's state), so no character is run through the model twice, except
//! once more when a GPT's window outgrows its trained context and starts again from its
//! second half.

use std::io::Write;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use data::{Dataset, Inputs, SplitMix64, Targets, encode_with};
use graph::{Checkpoint, Decoder, Executor};
use kernels::Gpu;

use crate::config::DataSource;
use crate::dataset::Prepared;
use crate::inference::ModelSource;
use crate::{eval, model, train};

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

/// A decoder on whichever executor the device choice gave.
pub type AnyDecoder<'g> = Decoder<Box<dyn Executor + 'g>>;

/// A trained character model of `source` ready to take one character at a time on `gpu` (else
/// the CPU), with its vocabulary (from the checkpoint, so the corpus is not needed).
pub fn decoder<'g>(source: &ModelSource, gpu: Option<&'g Gpu>) -> Result<(AnyDecoder<'g>, Vec<char>)> {
    let (config, file) = eval::locate(source)?;
    let DataSource::Text { context, .. } = config.data.source else {
        bail!("{}: this needs a model trained on text ([data] kind = \"text\")", file.display());
    };
    let kept = Checkpoint::metadata(&file)?;
    let Prepared::Text { vocabulary } = Prepared::from_json(kept.get("data").map_or("", |d| d.as_str()))? else {
        bail!("{}: the checkpoint holds no vocabulary; was it trained on text?", file.display());
    };
    let vocab = vocabulary.len();
    // The model as trained (to read the checkpoint against) and as it decodes.
    let shape = Dataset {
        samples: Vec::new(),
        sample_shape: vec![context],
        inputs: Inputs::Tokens { vocab },
        targets: Targets::Classes { labels: Vec::new(), per_sample: context, classes: vocab },
    };
    let trained = model::build(&config, &shape, 1)?;
    let params = Checkpoint::load(&file, &trained, &train::training(&config.train, 1).optimizer)?.state.params;
    let (mut decoding_model, logits) = model::build_decoder(&config, vocab, context)?;
    let decoding = decoding_model.decoding.take().context("built for decoding")?;
    Ok((Decoder::new(train::executor(gpu), &decoding_model.graph, logits, decoding, &params)?, vocabulary))
}

/// The ids of `text` in `vocabulary`, or an error naming the flag and the first character
/// the model does not know.
pub fn encode(vocabulary: &[char], text: &str, flag: &str) -> Result<Vec<u32>> {
    let ids = encode_with(vocabulary, text).map_err(|c| {
        anyhow::anyhow!("{flag}: {c:?} is not in the model's vocabulary of {} characters", vocabulary.len())
    })?;
    if ids.is_empty() {
        bail!("{flag}: give at least one character");
    }
    Ok(ids)
}

pub fn run(args: &Args) -> Result<()> {
    if !(args.temperature >= 0.0 && args.temperature.is_finite()) {
        bail!("--temperature {}: give a number >= 0 (0: always the most likely character)", args.temperature);
    }
    if args.top_k == Some(0) {
        bail!("--top-k 0: give at least 1");
    }
    let gpu = train::open_device(args.model.device)?;
    let (mut decoder, vocabulary) = decoder(&args.model, gpu.as_ref())?;
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
