//! `dlcli explain`: a Grad-CAM or saliency map of one input, written as a PNG overlay (the
//! input in grey, the map in the turbo colormap, half and half) with a JSON sidecar holding
//! the raw map, the class explained, its score and probability.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use explain::{Attribution, Method};

use crate::config::LayerKind;
use crate::inference::{self, ModelSource, SampleSource};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MethodArg {
    Gradcam,
    Saliency,
}

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_enum)]
    method: MethodArg,
    #[command(flatten)]
    model: ModelSource,
    #[command(flatten)]
    sample: SampleSource,
    /// The layer Grad-CAM looks at (default: the last conv2d layer, after its activation).
    #[arg(long)]
    layer: Option<String>,
    /// The class to explain (default: the predicted class).
    #[arg(long)]
    target: Option<usize>,
    /// The overlay PNG to write; the JSON sidecar goes beside it (same name, .json).
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: &Args) -> Result<()> {
    let loaded = inference::load(&args.model, Some(1))?;
    let sample = loaded.sample(&args.sample)?;
    let layers = &loaded.config.layers;
    let (method, layer_name) = match args.method {
        MethodArg::Saliency => (Method::Saliency, None),
        MethodArg::Gradcam => {
            let index = match &args.layer {
                Some(name) => layers.iter().position(|l| &l.name == name).with_context(|| {
                    let names: Vec<&str> = layers.iter().map(|l| l.name.as_str()).collect();
                    format!("--layer {name:?} is not a layer of this model; layers: {names:?}")
                })?,
                // The last conv layer's activation when one follows it: Grad-CAM wants the
                // rectified feature map (on the raw conv output ReLU(Σ α A) is often all 0).
                None => {
                    let conv = layers.iter().rposition(|l| matches!(l.kind, LayerKind::Conv2d { .. })).context(
                        "this model has no conv2d layer for Grad-CAM; pass --layer or use --method saliency",
                    )?;
                    let activated = layers.get(conv + 1).is_some_and(|next| {
                        matches!(next.kind, LayerKind::Activation(_)) && next.inputs == [layers[conv].name.clone()]
                    });
                    if activated { conv + 1 } else { conv }
                }
            };
            (Method::GradCam { layer: loaded.layers[index] }, Some(layers[index].name.clone()))
        }
    };
    if let Some(t) = args.target.filter(|&t| t >= loaded.test.classes()) {
        bail!("--target {t} is not a class of this model (0..{})", loaded.test.classes());
    }
    let gpu = crate::train::open_device(args.model.device)?;
    let mut explainer = loaded.explainer(gpu.as_ref())?;
    let attribution = explainer.explain(&sample, method, args.target)?;
    write_overlay(&args.out, &sample, &attribution)?;
    let sidecar = args.out.with_extension("json");
    let json = serde_json::json!({
        "method": format!("{:?}", args.method).to_lowercase(), "layer": layer_name, "target": attribution.target,
        "score": attribution.score, "probability": attribution.probabilities[attribution.target],
        "height": attribution.height, "width": attribution.width, "map": attribution.map,
    });
    std::fs::write(&sidecar, json.to_string()).with_context(|| format!("writing {}", sidecar.display()))?;
    println!(
        "class {} (probability {:.2}%): {} and {}",
        attribution.target,
        100.0 * attribution.probabilities[attribution.target],
        args.out.display(),
        sidecar.display()
    );
    Ok(())
}

/// The first channel of `sample` in grey under the map in turbo, blended half and half, scaled
/// up by a whole factor to at least 224 pixels a side.
fn write_overlay(path: &std::path::Path, sample: &[f32], a: &Attribution) -> Result<()> {
    let (h, w) = (a.height, a.width);
    let grey = normalise(&sample[..h * w]);
    let heat = normalise(&a.map);
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
