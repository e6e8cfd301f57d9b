//! Layout changes as one strided copy: permute/transpose, slice, concat, broadcast-expand.
//! Shader: `shaders/layout.wgsl`.

use crate::error::{Result, check_len, shape_error};
use crate::gpu::{Access, Dispatch, Gpu, Kernel, Shader};
use crate::shape::{contiguous_strides, vec8};
use crate::tensor::GpuTensor;

pub(crate) static SHADER: Shader = crate::shader!("layout", "layout.wgsl");

/// Copies every index of `shape` from `src_offset + idx . src_strides` to
/// `dst_offset + idx . dst_strides`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StridedCopy {
    /// The copied region's shape.
    pub shape: Vec<usize>,
    /// Where the source's region starts.
    pub src_offset: usize,
    /// The source's stride along each axis of `shape`.
    pub src_strides: Vec<usize>,
    /// Where the destination's region starts.
    pub dst_offset: usize,
    /// The destination's stride along each axis of `shape`.
    pub dst_strides: Vec<usize>,
}

impl StridedCopy {
    /// out = xᵀ along `perm` (out axis a is input axis perm[a]), both contiguous.
    pub fn permute(shape: &[usize], perm: &[usize]) -> Result<StridedCopy> {
        let mut seen = vec![false; shape.len()];
        if perm.len() != shape.len() || perm.iter().any(|&a| a >= shape.len() || std::mem::replace(&mut seen[a], true))
        {
            return Err(shape_error("permute", format!("{perm:?} is not a permutation of the axes of {shape:?}")));
        }
        let strides = contiguous_strides(shape);
        let out_shape: Vec<usize> = perm.iter().map(|&a| shape[a]).collect();
        Ok(StridedCopy {
            src_offset: 0,
            src_strides: perm.iter().map(|&a| strides[a]).collect(),
            dst_offset: 0,
            dst_strides: contiguous_strides(&out_shape),
            shape: out_shape,
        })
    }

    /// out = x[.., start..start + len, ..] along `axis`, contiguous.
    pub fn slice(shape: &[usize], axis: usize, start: usize, len: usize) -> Result<StridedCopy> {
        if axis >= shape.len() || start + len > shape[axis] {
            return Err(shape_error("slice", format!("{start}..{} of axis {axis} of {shape:?}", start + len)));
        }
        let strides = contiguous_strides(shape);
        let mut out_shape = shape.to_vec();
        out_shape[axis] = len;
        Ok(StridedCopy {
            src_offset: start * strides[axis],
            src_strides: strides,
            dst_offset: 0,
            dst_strides: contiguous_strides(&out_shape),
            shape: out_shape,
        })
    }

    /// Places a contiguous `part` into `whole` at `start` along `axis` (one input of a concat).
    pub fn place(part: &[usize], whole: &[usize], axis: usize, start: usize) -> Result<StridedCopy> {
        let fits = part.len() == whole.len()
            && axis < part.len()
            && part.iter().zip(whole).enumerate().all(|(a, (&p, &w))| if a == axis { start + p <= w } else { p == w });
        if !fits {
            return Err(shape_error(
                "concat",
                format!("a {part:?} part does not fit {whole:?} at {start} on axis {axis}"),
            ));
        }
        let strides = contiguous_strides(whole);
        Ok(StridedCopy {
            shape: part.to_vec(),
            src_offset: 0,
            src_strides: contiguous_strides(part),
            dst_offset: start * strides[axis],
            dst_strides: strides,
        })
    }

    /// Elements copied.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether nothing is copied.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn extent(&self, offset: usize, strides: &[usize]) -> usize {
        if self.is_empty() {
            return 0;
        }
        offset + 1 + self.shape.iter().zip(strides).map(|(&d, &s)| (d - 1) * s).sum::<usize>()
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    rank: u32,
    src_off: u32,
    dst_off: u32,
    shape: [[u32; 4]; 2],
    src: [[u32; 4]; 2],
    dst: [[u32; 4]; 2],
}

static COPY: Kernel = Kernel { shader: &SHADER, entry: "strided_copy", bindings: &[Access::Read, Access::ReadWrite] };

/// Copies `copy`'s region of `src` into `dst`.
pub fn strided_copy(gpu: &Gpu, copy: &StridedCopy, src: &GpuTensor, dst: &GpuTensor) -> Result<Dispatch> {
    if copy.shape.len() > 8 || copy.src_strides.len() != copy.shape.len() || copy.dst_strides.len() != copy.shape.len()
    {
        return Err(shape_error("strided_copy", format!("rank {} (at most 8, one stride per axis)", copy.shape.len())));
    }
    check_len("strided_copy", "src", src.len(), copy.extent(copy.src_offset, &copy.src_strides))?;
    check_len("strided_copy", "dst", dst.len(), copy.extent(copy.dst_offset, &copy.dst_strides))?;
    let params = Params {
        n: copy.len() as u32,
        rank: copy.shape.len() as u32,
        src_off: copy.src_offset as u32,
        dst_off: copy.dst_offset as u32,
        shape: vec8(&copy.shape),
        src: vec8(&copy.src_strides),
        dst: vec8(&copy.dst_strides),
    };
    gpu.dispatch_linear(&COPY, &[], &params, &[src, dst], copy.len())
}
