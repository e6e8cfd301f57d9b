//! LSTM and GRU cells: the per-step nonlinearity and state update, forward and backward.
//! The gate products are matmuls (see [`crate::Matmul`] with row views). Shader:
//! `shaders/recurrent.wgsl`.

use crate::error::{Result, check_len};
use crate::gpu::{Access, Dispatch, Gpu, Kernel, Shader};
use crate::tensor::GpuTensor;

pub(crate) static SHADER: Shader = crate::shader!("recurrent", "recurrent.wgsl");

/// Row b of a tensor view starts at `offset + b * stride`: a whole [B, width] tensor, or time
/// step t of a [B, T, width] one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowView {
    /// Where row 0 starts.
    pub offset: usize,
    /// Between the starts of two rows.
    pub stride: usize,
}

impl RowView {
    /// A contiguous [rows, width] tensor.
    pub fn rows(width: usize) -> RowView {
        RowView { offset: 0, stride: width }
    }

    /// Time step `t` of a [B, steps, width] tensor.
    pub fn step(t: usize, steps: usize, width: usize) -> RowView {
        RowView { offset: t * width, stride: steps * width }
    }

    fn extent(&self, batch: usize, width: usize) -> usize {
        if batch == 0 { 0 } else { self.offset + (batch - 1) * self.stride + width }
    }
}

/// A tensor and the view a cell reads or writes of it.
pub type Viewed<'a> = (&'a GpuTensor, RowView);

/// `batch` rows of `hidden` units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    /// Rows: the batch.
    pub batch: usize,
    /// Hidden units of a row.
    pub hidden: usize,
}

impl Cell {
    /// Elements of a [batch, hidden] state.
    pub fn len(&self) -> usize {
        self.batch * self.hidden
    }

    /// Whether the state has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn params(&self, views: &[RowView]) -> Params {
        let mut p = Params { batch: self.batch as u32, hidden: self.hidden as u32, ..Params::default() };
        for (k, v) in views.iter().enumerate() {
            p.offset[k / 4][k % 4] = v.offset as u32;
            p.stride[k / 4][k % 4] = v.stride as u32;
        }
        p
    }

    /// Checks each view against its width and prepares `kernel`.
    fn dispatch(&self, gpu: &Gpu, kernel: &Kernel, args: &[(&'static str, Viewed, usize)]) -> Result<Dispatch> {
        for (name, (t, view), width) in args {
            check_len(kernel.entry, name, t.len(), view.extent(self.batch, *width))?;
        }
        let views: Vec<RowView> = args.iter().map(|(_, (_, v), _)| *v).collect();
        let tensors: Vec<&GpuTensor> = args.iter().map(|(_, (t, _), _)| *t).collect();
        gpu.dispatch_linear(kernel, &[], &self.params(&views), &tensors, self.len())
    }
}

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    hidden: u32,
    _pad: [u32; 2],
    offset: [[u32; 4]; 2],
    stride: [[u32; 4]; 2],
}

use Access::ReadWrite as RW;
static LSTM_FORWARD: Kernel = Kernel { shader: &SHADER, entry: "lstm_forward", bindings: &[RW; 4] };
static LSTM_BACKWARD: Kernel = Kernel { shader: &SHADER, entry: "lstm_backward", bindings: &[RW; 7] };
static GRU_FORWARD: Kernel = Kernel { shader: &SHADER, entry: "gru_forward", bindings: &[RW; 4] };
static GRU_BACKWARD: Kernel = Kernel { shader: &SHADER, entry: "gru_backward", bindings: &[RW; 8] };

/// h, c from the gate pre-activations [B, 4H] (order i, f, g, o) and c_prev.
pub fn lstm_cell(gpu: &Gpu, cell: &Cell, gates: Viewed, c_prev: Viewed, h: Viewed, c: Viewed) -> Result<Dispatch> {
    let hd = cell.hidden;
    cell.dispatch(gpu, &LSTM_FORWARD, &[("gates", gates, 4 * hd), ("c_prev", c_prev, hd), ("h", h, hd), ("c", c, hd)])
}

/// dgates [B, 4H] and dc_prev from dh (the layer output's gradient at this step), dh_next
/// (the gradient reaching h from the next step) and dc (the gradient reaching c from it).
#[allow(clippy::too_many_arguments)]
pub fn lstm_cell_backward(
    gpu: &Gpu,
    cell: &Cell,
    gates: Viewed,
    c_prev: Viewed,
    dh: Viewed,
    dh_next: Viewed,
    dc: Viewed,
    dgates: Viewed,
    dc_prev: Viewed,
) -> Result<Dispatch> {
    let hd = cell.hidden;
    let args = [
        ("gates", gates, 4 * hd),
        ("c_prev", c_prev, hd),
        ("dh", dh, hd),
        ("dh_next", dh_next, hd),
        ("dc", dc, hd),
        ("dgates", dgates, 4 * hd),
        ("dc_prev", dc_prev, hd),
    ];
    cell.dispatch(gpu, &LSTM_BACKWARD, &args)
}

/// h from the input gates x Wᵢₕᵀ + bᵢₕ and hidden gates h_prev Wₕₕᵀ + bₕₕ ([B, 3H], r, z, n).
pub fn gru_cell(
    gpu: &Gpu,
    cell: &Cell,
    input_gates: Viewed,
    hidden_gates: Viewed,
    h_prev: Viewed,
    h: Viewed,
) -> Result<Dispatch> {
    let hd = cell.hidden;
    let args = [
        ("input_gates", input_gates, 3 * hd),
        ("hidden_gates", hidden_gates, 3 * hd),
        ("h_prev", h_prev, hd),
        ("h", h, hd),
    ];
    cell.dispatch(gpu, &GRU_FORWARD, &args)
}

/// Gradients of both gate sets and the direct part of dh_prev (z * (dh + dh_next)); the full
/// dh_prev adds dhidden_gates . Wₕₕ. dh is the layer output's gradient at this step, dh_next
/// the gradient reaching h from the next step.
#[allow(clippy::too_many_arguments)]
pub fn gru_cell_backward(
    gpu: &Gpu,
    cell: &Cell,
    input_gates: Viewed,
    hidden_gates: Viewed,
    h_prev: Viewed,
    dh: Viewed,
    dh_next: Viewed,
    dinput_gates: Viewed,
    dhidden_gates: Viewed,
    dh_prev: Viewed,
) -> Result<Dispatch> {
    let hd = cell.hidden;
    let args = [
        ("input_gates", input_gates, 3 * hd),
        ("hidden_gates", hidden_gates, 3 * hd),
        ("h_prev", h_prev, hd),
        ("dh", dh, hd),
        ("dh_next", dh_next, hd),
        ("dinput_gates", dinput_gates, 3 * hd),
        ("dhidden_gates", dhidden_gates, 3 * hd),
        ("dh_prev", dh_prev, hd),
    ];
    cell.dispatch(gpu, &GRU_BACKWARD, &args)
}
