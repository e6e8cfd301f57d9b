//! Attribution methods: what a trained model looks at. Each method is built from the graph's
//! autodiff (the gradient of a class score with respect to the input or to a feature map)
//! and run on the CPU executor in evaluation mode.

mod attribution;
mod resize;

pub use attribution::{Attribution, Explainer, Method};
pub use resize::bilinear;
