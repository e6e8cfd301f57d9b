//! Embedding lookup and its deterministic, atomic-free backward (sort, then segment sums).
//! Shader: `shaders/embedding.wgsl`.

use crate::error::{Result, check_len};
use crate::gpu::{Access, Dispatch, Gpu, Kernel, Shader};
use crate::tensor::GpuTensor;

pub(crate) static SHADER: Shader = crate::shader!("embedding", "embedding.wgsl");

use Access::{Read, ReadWrite};

/// `tokens` ids (u32) into a [vocab, dim] table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Embedding {
    /// Ids looked up.
    pub tokens: usize,
    /// Rows of the table.
    pub vocab: usize,
    /// Features of a row.
    pub dim: usize,
}

impl Embedding {
    /// Length of the two sort scratch tensors backward needs.
    pub fn sort_len(&self) -> usize {
        self.tokens.next_power_of_two()
    }

    fn params(&self, j: usize, k: usize) -> Params {
        Params {
            tokens: self.tokens as u32,
            vocab: self.vocab as u32,
            dim: self.dim as u32,
            padded: self.sort_len() as u32,
            j: j as u32,
            k: k as u32,
            _pad: [0; 2],
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    tokens: u32,
    vocab: u32,
    dim: u32,
    padded: u32,
    j: u32,
    k: u32,
    _pad: [u32; 2],
}

static FORWARD: Kernel = Kernel { shader: &SHADER, entry: "embedding_forward", bindings: &[Read, Read, ReadWrite] };
static SORT_INIT: Kernel = Kernel { shader: &SHADER, entry: "sort_init", bindings: &[Read, ReadWrite, ReadWrite] };
static BITONIC: Kernel = Kernel { shader: &SHADER, entry: "bitonic_step", bindings: &[ReadWrite, ReadWrite] };
static BACKWARD: Kernel =
    Kernel { shader: &SHADER, entry: "embedding_backward", bindings: &[Read, Read, Read, ReadWrite] };

/// out [tokens, dim] = weight[ids].
pub fn embedding(gpu: &Gpu, e: &Embedding, ids: &GpuTensor, weight: &GpuTensor, out: &GpuTensor) -> Result<Dispatch> {
    check_len("embedding", "ids", ids.len(), e.tokens)?;
    check_len("embedding", "weight", weight.len(), e.vocab * e.dim)?;
    check_len("embedding", "out", out.len(), e.tokens * e.dim)?;
    gpu.dispatch_linear(&FORWARD, &[], &e.params(0, 0), &[ids, weight, out], e.tokens * e.dim)
}

/// dweight [vocab, dim] = sum of the dy rows of each token (zero for absent tokens). `keys` and
/// `positions` are scratch of [`Embedding::sort_len`] elements.
pub fn embedding_backward(
    gpu: &Gpu,
    e: &Embedding,
    ids: &GpuTensor,
    dy: &GpuTensor,
    keys: &GpuTensor,
    positions: &GpuTensor,
    dweight: &GpuTensor,
) -> Result<Vec<Dispatch>> {
    const OP: &str = "embedding_backward";
    // One token's run can be every token (a padding id), plus the binary search.
    gpu.check_loop_budget(OP, e.tokens as u64 + 64, || format!("{} tokens", e.tokens))?;
    check_len(OP, "ids", ids.len(), e.tokens)?;
    check_len(OP, "dy", dy.len(), e.tokens * e.dim)?;
    check_len(OP, "keys", keys.len(), e.sort_len())?;
    check_len(OP, "positions", positions.len(), e.sort_len())?;
    check_len(OP, "dweight", dweight.len(), e.vocab * e.dim)?;
    let n = e.sort_len();
    let mut out = vec![gpu.dispatch_linear(&SORT_INIT, &[], &e.params(0, 0), &[ids, keys, positions], n)?];
    let mut k = 2;
    while k <= n {
        let mut j = k / 2;
        while j > 0 {
            out.push(gpu.dispatch_linear(&BITONIC, &[], &e.params(j, k), &[keys, positions], n)?);
            j /= 2;
        }
        k *= 2;
    }
    out.push(gpu.dispatch_linear(&BACKWARD, &[], &e.params(0, 0), &[keys, positions, dy, dweight], e.vocab * e.dim)?);
    Ok(out)
}
