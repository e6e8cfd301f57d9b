//! Every method behind one call: [`Explainer::explain`] takes a sample of the model's input
//! and a [`Method`] with its settings, and returns the raw attribution in the explained
//! input's layout (Captum's output), a map over the input's positions to look at, and the
//! figures that say how far to trust it.

use graph::{Executor, Result, TensorId};

use crate::explainer::{argmax, softmax};
use crate::lime::{lime_masks, shapley_masks};
use crate::{Baseline, Cam, Explainer, Features, Layout, Occlusion, Rule, Smoothing, Target, bilinear, gaussian_noise};

/// LIME's kernel width (the `lime` package's default for images) and ridge strength
/// (scikit-learn's `Ridge()`, which the `lime` package fits).
pub const LIME_KERNEL: (f64, f64) = (0.25, 1.0);

/// How perturbation methods group the explained input's positions.
#[derive(Debug, Clone, PartialEq)]
pub enum Grouping {
    /// About this many SLIC superpixels of an image.
    Superpixels(usize),
    /// Cells of (height, width) positions.
    Grid(usize, usize),
    /// This many runs of consecutive steps (series) or positions (text).
    Segments(usize),
    /// Groups worked out by the caller (a text's words).
    Given(Features),
}

impl Grouping {
    /// The groups of `sample` (an explained input) laid out as `layout`.
    pub fn features(&self, sample: &[f32], layout: Layout) -> Features {
        match self {
            Grouping::Superpixels(count) => Features::slic(sample, layout, *count, SLIC_COMPACTNESS),
            Grouping::Grid(h, w) => Features::grid(layout, (*h, *w)),
            Grouping::Segments(count) => Features::segments(layout, *count),
            Grouping::Given(features) => features.clone(),
        }
    }
}

/// How much SLIC weighs closeness in place against closeness in value (values scaled to
/// [0, 1]): small enough that superpixels follow strokes and edges.
const SLIC_COMPACTNESS: f32 = 0.2;

/// A method and its settings.
#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    /// |∂score/∂input|.
    Saliency,
    /// input × ∂score/∂input.
    InputXGradient,
    /// The path integral of the gradient from `baseline` to the input, by `rule` at `steps` points.
    IntegratedGradients {
        /// Where the path starts.
        baseline: Baseline,
        /// Gradients taken on the path.
        steps: usize,
        /// The quadrature.
        rule: Rule,
    },
    /// Saliency over `draws` noisy copies, the noise's deviation `noise` times the input's
    /// range (Smilkov et al.'s noise level).
    SmoothGrad {
        /// The noise's deviation, as a fraction of the input's range.
        noise: f32,
        /// Noisy copies.
        draws: usize,
        /// How their maps combine.
        smoothing: Smoothing,
        /// Seeds the noise.
        seed: u64,
    },
    /// Grad-CAM or Grad-CAM++ on feature map `layer`.
    Cam {
        /// Which map.
        cam: Cam,
        /// The feature map [B, K, h, w].
        layer: TensorId,
    },
    /// The score's drop as a window of the input is set to the baseline.
    Occlusion {
        /// The window and its stride.
        occlusion: Occlusion,
        /// What the window is set to.
        baseline: Baseline,
    },
    /// A weighted ridge surrogate of the score over feature groups switched on and off.
    Lime {
        /// The groups.
        grouping: Grouping,
        /// Perturbations drawn.
        draws: usize,
        /// What a group switched off is.
        baseline: Baseline,
        /// Seeds the draws.
        seed: u64,
    },
    /// KernelSHAP, groups switched off to each of `background` (samples of the model's
    /// input) in turn, or to `baseline` when there is no background.
    KernelShap {
        /// The groups.
        grouping: Grouping,
        /// Coalitions drawn.
        draws: usize,
        /// What a group switched off is, without a background.
        baseline: Baseline,
        /// Samples a group switched off takes in turn.
        background: Vec<Vec<f32>>,
        /// Seeds the draws.
        seed: u64,
    },
}

impl Method {
    /// How the map over positions is read off the raw attribution.
    fn reduction(&self) -> Reduction {
        match self {
            Method::Saliency | Method::SmoothGrad { .. } => Reduction::Magnitude,
            Method::InputXGradient | Method::IntegratedGradients { .. } => Reduction::Sum,
            Method::Occlusion { .. } | Method::Lime { .. } | Method::KernelShap { .. } => Reduction::First,
            Method::Cam { .. } => Reduction::Upsampled,
        }
    }
}

/// How one position's values become one number of the map.
enum Reduction {
    /// The largest over an image's channels (Simonyan et al.), the L2 norm over a token's
    /// embedding.
    Magnitude,
    /// Their sum, signed: additive attributions (Captum's visualisation sums channels).
    Sum,
    /// A group method gives every value of a position the same attribution.
    First,
    /// A class activation map, resized to the input bilinearly.
    Upsampled,
}

/// An attribution of one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribution {
    /// The method's own output, row-major in `shape`: the explained input's shape (a
    /// class activation map's is the feature map's [h, w]).
    pub values: Vec<f32>,
    /// `values`' shape.
    pub shape: Vec<usize>,
    /// [height, width] over the input's positions, signed where the method is.
    pub map: Vec<f32>,
    /// The map's height, in positions.
    pub height: usize,
    /// The map's width, in positions.
    pub width: usize,
    /// What was explained.
    pub target: Target,
    /// The target's logit (or output) for the sample, and the softmax of its row.
    pub score: f32,
    /// The softmax of the explained row.
    pub probabilities: Vec<f32>,
    /// What says how far to trust it: a completeness gap, a surrogate's R², ...
    pub figures: Vec<(&'static str, f64)>,
    /// A perturbation method's groups and their weights.
    pub groups: Option<(Features, Vec<f64>)>,
}

impl<E: Executor> Explainer<E> {
    /// The attribution of `sample` (of the model's input: values, or token ids as f32) by
    /// `method` for class `class` of output row `row` (the predicted class when None).
    pub fn explain(
        &mut self,
        sample: &[f32],
        method: &Method,
        row: usize,
        class: Option<usize>,
    ) -> Result<Attribution> {
        let x = self.encode(sample)?;
        let classes = self.classes();
        let logits = self.logits(&[&x])?.remove(0);
        let logits = &logits[row * classes..(row + 1) * classes];
        let target = Target { row, class: class.unwrap_or_else(|| argmax(logits)).min(classes - 1) };
        let layout = self.layout();
        let mut figures = Vec::new();
        let mut groups = None;
        let mut shape = layout.shape();
        let values = match method {
            Method::Saliency => self.saliency(&x, target)?,
            Method::InputXGradient => self.input_x_gradient(&x, target)?,
            Method::IntegratedGradients { baseline, steps, rule } => {
                let ig = self.integrated_gradients(&x, &baseline.of(&x, layout), *steps, *rule, target)?;
                let difference = (ig.score - ig.baseline_score) as f64;
                figures.push(("baseline_score", ig.baseline_score as f64));
                figures.push(("completeness_gap", ig.completeness_gap as f64));
                figures.push(("relative_completeness_gap", ig.completeness_gap as f64 / difference.abs().max(1e-12)));
                ig.attributions
            }
            Method::SmoothGrad { noise, draws, smoothing, seed } => {
                let (lo, hi) = x.iter().fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
                let sigma = noise * (hi - lo);
                figures.push(("sigma", sigma as f64));
                self.smoothgrad(&x, &gaussian_noise(x.len(), *draws, sigma, *seed), *smoothing, target)?
            }
            Method::Cam { cam, layer } => {
                let map = self.cam(&x, *cam, *layer, target)?;
                shape = vec![map.height, map.width];
                map.map
            }
            Method::Occlusion { occlusion, baseline } => {
                self.occlusion(&x, &baseline.of(&x, layout), *occlusion, target)?
            }
            Method::Lime { grouping, draws, baseline, seed } => {
                let features = grouping.features(&x, layout);
                let masks = lime_masks(features.count, *draws, *seed);
                let fit = self.lime(&x, &baseline.of(&x, layout), &features, &masks, LIME_KERNEL, target)?;
                figures.push(("surrogate_r2", fit.r2));
                figures.push(("surrogate_intercept", fit.intercept));
                let values = features.spread(&fit.weights, layout);
                groups = Some((features, fit.weights));
                values
            }
            Method::KernelShap { grouping, draws, baseline, background, seed } => {
                let features = grouping.features(&x, layout);
                let masks = shapley_masks(features.count, *draws, *seed);
                let backgrounds = match background.is_empty() {
                    true => vec![baseline.of(&x, layout)],
                    false => background.iter().map(|b| self.encode(b)).collect::<Result<_>>()?,
                };
                let shap = self.kernel_shap(&x, &backgrounds, &features, &masks, target)?;
                let total: f64 = shap.values.iter().sum();
                figures.push(("expected_score", shap.expected));
                figures.push(("additivity_gap", (total - (shap.score - shap.expected)).abs()));
                let values = features.spread(&shap.values, layout);
                groups = Some((features, shap.values));
                values
            }
        };
        let map = reduce(&values, &shape, layout, method.reduction(), self.is_tokens());
        Ok(Attribution {
            values,
            shape,
            map,
            height: layout.height,
            width: layout.width,
            target,
            score: logits[target.class],
            probabilities: softmax(logits),
            figures,
            groups,
        })
    }
}

/// The map over `layout`'s positions of raw attributions `values` (of shape `shape`).
fn reduce(values: &[f32], shape: &[usize], layout: Layout, reduction: Reduction, tokens: bool) -> Vec<f32> {
    if let Reduction::Upsampled = reduction {
        return bilinear(values, shape[0], shape[1], layout.height, layout.width);
    }
    let position = |p: usize| (0..layout.depth).map(move |d| values[layout.index(p, d)]);
    (0..layout.positions())
        .map(|p| match reduction {
            Reduction::Magnitude if tokens => position(p).map(|v| v * v).sum::<f32>().sqrt(),
            Reduction::Magnitude => position(p).map(f32::abs).fold(0.0, f32::max),
            Reduction::Sum => position(p).sum(),
            Reduction::First | Reduction::Upsampled => values[layout.index(p, 0)],
        })
        .collect()
}
