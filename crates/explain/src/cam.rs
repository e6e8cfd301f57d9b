//! Class activation maps of a convolutional feature map A [K, h, w]: ReLU(Σ_k α_k A_k), the
//! channel weights α from the score's gradient by A. Grad-CAM (Selvaraju et al. 2017) takes
//! the gradient's spatial mean; Grad-CAM++ (Chattopadhyay et al. 2018) weights the positive
//! gradients by a_ij = g² / (2g² + Σ A · g³), as pytorch-grad-cam computes it.

use graph::{Executor, GraphError, Result, TensorId};

use crate::{Explainer, Target};

/// Which class activation map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cam {
    /// Grad-CAM: each channel weighed by its mean gradient (Selvaraju et al.).
    GradCam,
    /// Grad-CAM++: each channel weighed by its positive gradients' higher-order weights (Chattopadhay et al.).
    GradCamPlusPlus,
}

/// A map at the feature map's resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct CamMap {
    /// [height, width], row-major.
    pub map: Vec<f32>,
    /// The feature map's height.
    pub height: usize,
    /// The feature map's width.
    pub width: usize,
}

impl Cam {
    /// The weight of each of `channels` from its gradient and activations over `positions`.
    fn weights(self, activations: &[f32], grads: &[f32], channels: usize, positions: usize) -> Vec<f64> {
        (0..channels)
            .map(|k| {
                let g = &grads[k * positions..(k + 1) * positions];
                match self {
                    Cam::GradCam => g.iter().map(|&v| v as f64).sum::<f64>() / positions as f64,
                    Cam::GradCamPlusPlus => {
                        let a = &activations[k * positions..(k + 1) * positions];
                        let sum_a: f64 = a.iter().map(|&v| v as f64).sum();
                        g.iter()
                            .filter(|&&v| v != 0.0)
                            .map(|&v| {
                                let (g2, g3) = ((v as f64).powi(2), (v as f64).powi(3));
                                v.max(0.0) as f64 * g2 / (2.0 * g2 + sum_a * g3 + 1e-6)
                            })
                            .sum()
                    }
                }
            })
            .collect()
    }
}

impl<E: Executor> Explainer<E> {
    /// The class activation map of `sample` on feature map `layer` ([B, K, h, w]).
    pub fn cam(&mut self, sample: &[f32], cam: Cam, layer: TensorId, target: Target) -> Result<CamMap> {
        let &[_, channels, height, width] = self.graph().shape(layer) else {
            return Err(GraphError::Shape {
                node: self.graph().label(layer).to_string(),
                detail: format!(
                    "a class activation map needs a [B, K, h, w] feature map, not {:?}",
                    self.graph().shape(layer)
                ),
            });
        };
        let (activations, grads) = self.activations_and_gradients(sample, layer, target)?;
        let positions = height * width;
        let weights = cam.weights(&activations, &grads, channels, positions);
        let mut map = vec![0f64; positions];
        for (k, alpha) in weights.iter().enumerate() {
            for (m, &a) in map.iter_mut().zip(&activations[k * positions..(k + 1) * positions]) {
                *m += alpha * a as f64;
            }
        }
        Ok(CamMap { map: map.into_iter().map(|v| v.max(0.0) as f32).collect(), height, width })
    }
}
