//! `--method attention`: every attention layer's probabilities, recomputed from the queries
//! and keys, as a PNG grid, their rollout over the image (a ViT) or the text (an HTML page
//! and ANSI colours in the terminal), and a JSON sidecar with the matrices.

use anyhow::{Context, Result, bail};
use explain::{AttentionMap, bilinear, rollout};
use graph::{Mode, TensorId};

use super::Args;
use super::render::{Picture, beside, highlighted_ansi, highlighted_html, picture};
use crate::context::{self, Loaded};
use crate::plots;
use crate::task::{self, Task};

/// Every attention layer's probabilities for the sample, recomputed from its queries and keys,
/// the maps of a padded text cropped to its `real` positions.
fn attention_maps(
    loaded: &Loaded,
    sample: Vec<f32>,
    real: usize,
    device: crate::config::Device,
) -> Result<Vec<(String, AttentionMap)>> {
    let model = &loaded.model;
    let outputs: Vec<TensorId> = model.attention.iter().flat_map(|s| [s.q, s.k]).collect();
    let gpu = context::open_device(device)?;
    let mut exec = context::executor_with(gpu.as_ref(), &loaded.params)?;
    let run = exec.prepare(&model.graph, Mode::Eval, &outputs)?;
    exec.run(run, &task::inputs(loaded.test.inputs, sample), 0)?;
    let mut maps = Vec::new();
    for site in &model.attention {
        if site.key_mask.is_some() {
            bail!("{}: explaining attention under a key-padding mask is not supported", site.name);
        }
        let (&[_, queries, dim], &[_, keys, _]) = (model.graph.shape(site.q), model.graph.shape(site.k)) else {
            unreachable!("attention reads [B·H, T, D]")
        };
        let (q, k) = (exec.read(run, site.q)?, exec.read(run, site.k)?);
        let full = AttentionMap::from_queries_and_keys(&q, &k, (site.heads, queries, keys, dim), site.causal, None);
        let (rq, rk) = (real.min(queries), real.min(keys));
        let cropped = (0..site.heads)
            .flat_map(|h| full.head(h).chunks(keys).take(rq).flat_map(|row| row[..rk].to_vec()).collect::<Vec<_>>());
        let map = AttentionMap { heads: site.heads, queries: rq, keys: rk, probabilities: cropped.collect() };
        maps.push((site.name.clone(), map));
    }
    Ok(maps)
}

/// `--method attention`: the grid of every head, the rollout over the input and the sidecar.
pub fn run(args: &Args, loaded: &Loaded, task: &dyn Task) -> Result<()> {
    let out = args.out.as_deref().expect("clap requires --out without --report");
    if loaded.model.attention.is_empty() {
        bail!("this model has no attention layer; use --method gradcam or saliency");
    }
    let text = args.sample.text.as_deref();
    let sample = task.sample(&args.sample, &loaded.test)?;
    let real = if text.is_some() { sample.real } else { usize::MAX };
    if text.is_some() && loaded.model.attention.iter().any(|s| !s.causal) && real < loaded.test.sample_len() {
        bail!(
            "--text: this model's attention is not causal, so give a full window of {} characters",
            loaded.test.sample_len()
        );
    }
    let sample = sample.values;
    let maps = attention_maps(loaded, sample.clone(), real, args.model.device)?;
    plots::attention_grid(out, &maps.iter().map(|(n, m)| (n.clone(), m)).collect::<Vec<_>>())?;
    let t = maps[0].1.queries;
    let square = maps.iter().all(|(_, m)| m.queries == t && m.keys == t);
    let flow = square.then(|| rollout(&maps.iter().map(|(_, m)| m.clone()).collect::<Vec<_>>()));
    let mut sidecar = serde_json::json!({
        "method": "attention",
        "layers": maps.iter().map(|(name, m)| serde_json::json!({
            "name": name, "heads": m.heads, "queries": m.queries, "keys": m.keys,
            "probabilities": (0..m.heads).map(|h| m.head(h).chunks(m.keys).map(|r| r.to_vec()).collect::<Vec<_>>()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "rollout": flow.as_ref().map(|f| f.chunks(t).map(|r| r.to_vec()).collect::<Vec<_>>()),
    });
    let mut written = vec![out.display().to_string()];
    match (&flow, text) {
        (Some(flow), Some(_)) => {
            let chars = task.text(&sample[..t]).context("--text is for a model of text")?;
            // What flows into the last position, which predicts the next character.
            let weights = &flow[(t - 1) * t..];
            let html = beside(out, "", "html");
            let what = "Attention rollout into the last character (which predicts the next): the stronger the \
                        background, the more that character flows into it.";
            std::fs::write(&html, highlighted_html(&chars, weights, what))
                .with_context(|| format!("writing {}", html.display()))?;
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                println!("{}", highlighted_ansi(&chars, weights));
            }
            sidecar["tokens"] = chars.iter().collect::<String>().into();
            written.push(html.display().to_string());
        }
        (Some(flow), None) => {
            if let (Some(map), &[c, h, w]) = (class_token_map(flow, t), &loaded.test.sample_shape[..]) {
                let side = (t - 1).isqrt();
                let overlay = beside(out, "-rollout", "png");
                let map = bilinear(&map, side, side, h, w);
                let title = "attention rollout from the class token".to_string();
                let picture =
                    Picture { input: &sample, channels: c, height: h, width: w, map: &map, signed: false, title };
                let image = self::picture(&picture, args.layout)?;
                image.save(&overlay).with_context(|| format!("writing {}", overlay.display()))?;
                written.push(overlay.display().to_string());
            }
        }
        _ => {}
    }
    let json = out.with_extension("json");
    std::fs::write(&json, sidecar.to_string()).with_context(|| format!("writing {}", json.display()))?;
    written.push(json.display().to_string());
    println!("attention of {} layers: {}", maps.len(), written.join(", "));
    Ok(())
}

/// The rollout of the class token (position 0) over the patches after it, when they form a
/// square grid (a ViT's).
fn class_token_map(flow: &[f64], t: usize) -> Option<Vec<f32>> {
    let side = (t - 1).isqrt();
    (t > 1 && side * side == t - 1).then(|| flow[1..t].iter().map(|&x| x as f32).collect())
}
