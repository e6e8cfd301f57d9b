//! Batched gradients and Integrated Gradients on the reference CNN (random weights): a batch
//! of samples gives each sample's own gradient, and the attributions add up to
//! f(x) - f(baseline) as the path integral converges.

use explain::{Explainer, Rule, Target};
use graph::CpuExecutor;
use graph::zoo::mnist_cnn;

const TARGET: Target = Target { row: 0, class: 3 };

fn explainer(batch: usize) -> Explainer {
    let built = mnist_cnn(7, batch).unwrap();
    let params = built.model.init.values();
    Explainer::new(CpuExecutor::new(), built.model.graph, built.input, built.logits, &params).unwrap()
}

fn image(seed: usize) -> Vec<f32> {
    (0..784).map(|i| (((i + seed) * 7919) % 251) as f32 / 251.0).collect()
}

#[test]
fn a_batch_gives_each_samples_own_gradient() {
    let (mut one, mut five) = (explainer(1), explainer(5));
    let images: Vec<Vec<f32>> = (0..7).map(image).collect();
    let inputs: Vec<&[f32]> = images.iter().map(Vec::as_slice).collect();
    // Seven samples at batch 5: a full run and one of two, whose last places repeat a sample.
    let batched = five.gradients(&inputs, TARGET).unwrap();
    assert_eq!(batched.len(), 7);
    for (sample, got) in inputs.iter().zip(&batched) {
        let want = one.gradients(&[sample], TARGET).unwrap().remove(0);
        let worst = got.iter().zip(&want).map(|(g, w)| (g - w).abs()).fold(0.0, f32::max);
        assert!(worst <= 1e-6 * want.iter().fold(1e-3, |m: f32, v| m.max(v.abs())), "worst difference {worst}");
    }
}

#[test]
fn integrated_gradients_add_up_to_the_score_difference() {
    let mut explainer = explainer(16);
    let (x, baseline) = (image(1), vec![0.0; 784]);
    let mut results = Vec::new();
    for rule in [Rule::RiemannTrapezoid, Rule::GaussLegendre] {
        let gap = |explainer: &mut Explainer, steps| {
            let ig = explainer.integrated_gradients(&x, &baseline, steps, rule, TARGET).unwrap();
            let difference = ig.score - ig.baseline_score;
            assert!(difference.abs() > 1e-3, "the sample and the baseline score alike: {difference}");
            (ig.completeness_gap / difference.abs(), ig.attributions)
        };
        let ((coarse, _), (fine, attributions)) = (gap(&mut explainer, 64), gap(&mut explainer, 512));
        // A ReLU network with max pooling is piecewise linear along the path: the error of
        // the quadrature shrinks with more points (measured: trapezoid 0.43% -> 0.02%,
        // Gauss-Legendre 1.8% -> 0.3% of f(x) - f(baseline); its nodes suit smooth paths).
        assert!(fine < coarse && fine < 0.005, "{rule:?}: relative completeness gap {coarse} at 64, {fine} at 512");
        results.push(attributions);
    }
    // Both rules approach the same integral.
    let scale = results[0].iter().fold(0.0, |m: f32, v| m.max(v.abs()));
    let worst = results[0].iter().zip(&results[1]).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(worst < 0.02 * scale, "trapezoid and Gauss-Legendre differ by {worst} (largest attribution {scale})");
}
