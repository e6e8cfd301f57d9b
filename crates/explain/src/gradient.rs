//! The gradient family on the explained input: saliency (Simonyan et al. 2014), input ×
//! gradient (Shrikumar et al. 2016) and SmoothGrad (Smilkov et al. 2017), saliency averaged
//! over noisy copies of the input, with its squared and variance forms (Captum's
//! `NoiseTunnel` over `Saliency`: `smoothgrad`, `smoothgrad_sq`, `vargrad`).

use data::SplitMix64;
use graph::{Executor, Result};

use crate::{Explainer, Target};

/// How SmoothGrad combines the saliency maps of the noisy samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Smoothing {
    /// Their mean.
    Mean,
    /// The mean of their squares.
    Squared,
    /// Their variance.
    Variance,
}

/// Gaussian noise for SmoothGrad: `draws` vectors of `len` values with deviation `sigma`,
/// the same for the same seed.
pub fn gaussian_noise(len: usize, draws: usize, sigma: f32, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = SplitMix64(seed);
    (0..draws).map(|_| (0..len).map(|_| sigma * rng.next_normal() as f32).collect()).collect()
}

impl<E: Executor> Explainer<E> {
    /// |∂ score / ∂ input|, per value of the explained input (Captum's `Saliency`).
    pub fn saliency(&mut self, sample: &[f32], target: Target) -> Result<Vec<f32>> {
        Ok(self.gradients(&[sample], target)?.remove(0).into_iter().map(f32::abs).collect())
    }

    /// input · ∂ score / ∂ input (Captum's `InputXGradient`).
    pub fn input_x_gradient(&mut self, sample: &[f32], target: Target) -> Result<Vec<f32>> {
        let grad = self.gradients(&[sample], target)?.remove(0);
        Ok(grad.iter().zip(sample).map(|(g, x)| g * x).collect())
    }

    /// SmoothGrad: the saliency of `sample + n` for each `noise` vector n, combined by
    /// `smoothing`; the noisy samples run as batches.
    pub fn smoothgrad(
        &mut self,
        sample: &[f32],
        noise: &[Vec<f32>],
        smoothing: Smoothing,
        target: Target,
    ) -> Result<Vec<f32>> {
        let noisy: Vec<Vec<f32>> = noise.iter().map(|n| sample.iter().zip(n).map(|(x, e)| x + e).collect()).collect();
        let inputs: Vec<&[f32]> = noisy.iter().map(Vec::as_slice).collect();
        let grads = self.gradients(&inputs, target)?;
        let n = grads.len().max(1) as f64;
        let (mut sum, mut squares) = (vec![0f64; sample.len()], vec![0f64; sample.len()]);
        for grad in &grads {
            for ((s, q), &g) in sum.iter_mut().zip(&mut squares).zip(grad) {
                let g = g.abs() as f64;
                *s += g;
                *q += g * g;
            }
        }
        let combine = |(s, q): (&f64, &f64)| match smoothing {
            Smoothing::Mean => s / n,
            Smoothing::Squared => q / n,
            Smoothing::Variance => q / n - (s / n) * (s / n),
        };
        Ok(sum.iter().zip(&squares).map(|p| combine(p) as f32).collect())
    }
}
