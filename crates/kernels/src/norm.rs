//! Batch normalisation and layer normalisation, forward and backward.
//! Shader: `shaders/norm.wgsl`.

use crate::error::{Result, check_len};
use crate::gpu::{Access, Dispatch, Gpu, Kernel, Shader};
use crate::tensor::GpuTensor;

pub(crate) static SHADER: Shader = crate::shader!("norm", "norm.wgsl");

use Access::{Read, ReadWrite};

/// Batch norm over x [batch, channels, spatial] (spatial = H*W, or 1 for BatchNorm1d).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchNorm {
    /// Samples.
    pub batch: usize,
    /// Channels, each normalised on its own.
    pub channels: usize,
    /// Positions of a channel: H·W, or 1.
    pub spatial: usize,
    /// Added to the variance.
    pub eps: f32,
    /// The batch's weight in the running statistics.
    pub momentum: f32,
    /// Batch statistics (and running-stat updates) when true, running statistics when false.
    pub train: bool,
}

impl BatchNorm {
    /// Elements of x.
    pub fn len(&self) -> usize {
        self.batch * self.channels * self.spatial
    }

    /// Whether x has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn params(&self) -> Params {
        Params {
            n: self.batch as u32,
            c: self.channels as u32,
            s: self.spatial as u32,
            train: self.train as u32,
            eps: self.eps,
            momentum: self.momentum,
            _pad: [0; 2],
        }
    }
}

/// Layer norm over the last axis of x [rows, features].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerNorm {
    /// Rows, each normalised on its own.
    pub rows: usize,
    /// Features of a row.
    pub features: usize,
    /// Added to the variance.
    pub eps: f32,
}

impl LayerNorm {
    fn params(&self) -> Params {
        Params {
            n: self.rows as u32,
            c: 1,
            s: self.features as u32,
            train: 0,
            eps: self.eps,
            momentum: 0.0,
            _pad: [0; 2],
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    c: u32,
    s: u32,
    train: u32,
    eps: f32,
    momentum: f32,
    _pad: [u32; 2],
}

static BN_STATS: Kernel =
    Kernel { shader: &SHADER, entry: "batch_norm_stats", bindings: &[Read, ReadWrite, ReadWrite, ReadWrite] };
static BN_APPLY: Kernel =
    Kernel { shader: &SHADER, entry: "batch_norm_apply", bindings: &[Read, Read, Read, Read, ReadWrite] };
static BN_BACKWARD_REDUCE: Kernel = Kernel {
    shader: &SHADER,
    entry: "batch_norm_backward_reduce",
    bindings: &[Read, Read, Read, ReadWrite, ReadWrite],
};
static BN_BACKWARD_INPUT: Kernel = Kernel {
    shader: &SHADER,
    entry: "batch_norm_backward_input",
    bindings: &[Read, Read, Read, Read, Read, Read, ReadWrite],
};
static LN_FORWARD: Kernel =
    Kernel { shader: &SHADER, entry: "layer_norm_forward", bindings: &[Read, Read, Read, ReadWrite, ReadWrite] };
static LN_BACKWARD_INPUT: Kernel =
    Kernel { shader: &SHADER, entry: "layer_norm_backward_input", bindings: &[Read, Read, Read, Read, ReadWrite] };
static LN_BACKWARD_PARAMS: Kernel = Kernel {
    shader: &SHADER,
    entry: "layer_norm_backward_params",
    bindings: &[Read, Read, Read, ReadWrite, ReadWrite],
};

/// y = batch_norm(x). `running_mean` and `running_var` [C] are used in evaluation and updated
/// in training (PyTorch's momentum rule, unbiased variance); `saved` [2C] receives the mean
/// and 1/std used, for backward.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm(
    gpu: &Gpu,
    bn: &BatchNorm,
    x: &GpuTensor,
    gamma: &GpuTensor,
    beta: &GpuTensor,
    running_mean: &GpuTensor,
    running_var: &GpuTensor,
    saved: &GpuTensor,
    y: &GpuTensor,
) -> Result<[Dispatch; 2]> {
    const OP: &str = "batch_norm";
    let c = bn.channels;
    for (name, t, len) in [("x", x, bn.len()), ("y", y, bn.len()), ("gamma", gamma, c), ("beta", beta, c)] {
        check_len(OP, name, t.len(), len)?;
    }
    check_len(OP, "running_mean", running_mean.len(), c)?;
    check_len(OP, "running_var", running_var.len(), c)?;
    check_len(OP, "saved", saved.len(), 2 * c)?;
    Ok([
        gpu.dispatch(&BN_STATS, &[], &bn.params(), &[x, running_mean, running_var, saved], [c as u32, 1, 1])?,
        gpu.dispatch_linear(&BN_APPLY, &[], &bn.params(), &[x, saved, gamma, beta, y], bn.len())?,
    ])
}

/// dx, dgamma, dbeta of batch norm, from the forward's x and `saved`.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward(
    gpu: &Gpu,
    bn: &BatchNorm,
    x: &GpuTensor,
    dy: &GpuTensor,
    saved: &GpuTensor,
    gamma: &GpuTensor,
    dgamma: &GpuTensor,
    dbeta: &GpuTensor,
    dx: &GpuTensor,
) -> Result<[Dispatch; 2]> {
    const OP: &str = "batch_norm_backward";
    let c = bn.channels;
    for (name, t, len) in
        [("x", x, bn.len()), ("dy", dy, bn.len()), ("dx", dx, bn.len()), ("dgamma", dgamma, c), ("dbeta", dbeta, c)]
    {
        check_len(OP, name, t.len(), len)?;
    }
    Ok([
        gpu.dispatch(&BN_BACKWARD_REDUCE, &[], &bn.params(), &[x, dy, saved, dgamma, dbeta], [c as u32, 1, 1])?,
        gpu.dispatch_linear(
            &BN_BACKWARD_INPUT,
            &[],
            &bn.params(),
            &[x, dy, saved, gamma, dgamma, dbeta, dx],
            bn.len(),
        )?,
    ])
}

/// y = layer_norm(x) * gamma + beta; `saved` [2R] receives each row's mean and 1/std.
pub fn layer_norm(
    gpu: &Gpu,
    ln: &LayerNorm,
    x: &GpuTensor,
    gamma: &GpuTensor,
    beta: &GpuTensor,
    y: &GpuTensor,
    saved: &GpuTensor,
) -> Result<Dispatch> {
    const OP: &str = "layer_norm";
    gpu.check_loop_budget(OP, 4 * ln.features as u64, || format!("rows of {}", ln.features))?;
    let n = ln.rows * ln.features;
    for (name, t, len) in [
        ("x", x, n),
        ("y", y, n),
        ("gamma", gamma, ln.features),
        ("beta", beta, ln.features),
        ("saved", saved, 2 * ln.rows),
    ] {
        check_len(OP, name, t.len(), len)?;
    }
    gpu.dispatch_linear(&LN_FORWARD, &[], &ln.params(), &[x, gamma, beta, y, saved], ln.rows)
}

/// dx, dgamma, dbeta of layer norm.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_backward(
    gpu: &Gpu,
    ln: &LayerNorm,
    x: &GpuTensor,
    dy: &GpuTensor,
    saved: &GpuTensor,
    gamma: &GpuTensor,
    dgamma: &GpuTensor,
    dbeta: &GpuTensor,
    dx: &GpuTensor,
) -> Result<[Dispatch; 2]> {
    const OP: &str = "layer_norm_backward";
    let loops = (3 * ln.features).max(ln.rows) as u64;
    gpu.check_loop_budget(OP, loops, || format!("{} rows of {}", ln.rows, ln.features))?;
    let n = ln.rows * ln.features;
    for (name, t, len) in [("dy", dy, n), ("dx", dx, n), ("dgamma", dgamma, ln.features), ("dbeta", dbeta, ln.features)]
    {
        check_len(OP, name, t.len(), len)?;
    }
    Ok([
        gpu.dispatch_linear(&LN_BACKWARD_INPUT, &[], &ln.params(), &[x, dy, saved, gamma, dx], ln.rows)?,
        gpu.dispatch_linear(&LN_BACKWARD_PARAMS, &[], &ln.params(), &[x, dy, saved, dgamma, dbeta], ln.features)?,
    ])
}
