//! Attribution methods: what a trained model looks at. Gradient methods are built from the
//! graph's autodiff (the gradient of a class score with respect to the input or to a feature
//! map) and run on any executor in evaluation mode; attention maps and their rollout are
//! recomputed from a Transformer's queries and keys.

mod attention;
mod attribution;
mod integrated;
mod resize;

pub use attention::{AttentionMap, rollout};
pub use attribution::{Attribution, Explainer, Method};
pub use integrated::{Integrated, Rule};
pub use resize::bilinear;
