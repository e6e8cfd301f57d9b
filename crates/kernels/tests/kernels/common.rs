//! Shared test machinery: one GPU for the whole binary, seeded random inputs, NaN-poisoned
//! outputs, and a comparison that reports the first mismatches.

use std::sync::OnceLock;

use kernels::{Dispatch, Gpu, GpuTensor, Tolerance};

/// The GPU every test uses. With no adapter a test fails saying how to get one, unless
/// `DLCLI_SKIP_GPU=1`, which skips it, counted (`kernels::no_adapter`).
pub fn gpu() -> Option<&'static Gpu> {
    static GPU: OnceLock<Result<Gpu, String>> = OnceLock::new();
    let gpu = GPU.get_or_init(|| {
        let opened = Gpu::open().map_err(|e| e.to_string());
        if let Ok(gpu) = &opened {
            eprintln!("kernel tests run on {}", gpu.summary());
        }
        opened
    });
    match gpu {
        Ok(gpu) => Some(gpu),
        Err(e) => {
            let test = std::thread::current().name().unwrap_or("a kernel test").to_string();
            kernels::no_adapter(&test, e);
            None
        }
    }
}

/// `#[test]`s that need the GPU: the body gets `gpu: &Gpu`.
macro_rules! gpu_test {
    ($name:ident, |$gpu:ident| $body:block) => {
        #[test]
        fn $name() {
            let Some($gpu) = crate::common::gpu() else { return };
            $body
        }
    };
}
pub(crate) use gpu_test;

/// Test inputs from the data crate's seeded SplitMix64.
pub struct Rng(data::SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(data::SplitMix64(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }

    pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// A tensor of `len` elements filled with NaN, so an element no invocation writes fails.
pub fn poisoned(gpu: &Gpu, len: usize) -> GpuTensor {
    gpu.upload(&vec![f32::NAN; len]).unwrap()
}

pub fn upload(gpu: &Gpu, data: &[f32]) -> GpuTensor {
    gpu.upload(data).unwrap()
}

pub fn run(gpu: &Gpu, dispatches: &[&Dispatch]) {
    gpu.run(dispatches).unwrap();
}

/// Runs a list of prepared dispatches, as the composite kernels return them.
pub fn run_all(gpu: &Gpu, dispatches: &[Dispatch]) {
    gpu.run(&dispatches.iter().collect::<Vec<_>>()).unwrap();
}

pub fn read(gpu: &Gpu, t: &GpuTensor) -> Vec<f32> {
    gpu.read(t).unwrap()
}

/// The kernels' tolerance against their references ([`Tolerance::KERNEL`]).
pub fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_close_tol(what, got, want, Tolerance::KERNEL.relative);
}

/// Every value within [`Tolerance`] `rtol` of its reference, else the first few that are not.
pub fn assert_close_tol(what: &str, got: &[f32], want: &[f32], rtol: f32) {
    assert!(got.len() >= want.len(), "{what}: got {} values, want {}", got.len(), want.len());
    let bad = Tolerance { relative: rtol }.outside(got, want);
    if !bad.is_empty() {
        let first: Vec<String> =
            bad.iter().take(8).map(|&i| format!("[{i}] got {} want {}", got[i], want[i])).collect();
        panic!("{what}: {} of {} elements differ (rtol {rtol}): {}", bad.len(), want.len(), first.join(", "));
    }
}

/// Every |got - want| <= tol * max|want|: for outputs whose small elements come from
/// cancellation inherent in f32 (their error is set by the largest terms, not by themselves).
pub fn assert_close_to_max(what: &str, got: &[f32], want: &[f32], tol: f32) {
    let max = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = (0..want.len())
        .map(|i| (got[i] - want[i]).abs())
        .fold(0f32, |m, e| if e.is_nan() || m.is_nan() { f32::NAN } else { m.max(e) });
    assert!(worst <= tol * max, "{what}: max error {worst} exceeds {tol} x max|want| = {}", tol * max);
}

/// Sizes that are not multiples of any tile or workgroup.
pub const ODD_SIZES: [usize; 6] = [1, 3, 7, 33, 127, 257];

/// Checks `grad` = d f / d x at up to `samples` coordinates by central differences with step
/// `h`. `f` is a scalar function of the CPU reference (typically sum(r * forward(x)) for a
/// random r), evaluated in f64 from f32 outputs.
pub fn check_gradient(
    what: &str,
    x: &[f32],
    grad: &[f32],
    h: f32,
    tol: f64,
    samples: usize,
    f: impl Fn(&[f32]) -> f64,
) {
    let mut rng = Rng::new(99);
    let mut x = x.to_vec();
    let scale = grad.iter().fold(0f64, |m, g| m.max(g.abs() as f64)).max(1e-3);
    for _ in 0..samples.min(x.len()) {
        let i = rng.below(x.len());
        let orig = x[i];
        x[i] = orig + h;
        let up = f(&x);
        x[i] = orig - h;
        let down = f(&x);
        x[i] = orig;
        let fd = (up - down) / (2.0 * h as f64);
        let g = grad[i] as f64;
        assert!(
            (fd - g).abs() <= tol * (g.abs() + 0.1 * scale),
            "{what}: d/dx[{i}] analytic {g}, finite difference {fd}"
        );
    }
}

pub fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}
