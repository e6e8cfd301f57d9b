use crate::common::*;
use kernels::layout::strided_copy;
use kernels::reduce::{argmax, reduce};
use kernels::{ReduceOp, Reduction, StridedCopy, cpu};

fn check_copy(gpu: &kernels::Gpu, copy: &StridedCopy, src: &[f32], dst_len: usize, what: &str) {
    let mut want = vec![f32::NAN; dst_len];
    cpu::strided_copy(copy, src, &mut want);
    let (s, d) = (upload(gpu, src), poisoned(gpu, dst_len));
    run(gpu, &[&strided_copy(gpu, copy, &s, &d).unwrap()]);
    let got = read(gpu, &d);
    // Untouched destination elements stay NaN in both.
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(g == w || (g.is_nan() && w.is_nan()), "{what}: [{i}] got {g} want {w}");
    }
}

gpu_test!(permute_slice_and_concat_match_reference, |gpu| {
    let mut rng = Rng::new(20);
    let shape = [3, 7, 33, 2];
    let x = rng.vec(shape.iter().product(), -1.0, 1.0);
    for perm in [[0, 1, 2, 3], [3, 2, 1, 0], [1, 0, 3, 2], [2, 0, 3, 1]] {
        check_copy(gpu, &StridedCopy::permute(&shape, &perm).unwrap(), &x, x.len(), &format!("permute {perm:?}"));
    }
    check_copy(gpu, &StridedCopy::slice(&shape, 2, 5, 27).unwrap(), &x, 3 * 7 * 27 * 2, "slice");
    // concat of [3, 7, 33, 2] and [3, 4, 33, 2] along axis 1: the second part lands after the first.
    let whole = [3, 11, 33, 2];
    check_copy(gpu, &StridedCopy::place(&shape, &whole, 1, 0).unwrap(), &x, whole.iter().product(), "place 0");
    let y = rng.vec(3 * 4 * 33 * 2, -1.0, 1.0);
    check_copy(gpu, &StridedCopy::place(&[3, 4, 33, 2], &whole, 1, 7).unwrap(), &y, whole.iter().product(), "place 7");
    assert!(StridedCopy::permute(&shape, &[0, 0, 1, 2]).is_err());
    assert!(StridedCopy::place(&[3, 4, 33, 2], &whole, 1, 8).is_err());
});

gpu_test!(reductions_match_reference, |gpu| {
    let mut rng = Rng::new(21);
    for shape in [[1usize, 1, 1], [3, 257, 7], [33, 1, 127], [2, 1000, 3], [257, 3, 1]] {
        for axis in 0..3 {
            let r = Reduction::along(&shape, axis);
            let x = rng.vec(r.input_len(), -3.0, 3.0);
            let xg = upload(gpu, &x);
            for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max] {
                let mut want = vec![0.0; r.output_len()];
                cpu::reduce(op, &r, &x, &mut want);
                let y = poisoned(gpu, r.output_len());
                run(gpu, &[&reduce(gpu, op, &r, &xg, &y).unwrap()]);
                assert_close(&format!("{op:?} {shape:?} axis {axis}"), &read(gpu, &y), &want);
            }
            let mut want = vec![0u32; r.output_len()];
            cpu::argmax(&r, &x, &mut want);
            let y = poisoned(gpu, r.output_len());
            run(gpu, &[&argmax(gpu, &r, &xg, &y).unwrap()]);
            assert_eq!(gpu.read::<u32>(&y).unwrap(), want, "argmax {shape:?} axis {axis}");
        }
    }
});
