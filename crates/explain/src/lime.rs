//! LIME (Ribeiro et al. 2016) and KernelSHAP (Lundberg & Lee 2017): the score of samples
//! with groups of features switched off (given the baseline's values), and a weighted linear
//! model of it over which groups were on. LIME weighs each sample by the exponential kernel
//! on its cosine distance from the input (the `lime` package's width 0.25) and fits a ridge;
//! KernelSHAP draws coalitions from the Shapley kernel and fits least squares with the
//! values adding up to f(x) - E[f], E[f] the score with every group off, averaged over the
//! background samples.

use data::SplitMix64;
use graph::{Executor, Result};

use crate::surrogate::{Surrogate, constrained_least_squares, ridge};
use crate::{Explainer, Features, Target};

/// Which groups are on in each perturbed sample.
pub type Masks = Vec<Vec<bool>>;

/// LIME's samples: the input itself first, then every group on or off with probability ½.
pub fn lime_masks(groups: usize, draws: usize, seed: u64) -> Masks {
    let mut rng = SplitMix64(seed);
    let mut masks = vec![vec![true; groups]];
    masks.extend((1..draws).map(|_| (0..groups).map(|_| rng.next_u64() >> 63 == 1).collect()));
    masks
}

/// KernelSHAP's coalitions: a size k from p(k) ∝ (M - 1) / (k (M - k)), 0 < k < M, then k
/// groups uniformly; with the Shapley kernel's weight folded into the draw, every sample
/// weighs the same (Captum's `KernelShap` sampling).
pub fn shapley_masks(groups: usize, draws: usize, seed: u64) -> Masks {
    let mut rng = SplitMix64(seed);
    let m = groups as f64;
    let sizes: Vec<f64> = (1..groups).map(|k| (m - 1.0) / (k as f64 * (m - k as f64))).collect();
    let total: f64 = sizes.iter().sum();
    (0..draws)
        .map(|_| {
            let mut mask = vec![false; groups];
            if groups < 2 {
                return vec![true; groups];
            }
            let mut pick = rng.next_f64() * total;
            let k = 1 + sizes
                .iter()
                .position(|&p| {
                    pick -= p;
                    pick < 0.0
                })
                .unwrap_or(groups - 2);
            let mut order: Vec<usize> = (0..groups).collect();
            for i in 0..k {
                let j = i + (rng.next_u64() % (groups - i) as u64) as usize;
                order.swap(i, j);
                mask[order[i]] = true;
            }
            mask
        })
        .collect()
}

/// LIME's weight of a sample: exp(-d² / (2 w²)) for d the cosine distance between its mask
/// and all groups on (1 for no group on).
pub fn lime_weight(mask: &[bool], width: f64) -> f64 {
    let on = mask.iter().filter(|&&b| b).count() as f64;
    let distance = if on == 0.0 { 1.0 } else { 1.0 - (on / mask.len() as f64).sqrt() };
    (-(distance * distance) / (2.0 * width * width)).exp()
}

/// KernelSHAP's result for one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Shapley {
    /// One value per group.
    pub values: Vec<f64>,
    /// E[f]: the score with every group off, over the background.
    pub expected: f64,
    /// f(x).
    pub score: f64,
}

fn as_rows(masks: &Masks) -> Vec<Vec<f64>> {
    masks.iter().map(|m| m.iter().map(|&b| b as u8 as f64).collect()).collect()
}

impl<E: Executor> Explainer<E> {
    /// The mean score over `backgrounds` of `sample` with each mask's groups on and the rest
    /// from the background: the perturbed samples run as batches.
    fn masked_scores(
        &mut self,
        sample: &[f32],
        backgrounds: &[Vec<f32>],
        features: &Features,
        masks: &Masks,
        target: Target,
    ) -> Result<Vec<f64>> {
        let layout = self.layout();
        let mixed: Vec<Vec<f32>> =
            masks.iter().flat_map(|m| backgrounds.iter().map(move |b| features.mix(sample, b, m, layout))).collect();
        let scores = self.scores(&mixed.iter().map(Vec::as_slice).collect::<Vec<_>>(), target)?;
        Ok(scores
            .chunks(backgrounds.len())
            .map(|c| c.iter().map(|&s| s as f64).sum::<f64>() / c.len() as f64)
            .collect())
    }

    /// LIME's surrogate of `sample`'s score over `features`, switched off to `baseline`, from
    /// the samples `masks`, weighed with kernel width `width`, fitted by a ridge of `alpha`.
    pub fn lime(
        &mut self,
        sample: &[f32],
        baseline: &[f32],
        features: &Features,
        masks: &Masks,
        (width, alpha): (f64, f64),
        target: Target,
    ) -> Result<Surrogate> {
        let y = self.masked_scores(sample, &[baseline.to_vec()], features, masks, target)?;
        let w: Vec<f64> = masks.iter().map(|m| lime_weight(m, width)).collect();
        Ok(ridge(&as_rows(masks), &y, &w, alpha))
    }

    /// KernelSHAP values of `sample`'s score over `features`, switched off to each of
    /// `backgrounds` in turn, from the coalitions `masks`.
    pub fn kernel_shap(
        &mut self,
        sample: &[f32],
        backgrounds: &[Vec<f32>],
        features: &Features,
        masks: &Masks,
        target: Target,
    ) -> Result<Shapley> {
        let ends = vec![vec![true; features.count], vec![false; features.count]];
        let ends = self.masked_scores(sample, backgrounds, features, &ends, target)?;
        let y = self.masked_scores(sample, backgrounds, features, masks, target)?;
        let values = constrained_least_squares(&as_rows(masks), &y, &vec![1.0; y.len()], ends[1], ends[0]);
        Ok(Shapley { values, expected: ends[1], score: ends[0] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapley_coalitions_follow_the_kernel() {
        let masks = shapley_masks(10, 20_000, 3);
        let mut sizes = [0usize; 11];
        masks.iter().for_each(|m| sizes[m.iter().filter(|&&b| b).count()] += 1);
        assert_eq!((sizes[0], sizes[10]), (0, 0));
        // p(k) ∝ 1 / (k (10 - k)): sizes 1 and 9 alike, each (1/9) / (1/25) = 2.78 times size 5.
        let ratio = sizes[1] as f64 / sizes[5] as f64;
        assert!((ratio - 25.0 / 9.0).abs() < 0.25, "{sizes:?}");
        assert!((sizes[1] as f64 / sizes[9] as f64 - 1.0).abs() < 0.1, "{sizes:?}");
        assert_eq!(masks, shapley_masks(10, 20_000, 3), "the same seed draws the same coalitions");
        assert_ne!(masks, shapley_masks(10, 20_000, 4));
    }

    #[test]
    fn lime_weighs_the_input_most() {
        let all = lime_weight(&[true; 9], 0.25);
        let third = lime_weight(&[true, false, false, true, false, false, true, false, false], 0.25);
        assert_eq!(all, 1.0);
        // Cosine distance 1 - sqrt(3/9) = 0.4226: exp(-0.4226² / 0.125) = 0.2396.
        assert!((third - 0.2396).abs() < 1e-4, "{third}");
        assert!(lime_weight(&[false; 9], 0.25) < third);
    }
}
