//! Softmax and log-softmax over the last axis, and fused softmax-cross-entropy.
//! Shader: `shaders/softmax.wgsl`.

use crate::error::{Result, check_len};
use crate::gpu::{Access, Dispatch, Gpu, Kernel, Shader};
use crate::tensor::GpuTensor;

pub(crate) static SHADER: Shader = crate::shader!("softmax", "softmax.wgsl");

use Access::{Read, ReadWrite};

/// Cross-entropy options, as in `torch.nn.CrossEntropyLoss` (mean reduction).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CrossEntropy {
    /// Rows of logits.
    pub rows: usize,
    /// Logits of a row.
    pub classes: usize,
    /// The share of the target's probability spread over every class.
    pub label_smoothing: f32,
    /// Rows with this target count for nothing, in the loss or in the mean.
    pub ignore_index: Option<u32>,
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    cols: u32,
    smoothing: f32,
    ignore_index: u32,
}

fn plain(rows: usize, cols: usize) -> Params {
    Params { rows: rows as u32, cols: cols as u32, smoothing: 0.0, ignore_index: u32::MAX }
}

static FORWARD: Kernel = Kernel { shader: &SHADER, entry: "softmax_forward", bindings: &[Read, ReadWrite] };
static BACKWARD: Kernel = Kernel { shader: &SHADER, entry: "softmax_backward", bindings: &[Read, Read, ReadWrite] };
static CE_ROWS: Kernel = Kernel { shader: &SHADER, entry: "cross_entropy_rows", bindings: &[Read, Read, ReadWrite] };
static CE_MEAN: Kernel = Kernel { shader: &SHADER, entry: "cross_entropy_mean", bindings: &[Read, Read, ReadWrite] };
static BCE_TERMS: Kernel =
    Kernel { shader: &SHADER, entry: "bce_with_logits_terms", bindings: &[Read, Read, ReadWrite] };
static TOP_K_HITS: Kernel = Kernel { shader: &SHADER, entry: "top_k_hits", bindings: &[Read, Read, ReadWrite] };
static CE_BACKWARD: Kernel =
    Kernel { shader: &SHADER, entry: "cross_entropy_backward", bindings: &[Read, Read, Read, Read, Read, ReadWrite] };

/// y = softmax(x) (or log-softmax with `log`) over rows of `cols`.
/// Loop iterations per row: three passes (max, sum, write) plus margin.
fn row_loops(gpu: &Gpu, op: &'static str, cols: usize) -> Result<()> {
    gpu.check_loop_budget(op, 4 * cols as u64, || format!("rows of {cols}"))
}

/// Softmax (or log-softmax with `log`) of each row of x [rows, cols].
pub fn softmax(gpu: &Gpu, log: bool, rows: usize, cols: usize, x: &GpuTensor, y: &GpuTensor) -> Result<Dispatch> {
    row_loops(gpu, "softmax", cols)?;
    check_len("softmax", "x", x.len(), rows * cols)?;
    check_len("softmax", "y", y.len(), rows * cols)?;
    gpu.dispatch_linear(&FORWARD, &[("LOG", log as u32 as f64)], &plain(rows, cols), &[x, y], rows)
}

/// dx from the forward output y and dy.
pub fn softmax_backward(
    gpu: &Gpu,
    log: bool,
    rows: usize,
    cols: usize,
    y: &GpuTensor,
    dy: &GpuTensor,
    dx: &GpuTensor,
) -> Result<Dispatch> {
    row_loops(gpu, "softmax_backward", cols)?;
    for (name, t) in [("y", y), ("dy", dy), ("dx", dx)] {
        check_len("softmax_backward", name, t.len(), rows * cols)?;
    }
    gpu.dispatch_linear(&BACKWARD, &[("LOG", log as u32 as f64)], &plain(rows, cols), &[y, dy, dx], rows)
}

impl CrossEntropy {
    fn params(&self) -> Params {
        Params {
            rows: self.rows as u32,
            cols: self.classes as u32,
            smoothing: self.label_smoothing,
            ignore_index: self.ignore_index.unwrap_or(u32::MAX),
        }
    }
}

/// Loss forward: `row_stats` [rows, 2] gets each row's loss and log-sum-exp, `loss` [2] the
/// mean loss and the number of rows counted. `targets` are u32 class indices.
pub fn cross_entropy(
    gpu: &Gpu,
    ce: &CrossEntropy,
    logits: &GpuTensor,
    targets: &GpuTensor,
    row_stats: &GpuTensor,
    loss: &GpuTensor,
) -> Result<[Dispatch; 2]> {
    const OP: &str = "cross_entropy";
    row_loops(gpu, OP, ce.classes)?;
    check_len(OP, "logits", logits.len(), ce.rows * ce.classes)?;
    check_len(OP, "targets", targets.len(), ce.rows)?;
    check_len(OP, "row_stats", row_stats.len(), ce.rows * 2)?;
    check_len(OP, "loss", loss.len(), 2)?;
    Ok([
        gpu.dispatch_linear(&CE_ROWS, &[], &ce.params(), &[logits, targets, row_stats], ce.rows)?,
        gpu.dispatch(&CE_MEAN, &[], &ce.params(), &[row_stats, targets, loss], [1, 1, 1])?,
    ])
}

/// dlogits = d(loss)/d(logits) * dloss[0], from the forward's `row_stats` and `loss`.
#[allow(clippy::too_many_arguments)]
pub fn cross_entropy_backward(
    gpu: &Gpu,
    ce: &CrossEntropy,
    logits: &GpuTensor,
    targets: &GpuTensor,
    row_stats: &GpuTensor,
    loss: &GpuTensor,
    dloss: &GpuTensor,
    dlogits: &GpuTensor,
) -> Result<Dispatch> {
    check_len("cross_entropy_backward", "dlogits", dlogits.len(), ce.rows * ce.classes)?;
    check_len("cross_entropy_backward", "dloss", dloss.len(), 1)?;
    let tensors = [logits, targets, row_stats, loss, dloss, dlogits];
    gpu.dispatch_linear(&CE_BACKWARD, &[], &ce.params(), &tensors, ce.rows * ce.classes)
}

/// `hits` [rows] = 1.0 where the row's target is among its `k` largest logits (a tie counts
/// against the target), else 0.0; their sum is the number of correct rows.
pub fn top_k_hits(
    gpu: &Gpu,
    rows: usize,
    classes: usize,
    k: usize,
    logits: &GpuTensor,
    targets: &GpuTensor,
    hits: &GpuTensor,
) -> Result<Dispatch> {
    row_loops(gpu, "top_k_hits", classes)?;
    check_len("top_k_hits", "logits", logits.len(), rows * classes)?;
    check_len("top_k_hits", "targets", targets.len(), rows)?;
    check_len("top_k_hits", "hits", hits.len(), rows)?;
    let params = Params { ignore_index: k as u32, ..plain(rows, classes) };
    gpu.dispatch_linear(&TOP_K_HITS, &[], &params, &[logits, targets, hits], rows)
}

/// `terms` [n] = each element's binary cross-entropy with logits `x` against targets `t` in
/// [0, 1], divided by n: their sum is `nn.BCEWithLogitsLoss`'s mean.
pub fn bce_with_logits_terms(gpu: &Gpu, n: usize, x: &GpuTensor, t: &GpuTensor, terms: &GpuTensor) -> Result<Dispatch> {
    for (name, tensor) in [("x", x), ("targets", t), ("terms", terms)] {
        check_len("bce_with_logits", name, tensor.len(), n)?;
    }
    gpu.dispatch_linear(&BCE_TERMS, &[], &plain(n, 1), &[x, t, terms], n)
}
