//! `dlcli explain`: what a model looks at in one input. Grad-CAM and saliency: a PNG overlay
//! (the input in grey, the map in the turbo colormap, half and half) with a JSON sidecar
//! holding the raw map, the class explained, its score and probability. Attention: every
//! layer's and head's probabilities as a PNG grid, their rollout over the image (a ViT) or the
//! text (an HTML page and ANSI colours in the terminal), and a JSON sidecar with the matrices.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use explain::{AttentionMap, Method, bilinear, rollout};
use graph::{Mode, TensorId};

use crate::config::LayerKind;
use crate::inference::{self, Loaded, ModelSource, SampleSource};
use crate::{plots, train};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MethodArg {
    Gradcam,
    Saliency,
    /// Attention maps per layer and head, and their rollout (Transformers).
    Attention,
}

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_enum)]
    method: MethodArg,
    #[command(flatten)]
    model: ModelSource,
    #[command(flatten)]
    sample: SampleSource,
    /// The layer Grad-CAM looks at (default: the last activation with a feature map, the last
    /// convolutional block's rectified output).
    #[arg(long)]
    layer: Option<String>,
    /// The class to explain (default: the predicted class).
    #[arg(long)]
    target: Option<usize>,
    /// The PNG to write (the overlay, or attention's grid); the JSON sidecar goes beside it
    /// (same name, .json), and attention's rollout as NAME-rollout.png or NAME.html.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: &Args) -> Result<()> {
    let loaded = inference::load(&args.model, Some(1))?;
    if args.method == MethodArg::Attention {
        return attention(args, &loaded);
    }
    let sample = loaded.sample(&args.sample)?;
    // A language model's prediction explained is that after the last character (of the text,
    // or of the test window); other models have one output row.
    let graph = &loaded.model.graph;
    let rows = graph.numel(loaded.model.output) / graph.shape(loaded.model.output).last().copied().unwrap_or(1).max(1);
    let row = match args.sample.text.as_deref() {
        Some(text) => loaded.window(text)?.1 - 1,
        None => rows - 1,
    };
    let layers = &loaded.config.layers;
    let (method, layer_name) = match args.method {
        MethodArg::Attention => unreachable!("returned above"),
        MethodArg::Saliency => (Method::Saliency, None),
        MethodArg::Gradcam => {
            let index = match &args.layer {
                Some(name) => layers.iter().position(|l| &l.name == name).with_context(|| {
                    let names: Vec<&str> = layers.iter().map(|l| l.name.as_str()).collect();
                    format!("--layer {name:?} is not a layer of this model; layers: {names:?}")
                })?,
                None => default_gradcam_layer(&loaded)?,
            };
            (Method::GradCam { layer: loaded.layers[index] }, Some(layers[index].name.clone()))
        }
    };
    let outputs = loaded.model.graph.shape(loaded.model.output).last().copied().unwrap_or(0);
    if let Some(t) = args.target.filter(|&t| t >= outputs) {
        bail!("--target {t} is not a class or output of this model (0..{outputs})");
    }
    let gpu = crate::train::open_device(args.model.device)?;
    let mut explainer = loaded.explainer(gpu.as_ref())?;
    let attribution = explainer.explain_row(&sample, method, row, args.target)?;
    let mut json = serde_json::json!({
        "method": format!("{:?}", args.method).to_lowercase(), "layer": layer_name, "target": attribution.target,
        "score": attribution.score, "probability": attribution.probabilities[attribution.target],
        "height": attribution.height, "width": attribution.width, "map": attribution.map,
    });
    let mut written = vec![args.out.display().to_string()];
    if loaded.test.sample_shape.len() == 3 {
        write_overlay(&args.out, &sample, &attribution.map, (attribution.height, attribution.width))?;
    } else {
        // A sequence: the map over its steps (and features), and a text highlighted by it.
        let (steps, features) = (attribution.height, attribution.width);
        let real = if args.sample.text.is_some() { row + 1 } else { steps };
        plots::sequence_map(&args.out, &attribution.map[..real * features], features)?;
        if let crate::dataset::Prepared::Text { vocabulary } = &loaded.prepared {
            let chars: Vec<char> = sample[..real].iter().map(|&id| vocabulary[id as usize]).collect();
            let weights: Vec<f64> = attribution.map[..real].iter().map(|&w| w as f64).collect();
            let html = beside(&args.out, "", "html");
            let what = "Saliency of the prediction after the last character: the stronger the background, the \
                        larger the gradient's norm at that character.";
            std::fs::write(&html, highlighted_html(&chars, &weights, what))
                .with_context(|| format!("writing {}", html.display()))?;
            json["tokens"] = chars.iter().collect::<String>().into();
            written.push(html.display().to_string());
        }
    }
    let sidecar = args.out.with_extension("json");
    std::fs::write(&sidecar, json.to_string()).with_context(|| format!("writing {}", sidecar.display()))?;
    written.push(sidecar.display().to_string());
    let explained = match loaded.prepared {
        crate::dataset::Prepared::Series { normalisation, .. } => {
            format!("forecast {:.4}", normalisation.invert(attribution.score))
        }
        _ => format!(
            "class {} (probability {:.2}%)",
            attribution.target,
            100.0 * attribution.probabilities[attribution.target]
        ),
    };
    println!("{explained}: {}", written.join(", "));
    Ok(())
}

/// The first channel of `sample` in grey under the map in turbo, blended half and half, scaled
/// up by a whole factor to at least 224 pixels a side.
fn write_overlay(path: &Path, sample: &[f32], map: &[f32], (h, w): (usize, usize)) -> Result<()> {
    let grey = normalise(&sample[..h * w]);
    let heat = normalise(map);
    let scale = 224usize.div_ceil(h.max(w)).max(1);
    let img = image::RgbImage::from_fn((w * scale) as u32, (h * scale) as u32, |x, y| {
        let i = (y as usize / scale) * w + x as usize / scale;
        let c = colorous::TURBO.eval_continuous(heat[i] as f64);
        let g = grey[i] * 255.0;
        let blend = |channel: u8| (0.5 * g + 0.5 * channel as f32).round() as u8;
        image::Rgb([blend(c.r), blend(c.g), blend(c.b)])
    });
    img.save(path).with_context(|| format!("writing {}", path.display()))
}

/// Values scaled to [0, 1] (all zeros when constant).
fn normalise(v: &[f32]) -> Vec<f32> {
    let (lo, hi) = v.iter().fold((f32::MAX, f32::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    v.iter().map(|&x| if hi > lo { (x - lo) / (hi - lo) } else { 0.0 }).collect()
}

/// `path` with `suffix` added to its stem and extension `extension`.
fn beside(path: &Path, suffix: &str, extension: &str) -> PathBuf {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!("{stem}{suffix}.{extension}"))
}

/// Grad-CAM's default layer: the last rectified feature map (an activation whose output is
/// [1, K, h, w]: the last convolutional block's output, after a residual block's sum), else
/// the last layer with a feature map. Grad-CAM wants the rectified map (on a raw convolution's
/// output ReLU(Σ α A) is often all 0), and config order alone would pick a residual block's
/// 1×1 shortcut projection.
fn default_gradcam_layer(loaded: &Loaded) -> Result<usize> {
    let layers = &loaded.config.layers;
    let spatial = |i: &usize| loaded.model.graph.shape(loaded.layers[*i]).len() == 4;
    let activation = |i: &usize| matches!(layers[*i].kind, LayerKind::Activation(_));
    let last = |keep: &dyn Fn(&usize) -> bool| (0..layers.len()).rev().find(|i| spatial(i) && keep(i));
    last(&activation).or_else(|| last(&|_| true)).context(
        "this model has no layer with a [1, K, h, w] feature map for Grad-CAM; pass --layer or use --method saliency",
    )
}

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
    let gpu = train::open_device(device)?;
    let mut exec = inference::executor(gpu.as_ref(), &loaded.params)?;
    let run = exec.prepare(&model.graph, Mode::Eval, &outputs)?;
    exec.run(run, &inference::feed(&loaded.test, sample), 0)?;
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
fn attention(args: &Args, loaded: &Loaded) -> Result<()> {
    if loaded.model.attention.is_empty() {
        bail!("this model has no attention layer; use --method gradcam or saliency");
    }
    let text = args.sample.text.as_deref();
    let (sample, real) = match text {
        Some(t) => {
            if loaded.model.attention.iter().any(|s| !s.causal) && loaded.window(t)?.1 < loaded.test.sample_len() {
                bail!(
                    "--text: this model's attention is not causal, so give a full window of {} characters",
                    loaded.test.sample_len()
                );
            }
            loaded.window(t)?
        }
        None => (loaded.sample(&args.sample)?, usize::MAX),
    };
    let maps = attention_maps(loaded, sample.clone(), real, args.model.device)?;
    plots::attention_grid(&args.out, &maps.iter().map(|(n, m)| (n.clone(), m)).collect::<Vec<_>>())?;
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
    let mut written = vec![args.out.display().to_string()];
    match (&flow, text) {
        (Some(flow), Some(_)) => {
            let chars: Vec<char> = match &loaded.prepared {
                crate::dataset::Prepared::Text { vocabulary } => {
                    sample[..t].iter().map(|&id| vocabulary[id as usize]).collect()
                }
                _ => unreachable!("a text model"),
            };
            // What flows into the last position, which predicts the next character.
            let weights = &flow[(t - 1) * t..];
            let html = beside(&args.out, "", "html");
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
            if let (Some(map), &[_, h, w]) = (class_token_map(flow, t), &loaded.test.sample_shape[..]) {
                let side = (t - 1).isqrt();
                let overlay = beside(&args.out, "-rollout", "png");
                write_overlay(&overlay, &sample, &bilinear(&map, side, side, h, w), (h, w))?;
                written.push(overlay.display().to_string());
            }
        }
        _ => {}
    }
    let json = args.out.with_extension("json");
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

/// Each character's share of the largest weight, in [0, 1].
fn shares(weights: &[f64]) -> Vec<f64> {
    let most = weights.iter().fold(f64::MIN_POSITIVE, |m, &w| m.max(w));
    weights.iter().map(|w| w / most).collect()
}

/// An HTML page of the text, each character's background as strong as its weight, under a
/// line saying `what` the weights are.
fn highlighted_html(chars: &[char], weights: &[f64], what: &str) -> String {
    let mut body = String::new();
    for (&c, share) in chars.iter().zip(shares(weights)) {
        let shown = match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '\n' => "↵\n".to_string(),
            c => c.to_string(),
        };
        body += &format!("<span style=\"background:rgba(255,96,0,{share:.3})\" title=\"{share:.4}\">{shown}</span>");
    }
    format!(
        "<!doctype html>\n<meta charset=\"utf-8\">\n<title>dlcli explain</title>\n\
         <p>{what}</p>\n<pre style=\"font-size:18px\">{body}</pre>\n"
    )
}

/// The text with 24-bit ANSI backgrounds, white to orange by weight.
fn highlighted_ansi(chars: &[char], weights: &[f64]) -> String {
    let blend = |share: f64, to: f64| (255.0 + share * (to - 255.0)).round() as u8;
    chars
        .iter()
        .zip(shares(weights))
        .map(|(&c, s)| {
            let c = if c == '\n' { '↵' } else { c };
            format!("\x1b[48;2;{};{};{}m\x1b[30m{c}\x1b[0m", blend(s, 255.0), blend(s, 96.0), blend(s, 0.0))
        })
        .collect()
}
