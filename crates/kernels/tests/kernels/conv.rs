use crate::common::*;
use kernels::{Conv2d, conv, cpu};

fn cases() -> Vec<Conv2d> {
    let base = Conv2d {
        batch: 2,
        in_channels: 3,
        height: 7,
        width: 9,
        out_channels: 5,
        kernel: (3, 3),
        stride: (1, 1),
        padding: (0, 0),
        dilation: (1, 1),
    };
    vec![
        base,
        Conv2d { padding: (1, 2), ..base },
        Conv2d { stride: (2, 3), padding: (1, 1), ..base },
        Conv2d { dilation: (2, 1), kernel: (2, 3), ..base },
        Conv2d {
            batch: 3,
            in_channels: 1,
            height: 13,
            width: 13,
            out_channels: 7,
            kernel: (5, 4),
            stride: (3, 2),
            padding: (2, 0),
            dilation: (1, 2),
        },
        Conv2d { batch: 1, in_channels: 2, height: 1, width: 1, out_channels: 3, kernel: (1, 1), ..base },
        // More images than threads, split unevenly between the backward's tasks.
        Conv2d { batch: 5, padding: (1, 1), ..base },
    ]
}

/// Direct definition, independent of im2col.
fn direct_conv(c: &Conv2d, x: &[f32], w: &[f32], bias: &[f32]) -> Vec<f32> {
    let (oh, ow) = (c.out_height(), c.out_width());
    let mut y = vec![0.0; c.output_len()];
    for n in 0..c.batch {
        for o in 0..c.out_channels {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = bias[o] as f64;
                    for ci in 0..c.in_channels {
                        for i in 0..c.kernel.0 {
                            for j in 0..c.kernel.1 {
                                let yy = (oy * c.stride.0 + i * c.dilation.0) as isize - c.padding.0 as isize;
                                let xx = (ox * c.stride.1 + j * c.dilation.1) as isize - c.padding.1 as isize;
                                if yy < 0 || xx < 0 || yy >= c.height as isize || xx >= c.width as isize {
                                    continue;
                                }
                                let xv = x[((n * c.in_channels + ci) * c.height + yy as usize) * c.width + xx as usize];
                                let wv = w[((o * c.in_channels + ci) * c.kernel.0 + i) * c.kernel.1 + j];
                                acc += xv as f64 * wv as f64;
                            }
                        }
                    }
                    y[((n * c.out_channels + o) * oh + oy) * ow + ox] = acc as f32;
                }
            }
        }
    }
    y
}

/// The reference forward with its workspace.
fn forward(c: &Conv2d, x: &[f32], w: &[f32], b: Option<&[f32]>) -> Vec<f32> {
    let (mut col, mut y) = (vec![f32::NAN; c.col_rows() * c.col_cols()], vec![f32::NAN; c.output_len()]);
    cpu::conv2d_forward(c, x, w, b, &mut col, &mut y);
    y
}

/// The reference (dx, dw, dbias) of output gradient dy, with their workspace (`partials` as
/// the graph sizes it, or `partials` elements).
fn backward_in(c: &Conv2d, x: &[f32], w: &[f32], dy: &[f32], partials: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (mut col, mut partials) = (vec![f32::NAN; c.col_rows() * c.col_cols()], vec![f32::NAN; partials]);
    let (mut dw, mut db, mut dx) =
        (vec![f32::NAN; c.weight_len()], vec![f32::NAN; c.out_channels], vec![f32::NAN; c.input_len()]);
    cpu::conv2d_backward(c, x, w, dy, &mut col, &mut partials, Some(&mut dx), &mut dw, Some(&mut db));
    (dx, dw, db)
}

fn backward(c: &Conv2d, x: &[f32], w: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    backward_in(c, x, w, dy, cpu::backward_partials(c).max(c.output_len()))
}

/// The whole batch's column matrix [C·KH·KW, N·OH·OW] as the GPU lays it out: each image's
/// columns, as the CPU forms them, side by side.
fn im2col(c: &Conv2d, x: &[f32]) -> Vec<f32> {
    let (positions, image) = (c.out_height() * c.out_width(), c.in_channels * c.height * c.width);
    let mut col = vec![f32::NAN; c.col_rows() * c.col_cols()];
    for n in 0..c.batch {
        cpu::conv::im2col_image(c, &x[n * image..][..image], &mut col[n * positions..], c.col_cols());
    }
    col
}

/// The adjoint of [`im2col`].
fn col2im(c: &Conv2d, col: &[f32]) -> Vec<f32> {
    let (positions, image) = (c.out_height() * c.out_width(), c.in_channels * c.height * c.width);
    let mut dx = vec![0.0; c.input_len()];
    for n in 0..c.batch {
        cpu::conv::col2im_image(c, &col[n * positions..], c.col_cols(), &mut dx[n * image..][..image]);
    }
    dx
}

#[test]
fn reference_conv_equals_the_direct_definition() {
    let mut rng = Rng::new(30);
    for c in cases() {
        let x = rng.vec(c.input_len(), -1.0, 1.0);
        let w = rng.vec(c.weight_len(), -1.0, 1.0);
        let b = rng.vec(c.out_channels, -1.0, 1.0);
        let y = forward(&c, &x, &w, Some(&b));
        assert_close(&format!("{c:?}"), &y, &direct_conv(&c, &x, &w, &b));
    }
}

#[test]
fn reference_conv_gradients_match_finite_differences() {
    // The convolution is linear in x and in w, so central differences are exact up to rounding.
    let mut rng = Rng::new(31);
    for c in cases() {
        let x = rng.vec(c.input_len(), -1.0, 1.0);
        let w = rng.vec(c.weight_len(), -1.0, 1.0);
        let r = rng.vec(c.output_len(), -1.0, 1.0);
        let loss = |x: &[f32], w: &[f32]| dot(&forward(&c, x, w, None), &r);
        let (dx, dw, db) = backward(&c, &x, &w, &r);
        // One task (room for one partial gradient) sums the same.
        let one_task = backward_in(&c, &x, &w, &r, c.out_channels * (c.col_rows() + 1));
        assert_close("conv dx, one task", &one_task.0, &dx);
        assert_close("conv dw, one task", &one_task.1, &dw);
        assert_close("conv dbias, one task", &one_task.2, &db);
        check_gradient("conv dx", &x, &dx, 0.5, 1e-3, 40, |x| loss(x, &w));
        check_gradient("conv dw", &w, &dw, 0.5, 1e-3, 40, |w| loss(&x, w));
        let want_db: Vec<f32> = (0..c.out_channels)
            .map(|o| {
                (0..c.batch)
                    .flat_map(|n| {
                        r[(n * c.out_channels + o) * c.out_height() * c.out_width()..][..c.out_height() * c.out_width()]
                            .to_vec()
                    })
                    .sum()
            })
            .collect();
        assert_close("conv dbias", &db, &want_db);
    }
}

gpu_test!(im2col_and_col2im_match_reference, |gpu| {
    let mut rng = Rng::new(32);
    for c in cases() {
        let x = rng.vec(c.input_len(), -1.0, 1.0);
        let col_len = c.col_rows() * c.col_cols();
        let want = im2col(&c, &x);
        let (xg, colg) = (upload(gpu, &x), poisoned(gpu, col_len));
        run(gpu, &[&conv::im2col(gpu, &c, &xg, &colg).unwrap()]);
        assert_close(&format!("im2col {c:?}"), &read(gpu, &colg), &want);

        let dcol = rng.vec(col_len, -1.0, 1.0);
        let want = col2im(&c, &dcol);
        let (dcolg, dxg) = (upload(gpu, &dcol), poisoned(gpu, c.input_len()));
        run(gpu, &[&conv::col2im(gpu, &c, &dcolg, &dxg).unwrap()]);
        assert_close(&format!("col2im {c:?}"), &read(gpu, &dxg), &want);
    }
});

gpu_test!(conv_forward_and_backward_match_reference, |gpu| {
    let mut rng = Rng::new(33);
    for c in cases() {
        let x = rng.vec(c.input_len(), -1.0, 1.0);
        let w = rng.vec(c.weight_len(), -1.0, 1.0);
        let b = rng.vec(c.out_channels, -1.0, 1.0);
        let dy = rng.vec(c.output_len(), -1.0, 1.0);
        let y = forward(&c, &x, &w, Some(&b));
        let (dx, dw, db) = backward(&c, &x, &w, &dy);

        let (xg, wg, bg, dyg) = (upload(gpu, &x), upload(gpu, &w), upload(gpu, &b), upload(gpu, &dy));
        let col_len = c.col_rows() * c.col_cols();
        let (col, tmp, yg) = (poisoned(gpu, col_len), poisoned(gpu, c.output_len()), poisoned(gpu, c.output_len()));
        let (dyt, dwg, dbg) =
            (poisoned(gpu, c.output_len()), poisoned(gpu, c.weight_len()), poisoned(gpu, c.out_channels));
        let (dcol, dxg) = (poisoned(gpu, col_len), poisoned(gpu, c.input_len()));
        let mut all = conv::forward(gpu, &c, &xg, &wg, Some(&bg), &col, &tmp, &yg).unwrap();
        all.extend(conv::backward_weight(gpu, &c, &dyg, &col, &dyt, &dwg, Some(&dbg)).unwrap());
        all.extend(conv::backward_input(gpu, &c, &wg, &dyt, &dcol, &dxg).unwrap());
        run(gpu, &all.iter().collect::<Vec<_>>());
        assert_close(&format!("conv y {c:?}"), &read(gpu, &yg), &y);
        assert_close(&format!("conv dw {c:?}"), &read(gpu, &dwg), &dw);
        assert_close(&format!("conv db {c:?}"), &read(gpu, &dbg), &db);
        assert_close(&format!("conv dx {c:?}"), &read(gpu, &dxg), &dx);
    }
});

#[test]
fn conv_rejects_a_kernel_larger_than_the_input() {
    let c = Conv2d {
        batch: 1,
        in_channels: 1,
        height: 2,
        width: 2,
        out_channels: 1,
        kernel: (3, 3),
        stride: (1, 1),
        padding: (0, 0),
        dilation: (1, 1),
    };
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("2x2 input") && err.contains("3x3 kernel"), "{err}");
}
