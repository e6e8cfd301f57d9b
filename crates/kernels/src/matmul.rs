//! Batched strided matrix product with bias and activation epilogue.
//! Shader: `shaders/matmul.wgsl`.

use crate::Unary;
use crate::error::{Result, check_len, shape_error};
use crate::gpu::{Access, AdapterClass, Dispatch, Gpu, Kernel, Shader};
use crate::tensor::GpuTensor;

pub(crate) static SHADER: Shader = crate::shader!("matmul", unary, "matmul.wgsl");

/// How one operand is laid out in its buffer: element (z, row, col) lives at
/// `offset + z * batch_stride + row * row_stride + col * col_stride`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatrixView {
    /// Where matrix 0 starts.
    pub offset: usize,
    /// Between the starts of two matrices of a batch.
    pub batch_stride: usize,
    /// Between two rows.
    pub row_stride: usize,
    /// Between two columns.
    pub col_stride: usize,
}

impl MatrixView {
    /// A contiguous row-major `rows x cols` matrix, batches one after another.
    pub fn row_major(rows: usize, cols: usize) -> Self {
        MatrixView { offset: 0, batch_stride: rows * cols, row_stride: cols, col_stride: 1 }
    }

    /// The transpose of a contiguous row-major `cols x rows` matrix, seen as `rows x cols`.
    pub fn transposed(rows: usize, cols: usize) -> Self {
        MatrixView { offset: 0, batch_stride: rows * cols, row_stride: 1, col_stride: rows }
    }

    /// One past the largest element index this view touches.
    pub fn extent(&self, batch: usize, rows: usize, cols: usize) -> usize {
        if batch == 0 || rows == 0 || cols == 0 {
            return 0;
        }
        self.offset + (batch - 1) * self.batch_stride + (rows - 1) * self.row_stride + (cols - 1) * self.col_stride + 1
    }
}

/// Where the bias is added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bias {
    /// No bias.
    None,
    /// bias[col], length n (Linear layers).
    PerColumn,
    /// bias[row], length m (convolution as W . columns).
    PerRow,
}

/// C[z] = act(alpha * A[z] . B[z] + bias) + beta * C[z], with A: m x k, B: k x n, C: m x n.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Matmul {
    /// Products done at once.
    pub batch: usize,
    /// Rows of A and C.
    pub m: usize,
    /// Columns of B and C.
    pub n: usize,
    /// Columns of A, rows of B.
    pub k: usize,
    /// A's layout.
    pub a: MatrixView,
    /// B's layout.
    pub b: MatrixView,
    /// C's column stride is 1.
    pub c: MatrixView,
    /// Where a bias is added.
    pub bias: Bias,
    /// Applied to each element of the result (`Unary::Identity`: none).
    pub activation: Unary,
    /// Scales A·B.
    pub alpha: f32,
    /// Scales what C held (0: overwritten).
    pub beta: f32,
}

impl Matmul {
    /// Contiguous row-major A (m x k), B (k x n), C (m x n), one batch, plain product.
    pub fn new(m: usize, n: usize, k: usize) -> Self {
        Matmul {
            batch: 1,
            m,
            n,
            k,
            a: MatrixView::row_major(m, k),
            b: MatrixView::row_major(k, n),
            c: MatrixView::row_major(m, n),
            bias: Bias::None,
            activation: Unary::Identity,
            alpha: 1.0,
            beta: 0.0,
        }
    }

    /// A is stored as its transpose (k x m, row-major).
    pub fn transpose_a(mut self) -> Self {
        self.a = MatrixView::transposed(self.m, self.k);
        self
    }

    /// B is stored as its transpose (n x k, row-major), as Linear weights are.
    pub fn transpose_b(mut self) -> Self {
        self.b = MatrixView::transposed(self.k, self.n);
        self
    }

    /// `batch` independent products stored one after another.
    pub fn batched(mut self, batch: usize) -> Self {
        self.batch = batch;
        self
    }

    /// Multiply-adds, counted twice.
    pub fn flops(&self) -> f64 {
        2.0 * (self.batch * self.m * self.n * self.k) as f64
    }

    fn validate(&self, a: usize, b: usize, bias: Option<usize>, c: usize) -> Result<()> {
        const OP: &str = "matmul";
        let (z, m, n, k) = (self.batch, self.m, self.n, self.k);
        check_len(OP, &format!("A ({z} x {m} x {k})"), a, self.a.extent(z, m, k))?;
        check_len(OP, &format!("B ({z} x {k} x {n})"), b, self.b.extent(z, k, n))?;
        check_len(OP, &format!("C ({z} x {m} x {n})"), c, self.c.extent(z, m, n))?;
        let want = match self.bias {
            Bias::None => 0,
            Bias::PerColumn => n,
            Bias::PerRow => m,
        };
        match bias {
            Some(len) if want == 0 => {
                Err(shape_error(OP, format!("a bias of {len} was given but the bias mode is None")))
            }
            None if want > 0 => Err(shape_error(OP, format!("bias mode {:?} needs a bias of {want}", self.bias))),
            Some(len) => check_len(OP, "bias", len, want),
            None => Ok(()),
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    shape: [u32; 4],
    a: [u32; 4],
    b: [u32; 4],
    c: [u32; 3],
    bias_mode: u32,
    alpha: f32,
    beta: f32,
    act_alpha: f32,
    _pad: u32,
}

fn view(v: &MatrixView) -> [u32; 4] {
    [v.offset as u32, v.batch_stride as u32, v.row_stride as u32, v.col_stride as u32]
}

/// Which of the two kernels and with what sizes. The register kernel always computes 16x16
/// blocks per invocation (its accumulators are named matrices); its workgroup size varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiling {
    /// Whether the workgroup tiles A and B through shared memory (else registers only).
    pub shared: bool,
    /// Workgroup width, in invocations.
    pub wg_x: u32,
    /// Workgroup height, in invocations.
    pub wg_y: u32,
    /// Rows of C an invocation computes.
    pub tm: u32,
    /// Columns of C an invocation computes.
    pub tn: u32,
    /// The k-tile loaded into shared memory at a time.
    pub bk: u32,
}

impl Tiling {
    /// The tiling for an adapter class: 16x16 register blocks on CPU rasterisers (loads and
    /// barriers are expensive there; see BENCHMARKS.md), shared-memory tiles on GPUs.
    pub fn for_class(class: AdapterClass) -> Tiling {
        match class {
            AdapterClass::Cpu => Tiling { shared: false, wg_x: 8, wg_y: 8, tm: 16, tn: 16, bk: 1 },
            AdapterClass::Gpu => Tiling { shared: true, wg_x: 16, wg_y: 16, tm: 4, tn: 4, bk: 16 },
        }
    }

    fn block(&self) -> (u32, u32) {
        (self.wg_y * self.tm, self.wg_x * self.tn)
    }

    /// Largest K one dispatch may cover under a loop budget: the register kernel's k loop has
    /// no inner loops (one iteration per k, then 16 block stores of 20 iterations); the shared
    /// kernel counts, per BK slice, its two staging loops and, conservatively, its TM and TN
    /// loops as if they did not unroll. Half the budget, for margin.
    fn k_per_dispatch(&self, budget: u64) -> usize {
        if !self.shared {
            return (budget / 2 - 16 * 20) as usize;
        }
        let (bm, bn) = self.block();
        let threads = self.wg_x * self.wg_y;
        let staging = ((self.bk * bm).div_ceil(threads) + (self.bk * bn).div_ceil(threads)) as u64;
        let per_slice = self.bk as u64 * (1 + 2 * self.tm + self.tn) as u64 + staging + 1;
        (budget / 2 / per_slice) as usize * self.bk as usize
    }
}

static REGISTERS: Kernel = Kernel {
    shader: &SHADER,
    entry: "matmul_registers",
    bindings: &[Access::Read, Access::Read, Access::Read, Access::ReadWrite],
};
static SHARED: Kernel = Kernel {
    shader: &SHADER,
    entry: "matmul_shared",
    bindings: &[Access::Read, Access::Read, Access::Read, Access::ReadWrite],
};

/// Prepares C = act(alpha A.B + bias) + beta C with the adapter's tiling.
pub fn matmul(
    gpu: &Gpu,
    mm: &Matmul,
    a: &GpuTensor,
    b: &GpuTensor,
    bias: Option<&GpuTensor>,
    c: &GpuTensor,
) -> Result<Vec<Dispatch>> {
    matmul_tiled(gpu, mm, Tiling::for_class(gpu.class()), a, b, bias, c)
}

/// As [`matmul`] with an explicit tiling (tests run both tilings on every adapter). Where the
/// adapter caps loop iterations ([`Gpu::loop_budget`]), a long K is split into chunks that
/// accumulate into C with beta = 1: one dispatch per chunk.
pub fn matmul_tiled(
    gpu: &Gpu,
    mm: &Matmul,
    tiling: Tiling,
    a: &GpuTensor,
    b: &GpuTensor,
    bias: Option<&GpuTensor>,
    c: &GpuTensor,
) -> Result<Vec<Dispatch>> {
    mm.validate(a.len(), b.len(), bias.map(GpuTensor::len), c.len())?;
    let chunk = match gpu.loop_budget() {
        Some(budget) => (tiling.k_per_dispatch(budget)).max(1),
        None => mm.k.max(1),
    };
    if mm.k > chunk && mm.activation != Unary::Identity {
        return Err(shape_error(
            "matmul",
            format!(
                "k = {} is longer than this adapter runs in one dispatch ({chunk}) and an activation cannot be split",
                mm.k
            ),
        ));
    }
    let mut out = Vec::new();
    // One chunk when K fits (K = 0 too: C still gets its bias, activation and beta term).
    for k0 in (0..mm.k.max(1)).step_by(chunk) {
        let first = k0 == 0;
        let mut part = *mm;
        part.k = chunk.min(mm.k - k0);
        part.a.offset += k0 * mm.a.col_stride;
        part.b.offset += k0 * mm.b.row_stride;
        part.beta = if first { mm.beta } else { 1.0 };
        part.bias = if first { mm.bias } else { Bias::None };
        out.push(dispatch_one(gpu, &part, tiling, a, b, if first { bias } else { None }, c)?);
    }
    Ok(out)
}

fn dispatch_one(
    gpu: &Gpu,
    mm: &Matmul,
    tiling: Tiling,
    a: &GpuTensor,
    b: &GpuTensor,
    bias: Option<&GpuTensor>,
    c: &GpuTensor,
) -> Result<Dispatch> {
    assert!(tiling.tm <= 16 && tiling.tn <= 16, "tiles are at most 16x16 per invocation");
    assert!(tiling.shared || (tiling.tm, tiling.tn) == (16, 16), "the register kernel computes 16x16 blocks");
    let bias_mode = match mm.bias {
        Bias::None => 0,
        Bias::PerColumn => 1,
        Bias::PerRow => 2,
    };
    let params = Params {
        shape: [mm.batch as u32, mm.m as u32, mm.n as u32, mm.k as u32],
        a: view(&mm.a),
        b: view(&mm.b),
        c: [mm.c.offset as u32, mm.c.batch_stride as u32, mm.c.row_stride as u32],
        bias_mode,
        alpha: mm.alpha,
        beta: mm.beta,
        act_alpha: mm.activation.parameter(),
        _pad: 0,
    };
    let (bm, bn) = tiling.block();
    let constants = [
        ("WG_X", tiling.wg_x as f64),
        ("WG_Y", tiling.wg_y as f64),
        ("TM", tiling.tm as f64),
        ("TN", tiling.tn as f64),
        ("BK", tiling.bk as f64),
        ("A_TILE", (tiling.bk * bm) as f64),
        ("B_TILE", (tiling.bk * bn) as f64),
        ("ACT", mm.activation.code() as f64),
    ];
    let kernel = if tiling.shared { &SHARED } else { &REGISTERS };
    let grid = [(mm.n as u32).div_ceil(bn), (mm.m as u32).div_ceil(bm), mm.batch as u32];
    gpu.dispatch(kernel, &constants, &params, &[a, b, bias.unwrap_or(a), c], grid)
}
