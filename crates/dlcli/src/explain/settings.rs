//! The command line's method settings turned into an [`explain::Method`]. Each option is
//! declared once, here: its flag, its help, its default (for the defaults that depend on the
//! method or the input, the constants below, which `--help` quotes) and its check. Each default
//! is the anchor library's (Captum, pytorch-grad-cam, lime, shap) unless its help says why
//! not, and every setting a method used goes into the sidecar under its flag's name.

use std::path::Path;

use anyhow::{Context, Result, bail};
use clap::ValueEnum;
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use explain::{Baseline, Cam, Features, Grouping, Layout, Method, Occlusion, Rule, Smoothing};
use serde_json::{Value, json};

use crate::config::LayerKind;
use crate::context::Loaded;
use crate::task::Task;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MethodArg {
    /// |∂score/∂input| (Simonyan et al.; Captum's Saliency).
    Saliency,
    /// input × ∂score/∂input (Captum's InputXGradient).
    #[value(name = "input_x_gradient", alias = "input-x-gradient")]
    InputXGradient,
    /// Integrated Gradients from a baseline (Sundararajan et al.; Captum's IntegratedGradients).
    #[value(name = "integrated_gradients", alias = "integrated-gradients", alias = "ig")]
    IntegratedGradients,
    /// Saliency averaged over noisy copies (Smilkov et al.; Captum's NoiseTunnel).
    Smoothgrad,
    /// Grad-CAM on a convolutional feature map (pytorch-grad-cam's GradCAM).
    Gradcam,
    /// Grad-CAM++ (pytorch-grad-cam's GradCAMPlusPlus).
    #[value(name = "gradcam++", alias = "gradcam-plus-plus")]
    GradcamPlusPlus,
    /// The score's drop as a window slides over the input (Captum's Occlusion).
    Occlusion,
    /// A weighted ridge surrogate over feature groups (Ribeiro et al.; lime, Captum's Lime).
    Lime,
    /// Shapley values of feature groups by the Shapley kernel (Lundberg and Lee; shap).
    #[value(name = "kernel_shap", alias = "kernel-shap", alias = "shap")]
    KernelShap,
    /// Attention maps per layer and head, and their rollout (Transformers).
    Attention,
}

impl MethodArg {
    /// The name the command line, the sidecar and the report give it (its flag value).
    pub fn name(self) -> String {
        self.to_possible_value().map_or_else(String::new, |v| v.get_name().to_string())
    }

    /// Whether its map has a sign (for the class, against it) rather than a magnitude.
    pub fn signed(self) -> bool {
        !matches!(self, MethodArg::Saliency | MethodArg::Smoothgrad | MethodArg::Gradcam | MethodArg::GradcamPlusPlus)
    }

    /// Whether it runs the model many times (and its explainer in batches).
    pub fn many_passes(self) -> bool {
        matches!(
            self,
            MethodArg::IntegratedGradients
                | MethodArg::Smoothgrad
                | MethodArg::Occlusion
                | MethodArg::Lime
                | MethodArg::KernelShap
        )
    }
}

/// A flag whose value names one of a few values of a type (of the explain crate's, which
/// knows no command line): the names and their help declared once here, read straight into
/// the type.
pub trait Choice: Copy + Send + Sync + 'static {
    /// Each value's name on the command line, the value, and its help.
    const CHOICES: &'static [(&'static str, Self, &'static str)];

    fn name(self) -> &'static str
    where
        Self: PartialEq,
    {
        Self::CHOICES.iter().find(|(_, v, _)| *v == self).map_or("", |(n, ..)| n)
    }
}

/// The parser of a [`Choice`] flag: its names, each with its help in `--help`.
fn choice<T: Choice>() -> impl TypedValueParser<Value = T> {
    let values = T::CHOICES.iter().map(|&(name, _, help)| PossibleValue::new(name).help(help));
    let pick = |name: String| T::CHOICES.iter().find(|(n, ..)| *n == name).map(|&(_, v, _)| v);
    PossibleValuesParser::new(values).map(move |name| pick(name).expect("clap let through one of the names"))
}

impl Choice for Rule {
    const CHOICES: &'static [(&'static str, Rule, &'static str)] = &[
        ("gauss-legendre", Rule::GaussLegendre, "Gauss-Legendre nodes and weights (Captum's default)"),
        (
            "riemann-trapezoid",
            Rule::RiemannTrapezoid,
            "the textbook trapezoid, whose weights sum to 1; Captum's riemann_trapezoid weights sum to (n-1)/n, so \
             these attributions are n/(n-1) of Captum's (50/49 at 50 steps) and add up to the score's change",
        ),
        ("riemann-left", Rule::RiemannLeft, "left Riemann sums, as Captum's"),
        ("riemann-right", Rule::RiemannRight, "right Riemann sums, as Captum's"),
        ("riemann-middle", Rule::RiemannMiddle, "midpoint Riemann sums, as Captum's"),
    ];
}

impl Choice for Smoothing {
    const CHOICES: &'static [(&'static str, Smoothing, &'static str)] = &[
        ("mean", Smoothing::Mean, "the mean of the saliency maps (Captum's smoothgrad)"),
        ("squared", Smoothing::Squared, "the mean of their squares (Captum's smoothgrad_sq)"),
        ("variance", Smoothing::Variance, "their variance (Captum's vargrad)"),
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FeaturesArg {
    /// SLIC superpixels of an image (the default for images).
    Superpixels,
    /// Square cells of an image or a series.
    Grid,
    /// Runs of time steps of a series (the default for series).
    Segments,
    /// Each character of a text (the default for text).
    Chars,
    /// Each word of a text, and each run of spaces.
    Words,
}

/// The defaults that depend on the method or the input, which `--help` quotes.
mod default {
    /// SmoothGrad's noisy copies (Smilkov et al.).
    pub const SMOOTHGRAD_DRAWS: usize = 50;
    /// LIME's perturbations (the lime package's `num_samples`).
    pub const LIME_DRAWS: usize = 1000;
    /// KernelSHAP's coalitions beyond twice the groups (shap's "auto": 2 × groups + 2048).
    pub const SHAP_DRAWS_BEYOND_GROUPS: usize = 2048;
    /// SLIC superpixels of an image (the lime package's quickshift gives about as many).
    pub const SUPERPIXELS: usize = 50;
    /// Grid cells.
    pub const GRID_CELLS: usize = 49;
    /// Segments of a series.
    pub const SEGMENTS: usize = 12;
    /// An occlusion window's side, as a share of an image's longer side.
    pub const WINDOW_SHARE: usize = 8;
    /// A blurred baseline's deviation, in pixels or steps.
    pub const BLUR_SIGMA: f32 = 5.0;
}

fn draws_help() -> String {
    format!(
        "Samples drawn: SmoothGrad's noisy copies (default {}, Smilkov et al.), LIME's perturbations (default {}, \
         the lime package's), KernelSHAP's coalitions (default 2 × groups + {}, shap's \"auto\")",
        default::SMOOTHGRAD_DRAWS,
        default::LIME_DRAWS,
        default::SHAP_DRAWS_BEYOND_GROUPS
    )
}

fn segments_help() -> String {
    format!(
        "How many groups: superpixels (default {}), grid cells (default {}) or series segments (default {})",
        default::SUPERPIXELS,
        default::GRID_CELLS,
        default::SEGMENTS
    )
}

fn window_help() -> String {
    format!(
        "Occlusion's window in positions, HxW (default: 1/{} of an image's side; 1 step of every feature of a \
         series; 1 character)",
        default::WINDOW_SHARE
    )
}

fn baseline_help() -> String {
    format!(
        "What \"absent\" is, for integrated_gradients, occlusion, lime, kernel_shap and --check: zeros (for \
         normalised images, the dataset's mean), blur[:SIGMA] (a Gaussian blur of the input, SIGMA in pixels or \
         steps, default {}), uniform (noise over the input's range), or a file: an image, or a .npy array of the \
         model's input shape",
        default::BLUR_SIGMA
    )
}

/// The method options of `dlcli explain`.
#[derive(clap::Args, Debug, Clone)]
pub struct Settings {
    /// The layer Grad-CAM looks at (default: the last activation with a feature map, the last
    /// convolutional block's rectified output, as pytorch-grad-cam's users pick it).
    #[arg(long)]
    pub layer: Option<String>,
    #[arg(long, default_value = "zeros", help = baseline_help())]
    pub baseline: String,
    /// Integrated Gradients' points on the path (Captum's default).
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    /// Integrated Gradients' quadrature.
    #[arg(long, value_parser = choice::<Rule>(), default_value = Rule::GaussLegendre.name())]
    pub rule: Rule,
    /// SmoothGrad's noise deviation as a fraction of the input's range (Smilkov et al.
    /// recommend 0.1 to 0.2; Captum takes a deviation in the input's units).
    #[arg(long, default_value_t = 0.15)]
    pub noise: f32,
    /// SmoothGrad's form.
    #[arg(long, value_parser = choice::<Smoothing>(), default_value = Smoothing::Mean.name())]
    pub smoothing: Smoothing,
    #[arg(long, help = draws_help())]
    pub draws: Option<usize>,
    #[arg(long, help = window_help())]
    pub window: Option<String>,
    /// Occlusion's stride, HxW or one number (default: half the window).
    #[arg(long)]
    pub stride: Option<String>,
    /// How lime and kernel_shap group the input.
    #[arg(long, value_enum)]
    pub features: Option<FeaturesArg>,
    #[arg(long, help = segments_help())]
    pub segments: Option<usize>,
    /// kernel_shap switches groups off to N samples of the training set in turn (its
    /// expected value over them), instead of to --baseline.
    #[arg(long, default_value_t = 0)]
    pub background: usize,
    /// Seeds every sampling method (SmoothGrad's noise, LIME's and SHAP's draws, uniform
    /// baselines, the background, --check's random orders).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl Settings {
    /// The ranges the options must lie in, whichever method reads them.
    pub fn check(&self) -> Result<()> {
        if self.steps == 0 {
            bail!("--steps 0: Integrated Gradients needs at least 1 point on the path");
        }
        if !(self.noise.is_finite() && self.noise >= 0.0) {
            bail!("--noise {}: give a fraction of the input's range, such as 0.15", self.noise);
        }
        if self.draws == Some(0) {
            bail!("--draws 0: give at least 1 sample");
        }
        if self.segments == Some(0) {
            bail!("--segments 0: give at least 1 group");
        }
        Ok(())
    }
}

/// A method resolved for one model: what the explainer runs and what the sidecar says.
pub struct Resolved {
    pub method: Method,
    pub settings: Value,
    /// Grad-CAM's layer by its config name.
    pub layer: Option<String>,
}

/// The model a method is resolved for: loaded, its task, and how its explained input lies.
pub struct Model<'a> {
    pub loaded: &'a Loaded,
    pub task: &'a dyn Task,
    pub layout: Layout,
}

impl Model<'_> {
    /// Whether the inputs are text (token ids): what --features and the defaults go by.
    fn is_text(&self) -> bool {
        self.task.decodes().is_some()
    }
}

/// The method `arg` with `settings` (checked) for `model`, explaining `sample` (`real` of its
/// positions real, of a text: the rest padding).
pub fn resolve(arg: MethodArg, s: &Settings, model: &Model, sample: &[f32], real: usize) -> Result<Resolved> {
    let (method, settings) = match arg {
        MethodArg::Attention => unreachable!("attention has its own command path"),
        MethodArg::Saliency => (Method::Saliency, json!({})),
        MethodArg::InputXGradient => (Method::InputXGradient, json!({})),
        MethodArg::IntegratedGradients => {
            let settings = json!({"baseline": s.baseline, "steps": s.steps, "rule": s.rule.name()});
            (Method::IntegratedGradients { baseline: baseline(s, model)?, steps: s.steps, rule: s.rule }, settings)
        }
        MethodArg::Smoothgrad => {
            let draws = s.draws.unwrap_or(default::SMOOTHGRAD_DRAWS);
            let (noise, smoothing, seed) = (s.noise, s.smoothing, s.seed);
            let settings = json!({"noise": noise, "draws": draws, "smoothing": smoothing.name(), "seed": seed});
            (Method::SmoothGrad { noise, draws, smoothing, seed }, settings)
        }
        MethodArg::Gradcam | MethodArg::GradcamPlusPlus => {
            let cam = if arg == MethodArg::Gradcam { Cam::GradCam } else { Cam::GradCamPlusPlus };
            let (name, layer) = cam_layer(s, model.loaded)?;
            let method = Method::Cam { cam, layer };
            return Ok(Resolved { method, settings: json!({"layer": name}), layer: Some(name) });
        }
        MethodArg::Occlusion => occlusion(s, model)?,
        MethodArg::Lime | MethodArg::KernelShap => perturbation(arg, s, model, sample, real)?,
    };
    Ok(Resolved { method, settings, layer: None })
}

/// Grad-CAM's layer, `--layer` or the default, by its config name and its tensor: a feature map.
fn cam_layer(s: &Settings, loaded: &Loaded) -> Result<(String, graph::TensorId)> {
    let layers = &loaded.config.layers;
    let index = match &s.layer {
        Some(name) => layers.iter().position(|l| &l.name == name).with_context(|| {
            let names: Vec<&str> = layers.iter().map(|l| l.name.as_str()).collect();
            format!("--layer {name:?} is not a layer of this model; layers: {names:?}")
        })?,
        None => default_cam_layer(loaded)?,
    };
    let (name, tensor) = (layers[index].name.clone(), loaded.layers[index]);
    if loaded.model.graph.shape(tensor).len() != 4 {
        bail!(
            "--layer {name:?} gives {:?}, not a [batch, channels, height, width] feature map for a class \
             activation map; pick a convolutional layer",
            loaded.model.graph.shape(tensor)
        );
    }
    Ok((name, tensor))
}

/// Occlusion's window and stride, from the flags or the input's defaults.
fn occlusion(s: &Settings, model: &Model) -> Result<(Method, Value)> {
    let layout = model.layout;
    let default = match (model.is_text(), layout.channels_first) {
        (_, true) => {
            let side = layout.height.max(layout.width).div_ceil(default::WINDOW_SHARE).max(1);
            (side.min(layout.height), side.min(layout.width))
        }
        (false, _) => (1, layout.width),
        (true, _) => (1, 1),
    };
    let window = s.window.as_ref().map_or(Ok(default), |text| pair("--window", text, layout))?;
    let half = ((window.0 / 2).max(1), (window.1 / 2).max(1));
    let stride = s.stride.as_ref().map_or(Ok(half), |text| pair("--stride", text, layout))?;
    let settings = json!({"window": [window.0, window.1], "stride": [stride.0, stride.1], "baseline": s.baseline});
    Ok((Method::Occlusion { occlusion: Occlusion { window, stride }, baseline: baseline(s, model)? }, settings))
}

/// LIME or KernelSHAP over the sample's feature groups.
fn perturbation(arg: MethodArg, s: &Settings, model: &Model, sample: &[f32], real: usize) -> Result<(Method, Value)> {
    let (grouping, named) = grouping(s, model, sample, real)?;
    let features = grouping.features(sample, model.layout);
    let groups = features.count;
    let (grouping, baseline, seed) = (Grouping::Given(features), baseline(s, model)?, s.seed);
    let mut settings = json!({"features": named, "groups": groups, "baseline": s.baseline, "seed": seed});
    let method = if arg == MethodArg::Lime {
        let draws = s.draws.unwrap_or(default::LIME_DRAWS);
        let (kernel_width, ridge_alpha) = explain::LIME_KERNEL;
        settings["kernel_width"] = kernel_width.into();
        settings["ridge_alpha"] = ridge_alpha.into();
        settings["draws"] = draws.into();
        Method::Lime { grouping, draws, baseline, seed }
    } else {
        let draws = s.draws.unwrap_or(2 * groups + default::SHAP_DRAWS_BEYOND_GROUPS);
        let background = background_samples(model, s.background, seed)?;
        settings["background"] = s.background.into();
        settings["draws"] = draws.into();
        Method::KernelShap { grouping, draws, baseline, background, seed }
    };
    Ok((method, settings))
}

/// `--window`/`--stride` as (height, width): "HxW", or one number for both (a text's or a
/// series' width is then all of it).
fn pair(flag: &str, text: &str, layout: Layout) -> Result<(usize, usize)> {
    let number = |t: &str| t.trim().parse::<usize>().ok().filter(|&n| n > 0);
    let parsed = match text.split_once(['x', 'X']) {
        Some((h, w)) => number(h).zip(number(w)),
        None => number(text).map(|n| (n, if layout.channels_first { n } else { layout.width })),
    };
    let Some((h, w)) = parsed else { bail!("{flag} {text:?}: give HxW in positions, such as 4x4, or one number") };
    if h > layout.height || w > layout.width {
        bail!("{flag} {h}x{w} is larger than the input's {}x{} positions", layout.height, layout.width);
    }
    Ok((h, w))
}

/// `--baseline`: a keyword or a file.
pub fn baseline(s: &Settings, model: &Model) -> Result<Baseline> {
    let (loaded, layout) = (model.loaded, model.layout);
    let text = s.baseline.as_str();
    Ok(match text.split_once(':').map_or((text, None), |(k, v)| (k, Some(v))) {
        ("zeros", None) => Baseline::Zeros,
        ("uniform", None) => Baseline::Uniform { seed: s.seed },
        ("blur", sigma) => {
            let sigma = match sigma.map(str::parse::<f32>) {
                None => default::BLUR_SIGMA,
                Some(Ok(v)) if v.is_finite() && v > 0.0 => v,
                Some(_) => bail!("--baseline {text:?}: blur's deviation must be a positive number, as in blur:3"),
            };
            Baseline::Blur { sigma }
        }
        _ => {
            let path = Path::new(text);
            if !path.exists() {
                bail!("--baseline {text:?}: give zeros, blur[:SIGMA], uniform, or an existing image or .npy file");
            }
            if model.is_text() {
                bail!("--baseline {text:?}: a text model's baseline is zeros, blur or uniform over its embeddings");
            }
            let values = match path.extension().and_then(|e| e.to_str()) {
                Some("npy") => {
                    let (shape, values) = crate::npy::read(path)?;
                    if values.len() != layout.len() {
                        bail!("--baseline {text}: shape {shape:?}, but the model takes {:?}", loaded.test.sample_shape);
                    }
                    values
                }
                _ => {
                    let image = crate::task::SampleSource { input: vec![path.to_owned()], ..Default::default() };
                    model.task.sample(&image, &loaded.test)?.values
                }
            };
            Baseline::Given(values)
        }
    })
}

/// The feature groups of `--features` and `--segments`, and their name for the sidecar.
fn grouping(s: &Settings, model: &Model, sample: &[f32], real: usize) -> Result<(Grouping, String)> {
    let (text, layout) = (model.task.text(sample), model.layout);
    let image = layout.channels_first;
    let kind = s.features.unwrap_or(match (image, &text) {
        (true, _) => FeaturesArg::Superpixels,
        (false, Some(_)) => FeaturesArg::Chars,
        (false, None) => FeaturesArg::Segments,
    });
    let fits = match kind {
        FeaturesArg::Superpixels => image,
        FeaturesArg::Grid => text.is_none(),
        FeaturesArg::Segments => !image,
        FeaturesArg::Chars | FeaturesArg::Words => text.is_some(),
    };
    let named = kind.to_possible_value().map_or_else(String::new, |v| v.get_name().to_string());
    if !fits {
        bail!(
            "--features {named} does not fit this model's input; images take superpixels or grid, series segments or grid, text chars or words"
        );
    }
    let grouping = match kind {
        FeaturesArg::Superpixels => Grouping::Superpixels(s.segments.unwrap_or(default::SUPERPIXELS)),
        FeaturesArg::Grid => {
            let cells = s.segments.unwrap_or(default::GRID_CELLS) as f64;
            let side = ((layout.positions() as f64 / cells).sqrt().ceil() as usize).max(1);
            Grouping::Grid(side.min(layout.height), if image { side.min(layout.width) } else { layout.width })
        }
        FeaturesArg::Segments => Grouping::Segments(s.segments.unwrap_or(default::SEGMENTS).min(layout.height)),
        FeaturesArg::Chars | FeaturesArg::Words => {
            let chars = text.expect("checked above");
            Grouping::Given(Features::from_groups(&text_groups(&chars, real, kind == FeaturesArg::Words)))
        }
    };
    Ok((grouping, named))
}

/// A group per character (or per word and per run of whitespace) of the `real` characters,
/// the padding after them one more group.
fn text_groups(chars: &[char], real: usize, words: bool) -> Vec<usize> {
    let mut group = Vec::with_capacity(chars.len());
    for (p, &c) in chars.iter().enumerate() {
        let id = match p {
            0 => 0,
            p if p >= real => real,
            p if words && chars[p - 1].is_whitespace() == c.is_whitespace() => group[p - 1],
            p => group[p - 1] + 1,
        };
        group.push(id);
    }
    group
}

/// `count` training samples drawn with `seed` (none for 0).
fn background_samples(model: &Model, count: usize, seed: u64) -> Result<Vec<Vec<f32>>> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let config = &model.loaded.config;
    let (data, _) = crate::task::load(&config.data, config.train.seed)?;
    let train = data.epoch(seed, 0);
    let mut order: Vec<usize> = (0..train.len()).collect();
    data::shuffle(&mut order, seed);
    Ok(order.iter().take(count).map(|&i| train.sample(i).to_vec()).collect())
}

/// Every attribution method that applies to `loaded`: all of them but the class activation
/// maps, which need a feature map [B, K, h, w] (attention maps are not attributions).
pub fn applicable(loaded: &Loaded) -> Vec<MethodArg> {
    let cam = default_cam_layer(loaded).is_ok();
    let applies = |m: &&MethodArg| match m {
        MethodArg::Attention => false,
        MethodArg::Gradcam | MethodArg::GradcamPlusPlus => cam,
        _ => true,
    };
    MethodArg::value_variants().iter().filter(applies).copied().collect()
}

/// Grad-CAM's default layer: the last rectified feature map (an activation whose output is
/// [B, K, h, w]: the last convolutional block's output, after a residual block's sum), else
/// the last layer with a feature map. Grad-CAM wants the rectified map (on a raw convolution's
/// output ReLU(Σ α A) is often all 0), and config order alone would pick a residual block's
/// 1×1 shortcut projection.
fn default_cam_layer(loaded: &Loaded) -> Result<usize> {
    let layers = &loaded.config.layers;
    let spatial = |i: &usize| loaded.model.graph.shape(loaded.layers[*i]).len() == 4;
    let activation = |i: &usize| matches!(layers[*i].kind, LayerKind::Activation(_));
    let last = |keep: &dyn Fn(&usize) -> bool| (0..layers.len()).rev().find(|i| spatial(i) && keep(i));
    last(&activation).or_else(|| last(&|_| true)).context(
        "this model has no layer with a [batch, K, h, w] feature map for a class activation map; pass --layer or use \
         --method saliency",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_spaces_are_groups_and_padding_is_one() {
        let chars: Vec<char> = "to be  or\0\0".chars().collect();
        assert_eq!(text_groups(&chars, 9, true), [0, 0, 1, 2, 2, 3, 3, 4, 4, 9, 9]);
        assert_eq!(text_groups(&chars, 3, false), [0, 1, 2, 3, 3, 3, 3, 3, 3, 3, 3]);
    }
}
