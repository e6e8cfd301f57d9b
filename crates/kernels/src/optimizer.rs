//! Fused optimizer updates and global-norm gradient clipping. Shader: `shaders/optimizer.wgsl`.

use crate::error::{Result, check_len};
use crate::gpu::{Access, Dispatch, Gpu, Kernel, Shader};
use crate::tensor::GpuTensor;

pub(crate) static SHADER: Shader = crate::shader!("optimizer", "optimizer.wgsl");

use Access::{Read, ReadWrite};

/// `torch.optim.SGD`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sgd {
    /// The learning rate (the schedule's peak).
    pub lr: f32,
    /// The velocity's decay (0: plain SGD).
    pub momentum: f32,
    /// How little of the gradient enters the velocity.
    pub dampening: f32,
    /// L2 added to the gradient.
    pub weight_decay: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
}

/// `torch.optim.Adam`, or `AdamW` with `decoupled`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Adam {
    /// The learning rate (the schedule's peak).
    pub lr: f32,
    /// The first moment's decay.
    pub beta1: f32,
    /// The second moment's decay.
    pub beta2: f32,
    /// Added to the second moment's root.
    pub eps: f32,
    /// L2 added to the gradient, or with `decoupled` the weights' own decay.
    pub weight_decay: f32,
    /// AdamW: the decay applies to the weights, not through the gradient.
    pub decoupled: bool,
}

/// What updates the parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Optimizer {
    /// Stochastic gradient descent, with momentum.
    Sgd(Sgd),
    /// Adam or AdamW.
    Adam(Adam),
}

impl Optimizer {
    /// State tensors per parameter (same length as the parameter): SGD's momentum buffer,
    /// Adam's first and second moments.
    pub fn state_count(&self) -> usize {
        match self {
            Optimizer::Sgd(_) => 1,
            Optimizer::Adam(_) => 2,
        }
    }

    /// Parameters of update number `step` (1-based) of `n` elements.
    fn params(&self, n: usize, step: u64) -> Params {
        let mut p = Params { n: n as u32, ..Params::default() };
        match *self {
            Optimizer::Sgd(s) => {
                p.flags = s.nesterov as u32 | (((step <= 1) as u32) << 1);
                (p.lr, p.weight_decay, p.a, p.b) = (s.lr, s.weight_decay, s.momentum, s.dampening);
            }
            Optimizer::Adam(a) => {
                p.flags = a.decoupled as u32;
                (p.lr, p.weight_decay, p.a, p.b, p.c) = (a.lr, a.weight_decay, a.beta1, a.beta2, a.eps);
                p.d = 1.0 - a.beta1.powf(step as f32);
                p.e = (1.0 - a.beta2.powf(step as f32)).sqrt();
            }
        }
        p
    }
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    flags: u32,
    lr: f32,
    weight_decay: f32,
    a: f32,
    b: f32,
    c: f32,
    d: f32,
    e: f32,
    _pad: [u32; 3],
}

static SGD: Kernel = Kernel { shader: &SHADER, entry: "sgd", bindings: &[ReadWrite, Read, ReadWrite] };
static ADAM: Kernel = Kernel { shader: &SHADER, entry: "adam", bindings: &[ReadWrite, Read, ReadWrite, ReadWrite] };
static SUM_SQUARES: Kernel = Kernel { shader: &SHADER, entry: "sum_squares", bindings: &[Read, ReadWrite] };
static CLIP_FACTOR: Kernel = Kernel { shader: &SHADER, entry: "clip_factor", bindings: &[Read, ReadWrite] };
static SCALE: Kernel = Kernel { shader: &SHADER, entry: "scale_by_factor", bindings: &[Read, ReadWrite] };

/// Elements one `sum_squares` workgroup folds (NORM_CHUNK in the shader).
const NORM_CHUNK: usize = 4096;

/// Update `param` in place from `grad` and its `state` tensors ([`Optimizer::state_count`] of
/// them, zero-initialised by the caller), as update number `step` (1-based).
pub fn update(
    gpu: &Gpu,
    opt: &Optimizer,
    step: u64,
    param: &GpuTensor,
    grad: &GpuTensor,
    state: &[&GpuTensor],
) -> Result<Dispatch> {
    let n = param.len();
    check_len("optimizer", "grad", grad.len(), n)?;
    assert_eq!(state.len(), opt.state_count(), "optimizer state tensors");
    for s in state {
        check_len("optimizer", "state", s.len(), n)?;
    }
    let (kernel, tensors): (&Kernel, Vec<&GpuTensor>) = match opt {
        Optimizer::Sgd(_) => (&SGD, vec![param, grad, state[0]]),
        Optimizer::Adam(_) => (&ADAM, vec![param, grad, state[0], state[1]]),
    };
    gpu.dispatch_linear(kernel, &[], &opt.params(n, step), &tensors, n)
}

/// Re-targets a prepared update to `step` (and a scheduled learning rate in `opt`).
pub fn set_step(gpu: &Gpu, dispatch: &Dispatch, opt: &Optimizer, step: u64, n: usize) {
    dispatch.set_params(gpu, &opt.params(n, step));
}

/// Partial-sum slots that [`grad_norm`] needs for gradients of these lengths.
pub fn norm_partials(lens: &[usize]) -> usize {
    lens.iter().map(|n| n.div_ceil(NORM_CHUNK).max(1)).sum()
}

/// The global L2 norm over every gradient into `norm` [2] (with the clipping factor beside
/// it); with `clip_to`, every gradient is then scaled in place by min(1, clip_to / (norm +
/// 1e-6)) (as `torch.nn.utils.clip_grad_norm_`).
pub fn grad_norm(
    gpu: &Gpu,
    grads: &[&GpuTensor],
    clip_to: Option<f32>,
    partials: &GpuTensor,
    norm: &GpuTensor,
) -> Result<Vec<Dispatch>> {
    let lens: Vec<usize> = grads.iter().map(|g| g.len()).collect();
    let slots = norm_partials(&lens);
    check_len("grad_norm", "partials", partials.len(), slots)?;
    check_len("grad_norm", "norm", norm.len(), 2)?;
    let mut out = Vec::with_capacity(2 * grads.len() + 1);
    let mut slot = 0;
    for g in grads {
        let p = Params { n: g.len() as u32, flags: slot as u32, ..Params::default() };
        let groups = g.len().div_ceil(NORM_CHUNK).max(1);
        out.push(gpu.dispatch(&SUM_SQUARES, &[], &p, &[g, partials], [groups as u32, 1, 1])?);
        slot += groups;
    }
    let p = Params { n: slots as u32, a: clip_to.unwrap_or(f32::INFINITY), ..Params::default() };
    out.push(gpu.dispatch(&CLIP_FACTOR, &[], &p, &[partials, norm], [1, 1, 1])?);
    for g in grads.iter().filter(|_| clip_to.is_some()) {
        let p = Params { n: g.len() as u32, ..Params::default() };
        out.push(gpu.dispatch_linear(&SCALE, &[], &p, &[norm, g], g.len())?);
    }
    Ok(out)
}
