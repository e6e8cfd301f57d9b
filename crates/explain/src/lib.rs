//! Attribution methods: what a trained model looks at. An [`Explainer`] prepares a model's
//! graph for attribution on any executor (gradients by autodiff, many passes as batches);
//! each method lives in its own file: the gradient family (saliency, input × gradient,
//! SmoothGrad, Integrated Gradients), class activation maps (Grad-CAM, Grad-CAM++) and the
//! perturbation family (occlusion, LIME, KernelSHAP). Attention maps and their rollout are
//! recomputed from a Transformer's queries and keys. The checks says whether a map is faithful:
//! cascading randomisation of the model, deletion and insertion curves.

#![cfg_attr(not(test), warn(clippy::too_many_lines))]
#![warn(missing_docs)]

mod attention;
mod baseline;
mod cam;
mod check;
mod explainer;
mod features;
mod gradient;
mod integrated;
mod lime;
mod method;
mod occlusion;
mod resize;
mod surrogate;

pub use attention::{AttentionMap, rollout};
pub use baseline::{Baseline, gaussian_blur};
pub use cam::{Cam, CamMap};
pub use check::{Curves, FAITHFUL_MARGIN, INSENSITIVE, Stage, spearman};
pub use explainer::{Explainer, Layout, Target, softmax};
pub use features::Features;
pub use gradient::{Smoothing, gaussian_noise};
pub use integrated::{Integrated, Rule};
pub use lime::{Masks, Shapley, lime_masks, lime_weight, shapley_masks};
pub use method::{Attribution, Grouping, LIME_KERNEL, Method};
pub use occlusion::Occlusion;
pub use resize::bilinear;
pub use surrogate::Surrogate;
