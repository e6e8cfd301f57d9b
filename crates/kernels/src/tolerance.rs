//! The one rule by which a computation is held to its reference: the GPU kernels to their CPU
//! references in the kernel tests, the GPU executor to the CPU one (`graph::CrossCheck`, and
//! `DLCLI_CROSSCHECK=1`), and the graph tests' values to theirs.

/// |got - want| <= `relative` · (|want| + 1% of the largest |want|): relative, with a floor
/// at the tensor's scale, so that values which cancel to near zero are judged against the size
/// of the data rather than against themselves. A NaN matches only a NaN.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// The allowed error, relative.
    pub relative: f32,
}

impl Tolerance {
    /// What a kernel keeps against its reference: float sums in another order differ by
    /// about 1e-6 an operation.
    pub const KERNEL: Tolerance = Tolerance { relative: 1e-4 };

    /// Every index of `got` outside the tolerance of `want` (the pairs `got` and `want` hold
    /// both of; their lengths are the caller's to check).
    pub fn outside(&self, got: &[f32], want: &[f32]) -> Vec<usize> {
        let floor = 0.01 * want.iter().fold(0f32, |m, v| m.max(v.abs()));
        let within = |g: f32, w: f32| (g - w).abs() <= self.relative * (w.abs() + floor) || (g.is_nan() && w.is_nan());
        got.iter().zip(want).enumerate().filter(|&(_, (&g, &w))| !within(g, w)).map(|(i, _)| i).collect()
    }
}
