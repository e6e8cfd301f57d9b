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

/// `shape` with strides `a` and `b` as fewer, longer axes addressing the same elements in the
/// same order: axes of size 1 dropped, and each axis merged into the one before it wherever
/// both stride sets step over it exactly (a[i] = a[i + 1]·shape[i + 1], and the same for b;
/// broadcast axes with stride 0 merge with each other). Loops over the result run long inner
/// rows: two contiguous tensors of one shape become a single axis.
pub fn collapse(shape: &[usize], a: &[usize], b: &[usize]) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    let (mut dims, mut sa, mut sb): (Vec<usize>, Vec<usize>, Vec<usize>) = (Vec::new(), Vec::new(), Vec::new());
    for i in (0..shape.len()).filter(|&i| shape[i] != 1) {
        match (dims.last_mut(), sa.last_mut(), sb.last_mut()) {
            (Some(d), Some(pa), Some(pb)) if *pa == a[i] * shape[i] && *pb == b[i] * shape[i] => {
                *d *= shape[i];
                (*pa, *pb) = (a[i], b[i]);
            }
            _ => {
                dims.push(shape[i]);
                sa.push(a[i]);
                sb.push(b[i]);
            }
        }
    }
    (dims, sa, sb)
}

/// The length of the last axis of `shape` and its strides in `a` and `b` (one element with
/// strides 0 for a scalar): what a loop over one row walks.
pub fn last_axis(shape: &[usize], a: &[usize], b: &[usize]) -> (usize, usize, usize) {
    let last = |v: &[usize], empty| v.last().copied().unwrap_or(empty);
    (last(shape, 1), last(a, 0), last(b, 0))
}

/// Calls `f(a, b)` with the offsets, under strides `a` and `b`, of the first element of every
/// row of `shape` (every index of all axes but the last, row-major; once for a vector, once
/// with (0, 0) for a scalar). The caller walks each row itself, with the last axis' strides.
pub fn for_each_row(shape: &[usize], a: &[usize], b: &[usize], mut f: impl FnMut(usize, usize)) {
    let Some((&inner, outer)) = shape.split_last() else {
        return f(0, 0);
    };
    if inner == 0 || outer.contains(&0) {
        return;
    }
    let mut index = vec![0usize; outer.len()];
    let (mut oa, mut ob) = (0, 0);
    loop {
        f(oa, ob);
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

/// The offsets under strides `a` and `b` of row `row` of `shape` (row-major over all axes
/// but the last), for code that starts a walk in the middle.
pub fn row_offsets(shape: &[usize], a: &[usize], b: &[usize], row: usize) -> (usize, usize) {
    let (mut rest, mut oa, mut ob) = (row, 0, 0);
    for axis in (0..shape.len().saturating_sub(1)).rev() {
        let i = rest % shape[axis];
        rest /= shape[axis];
        oa += i * a[axis];
        ob += i * b[axis];
    }
    (oa, ob)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every element's offsets, row by row, as the kernels walk them.
    fn offsets(shape: &[usize], a: &[usize], b: &[usize]) -> Vec<(usize, usize)> {
        let mut seen = Vec::new();
        let (inner, ia, ib) = (shape.last().copied().unwrap_or(1), a.last().copied(), b.last().copied());
        for_each_row(shape, a, b, |x, y| {
            seen.extend((0..inner).map(|k| (x + k * ia.unwrap_or(0), y + k * ib.unwrap_or(0))))
        });
        seen
    }

    #[test]
    fn rows_follow_row_major_order_under_any_strides() {
        let shape = [2, 3, 4];
        let (a, b) = (contiguous_strides(&shape), vec![1, 8, 2]);
        let want: Vec<(usize, usize)> = (0..2)
            .flat_map(|i| (0..3).flat_map(move |j| (0..4).map(move |k| (i * 12 + j * 4 + k, i + j * 8 + k * 2))))
            .collect();
        assert_eq!(offsets(&shape, &a, &b), want);
        for row in 0..6 {
            assert_eq!(row_offsets(&shape, &a, &b, row), want[row * 4]);
        }
        assert_eq!(offsets(&[], &[], &[]), [(0, 0)]);
        assert!(offsets(&[3, 0, 2], &[0, 2, 1], &[0, 2, 1]).is_empty());
    }

    #[test]
    fn collapsing_keeps_every_offset_and_merges_what_it_can() {
        let cases: [(&[usize], &[usize], &[usize]); 5] = [
            (&[2, 3, 4], &[12, 4, 1], &[12, 4, 1]),
            (&[2, 3, 4], &[12, 4, 1], &[0, 0, 1]),
            (&[2, 1, 3, 4], &[12, 12, 4, 1], &[1, 0, 8, 2]),
            (&[5, 2, 3], &[0, 3, 1], &[6, 3, 1]),
            (&[4, 1, 1], &[1, 1, 1], &[0, 0, 0]),
        ];
        for (shape, a, b) in cases {
            let (dims, sa, sb) = collapse(shape, a, b);
            assert_eq!(offsets(&dims, &sa, &sb), offsets(shape, a, b), "{shape:?} {a:?} {b:?}");
        }
        assert_eq!(collapse(&[2, 3, 4], &[12, 4, 1], &[12, 4, 1]), (vec![24], vec![1], vec![1]));
        assert_eq!(collapse(&[2, 3, 4], &[12, 4, 1], &[0, 0, 1]), (vec![6, 4], vec![4, 1], vec![0, 1]));
    }
}
