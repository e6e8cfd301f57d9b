//! Fused softmax attention with online softmax, and its backward.
//! Shader: `shaders/attention.wgsl`.

use crate::error::{Result, check_len, shape_error};
use crate::gpu::{Access, AdapterClass, Dispatch, Gpu, Kernel, Shader};
use crate::tensor::GpuTensor;

pub(crate) static SHADER: Shader = crate::shader!("attention", "attention.wgsl");

use Access::{Read, ReadWrite};

/// Largest head dimension the kernels hold in registers (MAX_D in the shader).
pub const MAX_HEAD_DIM: usize = 256;

/// Q [batch*heads, tq, head_dim], K and V [batch*heads, tk, head_dim]; an optional key-padding
/// mask [batch, tk] of u32 (0 = hidden).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attention {
    /// Samples.
    pub batch: usize,
    /// Attention heads of each sample.
    pub heads: usize,
    /// Query positions.
    pub tq: usize,
    /// Key (and value) positions.
    pub tk: usize,
    /// Features of one head.
    pub head_dim: usize,
    /// Usually 1 / sqrt(head_dim).
    pub scale: f32,
    /// Hide key j from query i when j > i.
    pub causal: bool,
}

impl Attention {
    /// Slices of Q, K and V: batch × heads.
    pub fn bh(&self) -> usize {
        self.batch * self.heads
    }

    /// Elements of Q (and O).
    pub fn q_len(&self) -> usize {
        self.bh() * self.tq * self.head_dim
    }

    /// Elements of K, and of V.
    pub fn kv_len(&self) -> usize {
        self.bh() * self.tk * self.head_dim
    }

    /// One value per query row: the log-sum-exp, or the backward's delta.
    pub fn rows(&self) -> usize {
        self.bh() * self.tq
    }

    /// FLOPs of the forward products (QKᵀ and PV).
    pub fn flops_forward(&self) -> f64 {
        4.0 * (self.bh() * self.tq * self.tk * self.head_dim) as f64
    }

    fn validate(&self) -> Result<()> {
        if self.head_dim == 0 || self.head_dim > MAX_HEAD_DIM || self.tq == 0 || self.tk == 0 || self.bh() == 0 {
            return Err(shape_error(
                "attention",
                format!("{self:?}: sizes must be positive and head_dim at most {MAX_HEAD_DIM}"),
            ));
        }
        Ok(())
    }

    fn params(&self, has_mask: bool) -> Params {
        Params {
            bh: self.bh() as u32,
            heads: self.heads as u32,
            tq: self.tq as u32,
            tk: self.tk as u32,
            scale: self.scale,
            causal: self.causal as u32,
            has_mask: has_mask as u32,
            _pad: 0,
        }
    }

    /// Query rows per workgroup and keys per tile, halved until the workgroup memory (two K/V
    /// tiles and two per-row vectors) fits the adapter.
    fn tiles(&self, gpu: &Gpu) -> (u32, u32) {
        let bq = match gpu.class() {
            AdapterClass::Gpu => 64,
            AdapterClass::Cpu => 32,
        };
        let budget = gpu.limits().max_compute_workgroup_storage_size as usize;
        let d4 = self.head_dim.div_ceil(4);
        let bytes = |bkv: usize| 16 * 2 * bkv * d4 + 8 * bkv;
        let mut bkv = 32;
        while bytes(bkv) > budget && bkv > 1 {
            bkv /= 2;
        }
        (bq, bkv as u32)
    }

    /// Loop iterations one invocation runs (the key loop, or the query loop in backward). With
    /// D4 <= 16 the per-key loops over the head dimension unroll and cost nothing.
    fn check_loops(&self, gpu: &Gpu, write_probs: bool) -> Result<()> {
        let (bq, bkv) = self.tiles(gpu);
        let d4 = self.head_dim.div_ceil(4) as u64;
        let per_row = 2 + if d4 > 16 { 3 * d4 } else { 0 };
        let rows = self.tq.max(self.tk) as u64;
        let tiles = rows.div_ceil(bkv as u64);
        let staging = (bkv as u64 * d4).div_ceil(bq as u64) + 1;
        let probs = if write_probs { self.tk as u64 * (1 + if d4 > 16 { d4 } else { 0 }) } else { 0 };
        let total = rows * per_row + tiles * staging + probs + self.head_dim as u64 + 4 * d4;
        gpu.check_loop_budget("attention", total, || format!("{} keys with head_dim {}", self.tk, self.head_dim))
    }

    fn constants(&self, gpu: &Gpu, write_probs: bool) -> Vec<(&'static str, f64)> {
        let (bq, bkv) = self.tiles(gpu);
        let d4 = self.head_dim.div_ceil(4);
        vec![
            ("D", self.head_dim as f64),
            ("D4", d4 as f64),
            ("BQ", bq as f64),
            ("BKV", bkv as f64),
            ("TILE", (bkv as usize * d4) as f64),
            ("WRITE_PROBS", write_probs as u32 as f64),
        ]
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    bh: u32,
    heads: u32,
    tq: u32,
    tk: u32,
    scale: f32,
    causal: u32,
    has_mask: u32,
    _pad: u32,
}

static FORWARD: Kernel = Kernel {
    shader: &SHADER,
    entry: "attention_forward",
    bindings: &[Read, Read, Read, Read, ReadWrite, ReadWrite, ReadWrite],
};
static DELTA: Kernel =
    Kernel { shader: &SHADER, entry: "attention_backward_delta", bindings: &[Read, Read, ReadWrite] };
static DQ: Kernel = Kernel {
    shader: &SHADER,
    entry: "attention_backward_dq",
    bindings: &[Read, Read, Read, Read, Read, Read, Read, ReadWrite],
};
static DKDV: Kernel = Kernel {
    shader: &SHADER,
    entry: "attention_backward_dkdv",
    bindings: &[Read, Read, Read, Read, Read, Read, Read, ReadWrite, ReadWrite],
};

fn check_inputs(a: &Attention, q: &GpuTensor, k: &GpuTensor, v: &GpuTensor, mask: Option<&GpuTensor>) -> Result<()> {
    a.validate()?;
    check_len("attention", "Q", q.len(), a.q_len())?;
    check_len("attention", "K", k.len(), a.kv_len())?;
    check_len("attention", "V", v.len(), a.kv_len())?;
    if let Some(m) = mask {
        check_len("attention", "key mask", m.len(), a.batch * a.tk)?;
    }
    Ok(())
}

/// O = softmax(Q Kᵀ scale + masks) V; `lse` [bh * tq] keeps each row's log-sum-exp for
/// backward; `probs` [bh, tq, tk], when given, receives the attention probabilities.
#[allow(clippy::too_many_arguments)]
pub fn attention(
    gpu: &Gpu,
    a: &Attention,
    q: &GpuTensor,
    k: &GpuTensor,
    v: &GpuTensor,
    key_mask: Option<&GpuTensor>,
    o: &GpuTensor,
    lse: &GpuTensor,
    probs: Option<&GpuTensor>,
) -> Result<Dispatch> {
    check_inputs(a, q, k, v, key_mask)?;
    a.check_loops(gpu, probs.is_some())?;
    check_len("attention", "O", o.len(), a.q_len())?;
    check_len("attention", "lse", lse.len(), a.rows())?;
    let write_probs = probs.is_some();
    // An unused binding still needs a buffer: a one-element stand-in.
    let stand_in;
    let probs = match probs {
        Some(t) => {
            check_len("attention", "probs", t.len(), a.rows() * a.tk)?;
            t
        }
        None => {
            stand_in = gpu.tensor(1)?;
            &stand_in
        }
    };
    let (bq, _) = a.tiles(gpu);
    let grid = [a.tq.div_ceil(bq as usize) as u32, a.bh() as u32, 1];
    let tensors = [q, k, v, key_mask.unwrap_or(q), o, lse, probs];
    gpu.dispatch(&FORWARD, &a.constants(gpu, write_probs), &a.params(key_mask.is_some()), &tensors, grid)
}

/// dQ, dK, dV from dO and the forward's O and `lse`; `delta` [bh * tq] is scratch.
#[allow(clippy::too_many_arguments)]
pub fn attention_backward(
    gpu: &Gpu,
    a: &Attention,
    q: &GpuTensor,
    k: &GpuTensor,
    v: &GpuTensor,
    key_mask: Option<&GpuTensor>,
    o: &GpuTensor,
    d_o: &GpuTensor,
    lse: &GpuTensor,
    delta: &GpuTensor,
    dq: &GpuTensor,
    dk: &GpuTensor,
    dv: &GpuTensor,
) -> Result<[Dispatch; 3]> {
    check_inputs(a, q, k, v, key_mask)?;
    a.check_loops(gpu, false)?;
    for (name, t, len) in [("O", o, a.q_len()), ("dO", d_o, a.q_len()), ("dQ", dq, a.q_len())] {
        check_len("attention_backward", name, t.len(), len)?;
    }
    for (name, t, len) in
        [("dK", dk, a.kv_len()), ("dV", dv, a.kv_len()), ("lse", lse, a.rows()), ("delta", delta, a.rows())]
    {
        check_len("attention_backward", name, t.len(), len)?;
    }
    let params = a.params(key_mask.is_some());
    let constants = a.constants(gpu, false);
    let mask = key_mask.unwrap_or(q);
    let (bq, _) = a.tiles(gpu);
    let bh = a.bh() as u32;
    Ok([
        gpu.dispatch_linear(&DELTA, &constants, &params, &[o, d_o, delta], a.rows())?,
        gpu.dispatch(
            &DQ,
            &constants,
            &params,
            &[q, k, v, mask, d_o, lse, delta, dq],
            [a.tq.div_ceil(bq as usize) as u32, bh, 1],
        )?,
        gpu.dispatch(
            &DKDV,
            &constants,
            &params,
            &[q, k, v, mask, d_o, lse, delta, dk, dv],
            [a.tk.div_ceil(bq as usize) as u32, bh, 1],
        )?,
    ])
}
