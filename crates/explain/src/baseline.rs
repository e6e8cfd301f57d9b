//! Baselines: the "absent" input that Integrated Gradients integrates from and that
//! perturbation methods put in place of what they remove (Sturmfels et al. 2020 compare
//! them): zeros, the input blurred, uniform noise over the input's range, or a given input.

use data::SplitMix64;

use crate::Layout;

/// What an input's absence is, for the methods that compare an input with one (Integrated
/// Gradients, occlusion, LIME, KernelSHAP, the deletion and insertion checks).
#[derive(Debug, Clone, PartialEq)]
pub enum Baseline {
    /// Every value zero (for normalised images, the dataset's mean).
    Zeros,
    /// A Gaussian blur of the input over its positions with this deviation, in positions.
    Blur {
        /// The blur's deviation.
        sigma: f32,
    },
    /// Uniform noise between the input's smallest and largest value.
    Uniform {
        /// Seeds the noise.
        seed: u64,
    },
    /// A whole explained input.
    Given(Vec<f32>),
}

impl Baseline {
    /// The baseline for `sample` laid out as `layout`.
    pub fn of(&self, sample: &[f32], layout: Layout) -> Vec<f32> {
        match self {
            Baseline::Zeros => vec![0.0; sample.len()],
            Baseline::Blur { sigma } => gaussian_blur(sample, layout, *sigma),
            Baseline::Uniform { seed } => {
                let (lo, hi) = sample.iter().fold((f32::MAX, f32::MIN), |(lo, hi), &x| (lo.min(x), hi.max(x)));
                let mut rng = SplitMix64(*seed);
                sample.iter().map(|_| lo + (hi - lo) * rng.next_f64() as f32).collect()
            }
            Baseline::Given(values) => values.clone(),
        }
    }
}

/// Each of `values`' depth slices blurred over its height × width positions by a separable
/// Gaussian of deviation `sigma` (truncated at 3σ, edges clamped, as OpenCV's replicate
/// border); sigma 0 returns the input.
pub fn gaussian_blur(values: &[f32], layout: Layout, sigma: f32) -> Vec<f32> {
    if sigma <= 0.0 {
        return values.to_vec();
    }
    let radius = (3.0 * sigma).ceil() as isize;
    let weights: Vec<f32> = (-radius..=radius).map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp()).collect();
    let total: f32 = weights.iter().sum();
    let (h, w) = (layout.height as isize, layout.width as isize);
    let mut out = values.to_vec();
    for d in 0..layout.depth {
        let at = |y: isize, x: isize| layout.index((y.clamp(0, h - 1) * w + x.clamp(0, w - 1)) as usize, d);
        let pass = |source: &[f32], along_x: bool| -> Vec<f32> {
            (0..h * w)
                .map(|p| {
                    let (y, x) = (p / w, p % w);
                    let sum: f32 = (-radius..=radius)
                        .zip(&weights)
                        .map(|(i, wt)| wt * if along_x { source[at(y, x + i)] } else { source[at(y + i, x)] })
                        .sum();
                    sum / total
                })
                .collect()
        };
        let rows = pass(&out, true);
        let mut scratch = out.clone();
        for (p, v) in rows.into_iter().enumerate() {
            scratch[layout.index(p, d)] = v;
        }
        for (p, v) in pass(&scratch, false).into_iter().enumerate() {
            out[layout.index(p, d)] = v;
        }
    }
    out
}
