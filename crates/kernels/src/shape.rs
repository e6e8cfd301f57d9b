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

/// Calls `f(a, b)` for every index of `shape` in row-major order with its offsets under
/// strides `a` and `b`. The last axis is a plain inner loop, so the cost per element is an add.
pub fn for_each_offset(shape: &[usize], a: &[usize], b: &[usize], mut f: impl FnMut(usize, usize)) {
    let Some((&inner, outer)) = shape.split_last() else {
        return f(0, 0);
    };
    let (ia, ib) = (a[outer.len()], b[outer.len()]);
    if inner == 0 || outer.contains(&0) {
        return;
    }
    let mut index = vec![0usize; outer.len()];
    let (mut oa, mut ob) = (0, 0);
    loop {
        for k in 0..inner {
            f(oa + k * ia, ob + k * ib);
        }
        // Advance the outer multi-index, last axis fastest, updating both offsets.
        let mut axis = outer.len();
        loop {
            if axis == 0 {
                return;
            }
            axis -= 1;
            index[axis] += 1;
            oa += a[axis];
            ob += b[axis];
            if index[axis] < outer[axis] {
                break;
            }
            oa -= a[axis] * outer[axis];
            ob -= b[axis] * outer[axis];
            index[axis] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_follow_row_major_order_under_any_strides() {
        let shape = [2, 3, 4];
        let (a, b) = (contiguous_strides(&shape), vec![1, 8, 2]);
        let mut seen = Vec::new();
        for_each_offset(&shape, &a, &b, |x, y| seen.push((x, y)));
        let want: Vec<(usize, usize)> = (0..2)
            .flat_map(|i| (0..3).flat_map(move |j| (0..4).map(move |k| (i * 12 + j * 4 + k, i + j * 8 + k * 2))))
            .collect();
        assert_eq!(seen, want);
        let mut scalar = Vec::new();
        for_each_offset(&[], &[], &[], |x, y| scalar.push((x, y)));
        assert_eq!(scalar, [(0, 0)]);
        let mut empty = 0;
        for_each_offset(&[3, 0, 2], &[0, 2, 1], &[0, 2, 1], |_, _| empty += 1);
        assert_eq!(empty, 0);
    }
}
