//! Occlusion (Zeiler & Fergus 2014), as Captum's `Occlusion`: a window slides over the
//! positions (all of a position's depth at once) by a stride; each placement replaces what it
//! covers by the baseline, and every value it covered is credited the score's drop,
//! f(x) - f(occluded), averaged over the placements that covered it. Windows start at
//! multiples of the stride up to the first that reaches the last position, clipped there.

use graph::{Executor, Result};

use crate::{Explainer, Layout, Target};

/// A window of `window` (height, width) positions moved by `stride`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Occlusion {
    /// (height, width)
    pub window: (usize, usize),
    /// (vertical, horizontal)
    pub stride: (usize, usize),
}

impl Occlusion {
    /// The positions each placement covers.
    fn placements(self, layout: Layout) -> Vec<Vec<usize>> {
        let starts = |size: usize, window: usize, stride: usize| {
            let window = window.clamp(1, size);
            let stride = stride.max(1);
            (0..=(size - window).div_ceil(stride)).map(move |k| (k * stride, (k * stride + window).min(size)))
        };
        let mut out = Vec::new();
        for (y0, y1) in starts(layout.height, self.window.0, self.stride.0) {
            for (x0, x1) in starts(layout.width, self.window.1, self.stride.1) {
                out.push((y0..y1).flat_map(|y| (x0..x1).map(move |x| y * layout.width + x)).collect());
            }
        }
        out
    }
}

impl<E: Executor> Explainer<E> {
    /// The occlusion attribution of every value of `sample`, occluded values taking
    /// `baseline`'s; the occluded samples run as batches.
    pub fn occlusion(
        &mut self,
        sample: &[f32],
        baseline: &[f32],
        occlusion: Occlusion,
        target: Target,
    ) -> Result<Vec<f32>> {
        let layout = self.layout();
        let placements = occlusion.placements(layout);
        let occluded: Vec<Vec<f32>> = placements
            .iter()
            .map(|positions| {
                let mut x = sample.to_vec();
                for &p in positions {
                    for d in 0..layout.depth {
                        let i = layout.index(p, d);
                        x[i] = baseline[i];
                    }
                }
                x
            })
            .collect();
        let mut inputs: Vec<&[f32]> = vec![sample];
        inputs.extend(occluded.iter().map(Vec::as_slice));
        let scores = self.scores(&inputs, target)?;
        let (mut credit, mut covers) = (vec![0f64; layout.positions()], vec![0u32; layout.positions()]);
        for (positions, &score) in placements.iter().zip(&scores[1..]) {
            for &p in positions {
                credit[p] += (scores[0] - score) as f64;
                covers[p] += 1;
            }
        }
        let mut out = vec![0.0; sample.len()];
        for p in 0..layout.positions() {
            for d in 0..layout.depth {
                out[layout.index(p, d)] = (credit[p] / covers[p].max(1) as f64) as f32;
            }
        }
        Ok(out)
    }
}
