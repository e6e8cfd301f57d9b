//! Is an explanation faithful? Two published checks that need nothing but the model:
//! cascading model-parameter randomisation (Adebayo et al. 2018, "Sanity Checks for Saliency
//! Maps"): a map that barely changes as the layers are re-initialised from the top down does
//! not explain the model; and deletion and insertion (Petsiuk et al. 2018, RISE): removing the
//! positions a map ranks first should make the prediction fall faster, and revealing them
//! rise faster, than in a random order.

use std::collections::HashMap;

use data::SplitMix64;
use graph::{Executor, Result};

use crate::explainer::softmax;
use crate::{Explainer, Target};

/// Above this rank correlation with the original after every layer is re-initialised, a
/// method is flagged as insensitive to the model (the threshold; an edge detector
/// stays at 1, gradients of the reference CNN fall to about 0.3).
pub const INSENSITIVE: f64 = 0.5;

/// How much more a faithful map's insertion area exceeds its deletion area than a random
/// order's does (in probability × fraction of the input; a random order's own margin is
/// about 0, the trained reference CNN's maps reach 0.4 to 0.9).
pub const FAITHFUL_MARGIN: f64 = 0.1;

/// A stage of the cascade: its name (the top layer re-initialised at it) and the fresh
/// values of that layer's tensors; each stage keeps the stages before it re-initialised.
pub type Stage = (String, HashMap<String, Vec<f32>>);

/// The areas under the deletion and insertion curves (the target's probability, or a
/// one-output model's value, against the fraction of positions removed or revealed).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Curves {
    /// Under the deletion curve: lower is more faithful.
    pub deletion: f64,
    /// Under the insertion curve: higher is more faithful.
    pub insertion: f64,
}

impl Curves {
    /// Insertion's area less deletion's: large when the map's order matters to the model.
    pub fn margin(&self) -> f64 {
        self.insertion - self.deletion
    }

    /// Whether these curves beat `random`'s by [`FAITHFUL_MARGIN`].
    pub fn faithful(&self, random: &Curves) -> bool {
        self.margin() - random.margin() >= FAITHFUL_MARGIN
    }
}

impl<E: Executor> Explainer<E> {
    /// The cascade: for each stage, the Spearman rank correlation of the map `explain` gives
    /// with all stages so far re-initialised against the map of the trained model, over the
    /// positions where either map is not 0 (positions no parameters can reach, such as the
    /// rows a floor-rounding pooling drops, tie at 0 in every map and would make any two
    /// maps look alike). The trained parameters are back in place afterwards, also on error.
    pub fn randomisation<F>(&mut self, stages: &[Stage], mut explain: F) -> Result<Vec<(String, f64)>>
    where
        F: FnMut(&mut Self) -> Result<Vec<f32>>,
    {
        let original = explain(self)?;
        let mut correlations = Vec::new();
        let mut result = Ok(());
        for (name, fresh) in stages {
            result = fresh.iter().try_for_each(|(tensor, values)| self.write_param(tensor, values));
            let map = match result.is_ok() {
                true => explain(self),
                false => break,
            };
            match map {
                Ok(map) => correlations.push((name.clone(), live_spearman(&original, &map))),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        let restored: Vec<String> = stages.iter().flat_map(|(_, fresh)| fresh.keys().cloned()).collect();
        for tensor in restored {
            self.restore_param(&tensor)?;
        }
        result.map(|()| correlations)
    }

    /// Deletion and insertion areas for `map` (over the explained input's positions) on the
    /// explained input `x`: positions in the map's order, largest first, set to `baseline`'s
    /// values (deletion, from `x`) or to `x`'s (insertion, from `baseline`), `steps` equal
    /// slices at a time, every curve point a sample of the same batched run.
    pub fn curves(&mut self, x: &[f32], baseline: &[f32], map: &[f32], steps: usize, target: Target) -> Result<Curves> {
        let layout = self.layout();
        let mut order: Vec<usize> = (0..layout.positions()).collect();
        order.sort_by(|&a, &b| map[b].total_cmp(&map[a]).then(a.cmp(&b)));
        let steps = steps.clamp(1, order.len().max(1));
        let mut points = Vec::with_capacity(2 * (steps + 1));
        for (from, to) in [(x, baseline), (baseline, x)] {
            for s in 0..=steps {
                let mut sample = from.to_vec();
                for &p in &order[..s * order.len() / steps] {
                    for d in 0..layout.depth {
                        sample[layout.index(p, d)] = to[layout.index(p, d)];
                    }
                }
                points.push(sample);
            }
        }
        let samples: Vec<&[f32]> = points.iter().map(Vec::as_slice).collect();
        let classes = self.classes();
        let values: Vec<f64> = self
            .logits(&samples)?
            .iter()
            .map(|l| {
                let row = &l[target.row * classes..(target.row + 1) * classes];
                match classes {
                    1 => row[0] as f64,
                    _ => softmax(row)[target.class] as f64,
                }
            })
            .collect();
        let (deletion, insertion) = values.split_at(steps + 1);
        Ok(Curves { deletion: area(deletion), insertion: area(insertion) })
    }

    /// The mean deletion and insertion areas of `draws` random orders (seeded): what a map
    /// that knows nothing gets.
    pub fn random_curves(
        &mut self,
        x: &[f32],
        baseline: &[f32],
        steps: usize,
        draws: usize,
        seed: u64,
        target: Target,
    ) -> Result<Curves> {
        let mut rng = SplitMix64(seed);
        let positions = self.layout().positions();
        let mut total = Curves { deletion: 0.0, insertion: 0.0 };
        for _ in 0..draws.max(1) {
            let map: Vec<f32> = (0..positions).map(|_| rng.next_f64() as f32).collect();
            let c = self.curves(x, baseline, &map, steps, target)?;
            total.deletion += c.deletion / draws.max(1) as f64;
            total.insertion += c.insertion / draws.max(1) as f64;
        }
        Ok(total)
    }
}

/// The area under a curve of equally spaced points over [0, 1] (trapezoid rule).
fn area(points: &[f64]) -> f64 {
    match points.len() {
        0 => 0.0,
        1 => points[0],
        n => points.windows(2).map(|w| (w[0] + w[1]) / 2.0).sum::<f64>() / (n - 1) as f64,
    }
}

/// Spearman's rank correlation over the positions where `a` or `b` is not 0.
fn live_spearman(a: &[f32], b: &[f32]) -> f64 {
    let live: Vec<usize> = (0..a.len()).filter(|&i| a[i] != 0.0 || b[i] != 0.0).collect();
    let pick = |v: &[f32]| live.iter().map(|&i| v[i]).collect::<Vec<f32>>();
    spearman(&pick(a), &pick(b))
}

/// Spearman's rank correlation (ties get their mean rank; 0 when either side is constant).
pub fn spearman(a: &[f32], b: &[f32]) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let n = a.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = ra.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = rb.iter().map(|y| (y - mb).powi(2)).sum();
    if va == 0.0 || vb == 0.0 { 0.0 } else { cov / (va * vb).sqrt() }
}

fn ranks(v: &[f32]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let j = (i..order.len()).take_while(|&j| v[order[j]] == v[order[i]]).last().unwrap_or(i);
        for &k in &order[i..=j] {
            r[k] = (i + j) as f64 / 2.0;
        }
        i = j + 1;
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_matches_scipy() {
        // scipy.stats.spearmanr([1, 2, 2, 5, 3], [2, 1, 4, 4, 9]).statistic = 23/38: ranks
        // [1, 2.5, 2.5, 5, 4] and [2, 1, 3.5, 3.5, 5].
        let got = spearman(&[1.0, 2.0, 2.0, 5.0, 3.0], &[2.0, 1.0, 4.0, 4.0, 9.0]);
        assert!((got - 23.0 / 38.0).abs() < 1e-9, "{got}");
        assert_eq!(spearman(&[1.0, 1.0], &[1.0, 2.0]), 0.0);
    }

    #[test]
    fn the_area_of_a_line_is_its_mean_height() {
        assert!((area(&[1.0, 0.5, 0.0]) - 0.5).abs() < 1e-12);
        assert!((area(&[1.0, 1.0, 1.0, 1.0]) - 1.0).abs() < 1e-12);
    }
}
