//! A supervised dataset held in memory, and its seeded train/test split.

/// What a model reads from each sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inputs {
    /// Real values (pixels, a series' window).
    Values,
    /// Token ids, held exactly in the f32 samples (every id below 2²⁴ is).
    Tokens {
        /// The ids lie below it.
        vocab: usize,
    },
}

/// What each sample should give.
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// A class for each position of a sample (one for an image, one per position of a
    /// language model's window).
    Classes {
        /// Sample after sample, `per_sample` each.
        labels: Vec<u32>,
        /// Labels per sample.
        per_sample: usize,
        /// The labels lie below it.
        classes: usize,
    },
    /// Real values (regression).
    Values {
        /// Sample after sample, `per_sample` each.
        values: Vec<f32>,
        /// Values per sample.
        per_sample: usize,
    },
}

impl Targets {
    /// Targets per sample: its labels or values.
    pub fn per_sample(&self) -> usize {
        match self {
            Targets::Classes { per_sample, .. } | Targets::Values { per_sample, .. } => *per_sample,
        }
    }

    /// The targets of the samples at `indices`, in that order.
    fn gather(&self, indices: &[usize]) -> Targets {
        fn pick<T: Copy>(v: &[T], k: usize, indices: &[usize]) -> Vec<T> {
            indices.iter().flat_map(|&i| v[i * k..(i + 1) * k].iter().copied()).collect()
        }
        match *self {
            Targets::Classes { ref labels, per_sample, classes } => {
                Targets::Classes { labels: pick(labels, per_sample, indices), per_sample, classes }
            }
            Targets::Values { ref values, per_sample } => {
                Targets::Values { values: pick(values, per_sample, indices), per_sample }
            }
        }
    }
}

/// Samples of one shape with their targets.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Sample after sample, each `sample_shape` in row-major order.
    pub samples: Vec<f32>,
    /// The shape of one sample ([C, H, W], [T], [T, 1]).
    pub sample_shape: Vec<usize>,
    /// What the model reads of each sample.
    pub inputs: Inputs,
    /// What each sample should give.
    pub targets: Targets,
}

impl Dataset {
    /// Images (or feature vectors) of `sample_shape` with one class label each.
    pub fn classified(samples: Vec<f32>, sample_shape: Vec<usize>, labels: Vec<u32>, classes: usize) -> Self {
        Dataset {
            samples,
            sample_shape,
            inputs: Inputs::Values,
            targets: Targets::Classes { labels, per_sample: 1, classes },
        }
    }

    /// Samples held.
    pub fn len(&self) -> usize {
        self.samples.len() / self.sample_len().max(1)
    }

    /// Whether it holds no sample.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Values per sample.
    pub fn sample_len(&self) -> usize {
        self.sample_shape.iter().product()
    }

    /// Sample `i`'s values.
    pub fn sample(&self, i: usize) -> &[f32] {
        let n = self.sample_len();
        &self.samples[i * n..(i + 1) * n]
    }

    /// The class labels (empty for a regression set).
    pub fn labels(&self) -> &[u32] {
        match &self.targets {
            Targets::Classes { labels, .. } => labels,
            Targets::Values { .. } => &[],
        }
    }

    /// How many classes the labels are below (0 for a regression set).
    pub fn classes(&self) -> usize {
        match self.targets {
            Targets::Classes { classes, .. } => classes,
            Targets::Values { .. } => 0,
        }
    }

    /// The samples at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        Dataset {
            samples: indices.iter().flat_map(|&i| self.sample(i).iter().copied()).collect(),
            sample_shape: self.sample_shape.clone(),
            inputs: self.inputs,
            targets: self.targets.gather(indices),
        }
    }

    /// Splits off `test_fraction` of the samples, chosen by `seed`: of each class where each
    /// sample has one class, so both parts keep the class balance; else of all samples.
    /// Returns (train, test).
    pub fn split(&self, test_fraction: f64, seed: u64) -> (Dataset, Dataset) {
        let groups: Vec<Vec<usize>> = match &self.targets {
            Targets::Classes { labels, per_sample: 1, classes } => {
                (0..*classes as u32).map(|class| (0..self.len()).filter(|&i| labels[i] == class).collect()).collect()
            }
            _ => vec![(0..self.len()).collect()],
        };
        let (mut train, mut test) = (Vec::new(), Vec::new());
        for (class, mut members) in groups.into_iter().enumerate() {
            shuffle(&mut members, seed ^ class as u64);
            let held_out = (members.len() as f64 * test_fraction).round() as usize;
            test.extend_from_slice(&members[..held_out]);
            train.extend_from_slice(&members[held_out..]);
        }
        train.sort_unstable();
        test.sort_unstable();
        (self.subset(&train), self.subset(&test))
    }
}

/// Fisher-Yates with SplitMix64: the same seed gives the same order on every machine.
pub fn shuffle(items: &mut [usize], seed: u64) {
    let mut next = SplitMix64(seed);
    for i in (1..items.len()).rev() {
        let j = (next.next_u64() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

/// SplitMix64: a tiny seeded generator, the same stream on every machine.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// Uniform in [0, 1), from the top 53 bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The next 64 bits of the stream.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Standard normal, by Box-Muller from two uniforms (one draw used, for a simple stream).
    pub fn next_normal(&mut self) -> f64 {
        let u = 1.0 - self.next_f64(); // in (0, 1]: the logarithm stays finite
        let v = self.next_f64();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}
