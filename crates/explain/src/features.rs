//! Interpretable features for LIME and KernelSHAP: the explained input's positions grouped,
//! each group switched on (the input's values) or off (the baseline's) as one. Images group
//! pixels into SLIC superpixels or grid cells, series into time segments, texts into
//! characters or words (the caller groups a text's positions by its words).

use crate::Layout;

/// Which group each position belongs to, groups numbered from 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Features {
    /// Each position's group.
    pub group: Vec<usize>,
    /// Groups.
    pub count: usize,
}

impl Features {
    /// `group` (one entry per position, any numbers) renumbered 0.. in order of first use.
    pub fn from_groups(group: &[usize]) -> Features {
        let mut seen = std::collections::HashMap::new();
        let group: Vec<usize> = group
            .iter()
            .map(|g| {
                let next = seen.len();
                *seen.entry(*g).or_insert(next)
            })
            .collect();
        Features { count: seen.len(), group }
    }

    /// `sample` with the groups that are `on` kept and the others' values from `baseline`.
    pub fn mix(&self, sample: &[f32], baseline: &[f32], on: &[bool], layout: Layout) -> Vec<f32> {
        let mut out = sample.to_vec();
        for (p, &g) in self.group.iter().enumerate() {
            if !on[g] {
                for d in 0..layout.depth {
                    let i = layout.index(p, d);
                    out[i] = baseline[i];
                }
            }
        }
        out
    }

    /// One value per group spread over every value of its positions.
    pub fn spread(&self, per_group: &[f64], layout: Layout) -> Vec<f32> {
        let mut out = vec![0.0; layout.len()];
        for (p, &g) in self.group.iter().enumerate() {
            for d in 0..layout.depth {
                out[layout.index(p, d)] = per_group[g] as f32;
            }
        }
        out
    }

    /// Cells of `cell` (height, width) positions, the last row and column of cells cut short.
    pub fn grid(layout: Layout, cell: (usize, usize)) -> Features {
        let (ch, cw) = (cell.0.max(1), cell.1.max(1));
        let across = layout.width.div_ceil(cw);
        let group: Vec<usize> =
            (0..layout.positions()).map(|p| (p / layout.width / ch) * across + (p % layout.width) / cw).collect();
        Features::from_groups(&group)
    }

    /// `count` runs of consecutive rows (a series' time steps, a text's positions) of
    /// nearly equal length, every column of a row in the same run.
    pub fn segments(layout: Layout, count: usize) -> Features {
        let count = count.clamp(1, layout.height.max(1));
        let group: Vec<usize> = (0..layout.positions()).map(|p| (p / layout.width) * count / layout.height).collect();
        Features::from_groups(&group)
    }

    /// SLIC superpixels (Achanta et al. 2012) of an image: about `count` clusters of pixels
    /// close in value (every channel scaled to [0, 1]) and in place, `compactness` trading
    /// the two, ten rounds of local k-means, then every cluster made one connected region.
    pub fn slic(values: &[f32], layout: Layout, count: usize, compactness: f32) -> Features {
        let (h, w) = (layout.height, layout.width);
        let n = h * w;
        let colour = scaled_channels(values, layout);
        let step = ((n as f32 / count.max(1) as f32).sqrt()).max(1.0);
        let mut centres: Vec<(f32, f32, Vec<f32>)> = Vec::new();
        let mut y = step / 2.0;
        while y < h as f32 {
            let mut x = step / 2.0;
            while x < w as f32 {
                let p = y as usize * w + x as usize;
                centres.push((y, x, colour[p].clone()));
                x += step;
            }
            y += step;
        }
        let mut label = vec![0usize; n];
        for _ in 0..10 {
            let mut best = vec![f32::INFINITY; n];
            for (k, (cy, cx, c)) in centres.iter().enumerate() {
                let (y0, y1) = ((cy - step).max(0.0) as usize, ((cy + step) as usize + 1).min(h));
                let (x0, x1) = ((cx - step).max(0.0) as usize, ((cx + step) as usize + 1).min(w));
                for y in y0..y1 {
                    for x in x0..x1 {
                        let p = y * w + x;
                        let dc: f32 = colour[p].iter().zip(c).map(|(a, b)| (a - b) * (a - b)).sum();
                        let ds = ((y as f32 - cy).powi(2) + (x as f32 - cx).powi(2)) / (step * step);
                        let d = dc + ds * compactness * compactness;
                        if d < best[p] {
                            (best[p], label[p]) = (d, k);
                        }
                    }
                }
            }
            let mut sums = vec![(0f32, 0f32, vec![0f32; layout.depth], 0usize); centres.len()];
            for p in 0..n {
                let s = &mut sums[label[p]];
                (s.0, s.1, s.3) = (s.0 + (p / w) as f32, s.1 + (p % w) as f32, s.3 + 1);
                s.2.iter_mut().zip(&colour[p]).for_each(|(a, b)| *a += b);
            }
            for (centre, (sy, sx, sc, m)) in centres.iter_mut().zip(sums) {
                if m > 0 {
                    let m = m as f32;
                    *centre = (sy / m, sx / m, sc.iter().map(|v| v / m).collect());
                }
            }
        }
        connected(&label, layout, (n / centres.len().max(1) / 4).max(1))
    }
}

/// Each pixel's channels, each channel scaled to [0, 1] over the image.
fn scaled_channels(values: &[f32], layout: Layout) -> Vec<Vec<f32>> {
    let ranges: Vec<(f32, f32)> = (0..layout.depth)
        .map(|d| {
            (0..layout.positions())
                .map(|p| values[layout.index(p, d)])
                .fold((f32::MAX, f32::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)))
        })
        .collect();
    (0..layout.positions())
        .map(|p| {
            (0..layout.depth)
                .map(|d| {
                    let (lo, hi) = ranges[d];
                    if hi > lo { (values[layout.index(p, d)] - lo) / (hi - lo) } else { 0.0 }
                })
                .collect()
        })
        .collect()
}

/// `label`'s connected regions (4-neighbours) as the groups, each region smaller than
/// `smallest` pixels merged into the region beside it found first (SLIC's last step).
fn connected(label: &[usize], layout: Layout, smallest: usize) -> Features {
    let (h, w) = (layout.height, layout.width);
    let neighbours = |p: usize| {
        let (y, x) = (p / w, p % w);
        [(y > 0).then(|| p - w), (y + 1 < h).then(|| p + w), (x > 0).then(|| p - 1), (x + 1 < w).then(|| p + 1)]
            .into_iter()
            .flatten()
    };
    let mut region = vec![usize::MAX; label.len()];
    let mut regions = 0;
    for start in 0..label.len() {
        if region[start] != usize::MAX {
            continue;
        }
        // The region beside this one that was numbered before it, to absorb it if small.
        let beside = neighbours(start).find(|&q| region[q] != usize::MAX).map(|q| region[q]);
        let mut members = vec![start];
        region[start] = regions;
        let mut i = 0;
        while i < members.len() {
            for q in neighbours(members[i]) {
                if region[q] == usize::MAX && label[q] == label[start] {
                    region[q] = regions;
                    members.push(q);
                }
            }
            i += 1;
        }
        match beside {
            Some(other) if members.len() < smallest => members.iter().for_each(|&p| region[p] = other),
            _ => regions += 1,
        }
    }
    Features::from_groups(&region)
}
