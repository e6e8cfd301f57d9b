//! A labelled classification dataset held in memory, and its seeded train/test split.

/// Samples of one shape, each with a class label below `classes`.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Sample after sample, each `sample_shape` in row-major order.
    pub samples: Vec<f32>,
    pub labels: Vec<u32>,
    pub sample_shape: Vec<usize>,
    pub classes: usize,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn sample_len(&self) -> usize {
        self.sample_shape.iter().product()
    }

    pub fn sample(&self, i: usize) -> &[f32] {
        let n = self.sample_len();
        &self.samples[i * n..(i + 1) * n]
    }

    /// The samples at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        Dataset {
            samples: indices.iter().flat_map(|&i| self.sample(i).iter().copied()).collect(),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            sample_shape: self.sample_shape.clone(),
            classes: self.classes,
        }
    }

    /// Splits off `test_fraction` of the samples of each class, chosen by `seed`, so both
    /// parts keep the class balance: (train, test).
    pub fn split(&self, test_fraction: f64, seed: u64) -> (Dataset, Dataset) {
        let (mut train, mut test) = (Vec::new(), Vec::new());
        for class in 0..self.classes as u32 {
            let mut members: Vec<usize> = (0..self.len()).filter(|&i| self.labels[i] == class).collect();
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
pub(crate) fn shuffle(items: &mut [usize], seed: u64) {
    let mut state = seed;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for i in (1..items.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}
