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

/// For every index of `shape` in row-major order, its offsets under strides `a` and `b`.
pub fn strided_offsets<'a>(
    shape: &'a [usize],
    a: &'a [usize],
    b: &'a [usize],
) -> impl Iterator<Item = (usize, usize)> + 'a {
    let len: usize = shape.iter().product();
    let mut index = vec![0usize; shape.len()];
    (0..len).map(move |_| {
        let offsets =
            index.iter().zip(a.iter().zip(b)).fold((0, 0), |(oa, ob), (&i, (&sa, &sb))| (oa + i * sa, ob + i * sb));
        // Advance the multi-index, last axis fastest.
        for axis in (0..shape.len()).rev() {
            index[axis] += 1;
            if index[axis] < shape[axis] {
                break;
            }
            index[axis] = 0;
        }
        offsets
    })
}
