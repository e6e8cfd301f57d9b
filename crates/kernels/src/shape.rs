//! Shape helpers shared by the kernel wrappers.

/// Row-major strides of `shape`.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

/// Splits up to 8 values into two vec4s for a uniform block.
pub(crate) fn vec8(values: &[usize]) -> [[u32; 4]; 2] {
    let mut out = [[0u32; 4]; 2];
    for (i, &v) in values.iter().enumerate() {
        out[i / 4][i % 4] = v as u32;
    }
    out
}
