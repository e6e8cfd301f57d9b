//! Integrated Gradients (Sundararajan et al. 2017): the attribution of input i is
//! (xᵢ - x'ᵢ) ∫₀¹ ∂f(x' + α (x - x'))/∂xᵢ dα for a baseline x', the integral a weighted sum
//! of gradients at points of the path, run as batches. By the fundamental theorem of calculus
//! the attributions add up to f(x) - f(x'); how far the sum misses is the completeness gap,
//! reported with every result.

use graph::{Executor, Result};

use crate::{Explainer, Target};

/// How the path integral is approximated: Captum's `method` names and points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Left Riemann sums.
    RiemannLeft,
    /// Right Riemann sums.
    RiemannRight,
    /// Midpoint Riemann sums.
    RiemannMiddle,
    /// The trapezoid rule, its weights summing to 1 (Captum's to (n-1)/n).
    RiemannTrapezoid,
    /// Captum's default: Gauss-Legendre nodes and weights moved to [0, 1].
    GaussLegendre,
}

impl Rule {
    /// The path's points α and their weights for `steps` gradients (weights sum to 1).
    pub fn points(self, steps: usize) -> Vec<(f64, f64)> {
        let n = steps.max(1) as f64;
        let even = |offset: f64| (0..steps).map(|i| ((i as f64 + offset) / n, 1.0 / n)).collect();
        match self {
            Rule::RiemannLeft => even(0.0),
            Rule::RiemannRight => even(1.0),
            Rule::RiemannMiddle => even(0.5),
            Rule::RiemannTrapezoid if steps < 2 => vec![(0.5, 1.0)],
            Rule::RiemannTrapezoid => (0..steps)
                .map(|i| {
                    let ends = i == 0 || i == steps - 1;
                    (i as f64 / (n - 1.0), if ends { 0.5 } else { 1.0 } / (n - 1.0))
                })
                .collect(),
            Rule::GaussLegendre => gauss_legendre(steps).into_iter().map(|(x, w)| (0.5 * (x + 1.0), 0.5 * w)).collect(),
        }
    }
}

/// The nodes and weights of n-point Gauss-Legendre quadrature on [-1, 1]: the roots of the
/// Legendre polynomial Pₙ by Newton's method from Tricomi's estimates, weights
/// 2 / ((1 - x²) Pₙ'(x)²).
fn gauss_legendre(n: usize) -> Vec<(f64, f64)> {
    (1..=n)
        .map(|i| {
            let mut x = (std::f64::consts::PI * (i as f64 - 0.25) / (n as f64 + 0.5)).cos();
            let mut derivative = 0.0;
            for _ in 0..100 {
                // P_n(x) and P_{n-1}(x) by the three-term recurrence.
                let (mut p, mut previous) = (x, 1.0);
                for k in 2..=n {
                    let k = k as f64;
                    (p, previous) = (((2.0 * k - 1.0) * x * p - (k - 1.0) * previous) / k, p);
                }
                derivative = n as f64 * (x * p - previous) / (x * x - 1.0);
                let step = p / derivative;
                x -= step;
                if step.abs() < 1e-15 {
                    break;
                }
            }
            (x, 2.0 / ((1.0 - x * x) * derivative * derivative))
        })
        .collect()
}

/// Integrated Gradients of one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Integrated {
    /// One attribution per input value, in the input's layout.
    pub attributions: Vec<f32>,
    /// f(x) and f(baseline): the explained score at the sample and at the baseline.
    pub score: f32,
    /// f(baseline).
    pub baseline_score: f32,
    /// |Σ attributions - (f(x) - f(baseline))|.
    pub completeness_gap: f32,
}

impl<E: Executor> Explainer<E> {
    /// Integrated Gradients of `target` for `sample` (an explained input) from `baseline`
    /// (the same length), with `steps` gradients placed by `rule`.
    pub fn integrated_gradients(
        &mut self,
        sample: &[f32],
        baseline: &[f32],
        steps: usize,
        rule: Rule,
        target: Target,
    ) -> Result<Integrated> {
        let points = rule.points(steps);
        let path: Vec<Vec<f32>> = points
            .iter()
            .map(|&(alpha, _)| baseline.iter().zip(sample).map(|(&b, &x)| b + alpha as f32 * (x - b)).collect())
            .collect();
        let inputs: Vec<&[f32]> = path.iter().map(Vec::as_slice).collect();
        let grads = self.gradients(&inputs, target)?;
        let mut integral = vec![0f64; sample.len()];
        for ((_, weight), grad) in points.iter().zip(&grads) {
            integral.iter_mut().zip(grad).for_each(|(s, &g)| *s += weight * g as f64);
        }
        let attributions: Vec<f32> =
            integral.iter().zip(sample.iter().zip(baseline)).map(|(s, (&x, &b))| (s * (x - b) as f64) as f32).collect();
        let [score, baseline_score] = self.scores(&[sample, baseline], target)?[..] else {
            unreachable!("two samples")
        };
        let total: f64 = attributions.iter().map(|&a| a as f64).sum();
        let completeness_gap = (total - (score - baseline_score) as f64).abs() as f32;
        Ok(Integrated { attributions, score, baseline_score, completeness_gap })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Gauss-Legendre with n points integrates polynomials up to degree 2n - 1 exactly; the
    /// trapezoid rule lines; every rule's weights sum to 1.
    #[test]
    fn the_rules_integrate_what_they_should() {
        for n in [1, 2, 5, 50] {
            let points = Rule::GaussLegendre.points(n);
            for k in 0..2 * n {
                let integral: f64 = points.iter().map(|&(a, w)| w * a.powi(k as i32)).sum();
                assert!((integral - 1.0 / (k as f64 + 1.0)).abs() < 1e-12, "n {n}, alpha^{k}: {integral}");
            }
        }
        let line = |points: Vec<(f64, f64)>| points.iter().map(|&(a, w)| w * (3.0 * a + 1.0)).sum::<f64>();
        assert!((line(Rule::RiemannTrapezoid.points(7)) - 2.5).abs() < 1e-12);
        assert!((line(Rule::RiemannMiddle.points(7)) - 2.5).abs() < 1e-12);
        for rule in
            [Rule::RiemannLeft, Rule::RiemannRight, Rule::RiemannMiddle, Rule::RiemannTrapezoid, Rule::GaussLegendre]
        {
            let sum: f64 = rule.points(13).iter().map(|&(_, w)| w).sum();
            assert!((sum - 1.0).abs() < 1e-12, "{rule:?}: weights sum to {sum}");
        }
        // Captum's left and right Riemann points.
        assert_eq!(Rule::RiemannLeft.points(4).iter().map(|p| p.0).collect::<Vec<_>>(), [0.0, 0.25, 0.5, 0.75]);
        assert_eq!(Rule::RiemannRight.points(4).iter().map(|p| p.0).collect::<Vec<_>>(), [0.25, 0.5, 0.75, 1.0]);
    }
}
