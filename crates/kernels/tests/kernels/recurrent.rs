use crate::common::*;
use kernels::matmul::matmul;
use kernels::recurrent::{gru_cell, gru_cell_backward, lstm_cell, lstm_cell_backward};
use kernels::{Bias, Cell, Matmul, MatrixView, RowView, cpu};

const SIZES: [(usize, usize); 4] = [(1, 1), (3, 7), (33, 65), (5, 257)];

/// Places `rows` [B, width] at step t of a [B, T, width] buffer filled with `fill`.
fn embed(rows: &[f32], batch: usize, t: usize, steps: usize, width: usize, fill: f32) -> Vec<f32> {
    let mut out = vec![fill; batch * steps * width];
    for b in 0..batch {
        out[(b * steps + t) * width..][..width].copy_from_slice(&rows[b * width..][..width]);
    }
    out
}

fn extract(buf: &[f32], batch: usize, t: usize, steps: usize, width: usize) -> Vec<f32> {
    (0..batch).flat_map(|b| buf[(b * steps + t) * width..][..width].to_vec()).collect()
}

gpu_test!(lstm_cell_matches_reference_through_step_views, |gpu| {
    let mut rng = Rng::new(110);
    let (t, steps) = (1, 3);
    for (batch, hidden) in SIZES {
        let cell = Cell { batch, hidden };
        let (h4, n) = (4 * hidden, batch * hidden);
        let gates = rng.vec(batch * h4, -3.0, 3.0);
        let (c_prev, dh, dc) = (rng.vec(n, -1.0, 1.0), rng.vec(n, -1.0, 1.0), rng.vec(n, -1.0, 1.0));
        let dh_next = rng.vec(n, -1.0, 1.0);
        let (mut h, mut c, mut dg, mut dcp) = (vec![0.0; n], vec![0.0; n], vec![0.0; batch * h4], vec![0.0; n]);
        cpu::lstm_cell(&cell, &gates, &c_prev, &mut h, &mut c);
        cpu::lstm_cell_backward(&cell, &gates, &c_prev, &dh, &dh_next, &dc, &mut dg, &mut dcp);
        // Gates, h, c and their gradients at step 1 of [B, 3, ·] buffers; c_prev at step 0 of
        // the same c buffer, as an executor keeps them.
        let step = |w| RowView::step(t, steps, w);
        let prev = RowView::step(t - 1, steps, hidden);
        let gates_g = upload(gpu, &embed(&gates, batch, t, steps, h4, 0.0));
        let c_g = upload(gpu, &embed(&c_prev, batch, t - 1, steps, hidden, f32::NAN));
        let h_g = poisoned(gpu, batch * steps * hidden);
        let (dh_g, dc_g) = (
            upload(gpu, &embed(&dh, batch, t, steps, hidden, 0.0)),
            upload(gpu, &embed(&dc, batch, t, steps, hidden, 0.0)),
        );
        let dh_next_g = upload(gpu, &dh_next);
        let (dg_g, dcp_g) = (poisoned(gpu, batch * steps * h4), poisoned(gpu, batch * steps * hidden));
        let fwd = lstm_cell(gpu, &cell, (&gates_g, step(h4)), (&c_g, prev), (&h_g, step(hidden)), (&c_g, step(hidden)))
            .unwrap();
        let bwd = lstm_cell_backward(
            gpu,
            &cell,
            (&gates_g, step(h4)),
            (&c_g, prev),
            (&dh_g, step(hidden)),
            (&dh_next_g, RowView::rows(hidden)),
            (&dc_g, step(hidden)),
            (&dg_g, step(h4)),
            (&dcp_g, prev),
        )
        .unwrap();
        run(gpu, &[&fwd, &bwd]);
        let what = format!("lstm {batch}x{hidden}");
        assert_close(&format!("{what} h"), &extract(&read(gpu, &h_g), batch, t, steps, hidden), &h);
        assert_close(&format!("{what} c"), &extract(&read(gpu, &c_g), batch, t, steps, hidden), &c);
        assert_close(&format!("{what} dgates"), &extract(&read(gpu, &dg_g), batch, t, steps, h4), &dg);
        assert_close(&format!("{what} dc_prev"), &extract(&read(gpu, &dcp_g), batch, t - 1, steps, hidden), &dcp);
    }
});

gpu_test!(gru_cell_matches_reference, |gpu| {
    let mut rng = Rng::new(111);
    for (batch, hidden) in SIZES {
        let cell = Cell { batch, hidden };
        let (h3, n) = (3 * hidden, batch * hidden);
        let (xg, hg) = (rng.vec(batch * h3, -3.0, 3.0), rng.vec(batch * h3, -3.0, 3.0));
        let (h_prev, dh, dh_next) = (rng.vec(n, -1.0, 1.0), rng.vec(n, -1.0, 1.0), rng.vec(n, -1.0, 1.0));
        let (mut h, mut dxg, mut dhg, mut dhp) =
            (vec![0.0; n], vec![0.0; batch * h3], vec![0.0; batch * h3], vec![0.0; n]);
        cpu::gru_cell(&cell, &xg, &hg, &h_prev, &mut h);
        cpu::gru_cell_backward(&cell, &xg, &hg, &h_prev, &dh, &dh_next, &mut dxg, &mut dhg, &mut dhp);
        let rows = RowView::rows;
        let (xg_g, hg_g, hp_g, dh_g) = (upload(gpu, &xg), upload(gpu, &hg), upload(gpu, &h_prev), upload(gpu, &dh));
        let dh_next_g = upload(gpu, &dh_next);
        let (h_g, dxg_g, dhg_g, dhp_g) =
            (poisoned(gpu, n), poisoned(gpu, batch * h3), poisoned(gpu, batch * h3), poisoned(gpu, n));
        let fwd =
            gru_cell(gpu, &cell, (&xg_g, rows(h3)), (&hg_g, rows(h3)), (&hp_g, rows(hidden)), (&h_g, rows(hidden)))
                .unwrap();
        let bwd = gru_cell_backward(
            gpu,
            &cell,
            (&xg_g, rows(h3)),
            (&hg_g, rows(h3)),
            (&hp_g, rows(hidden)),
            (&dh_g, rows(hidden)),
            (&dh_next_g, rows(hidden)),
            (&dxg_g, rows(h3)),
            (&dhg_g, rows(h3)),
            (&dhp_g, rows(hidden)),
        )
        .unwrap();
        run(gpu, &[&fwd, &bwd]);
        let what = format!("gru {batch}x{hidden}");
        assert_close(&format!("{what} h"), &read(gpu, &h_g), &h);
        assert_close(&format!("{what} dinput"), &read(gpu, &dxg_g), &dxg);
        assert_close(&format!("{what} dhidden"), &read(gpu, &dhg_g), &dhg);
        assert_close(&format!("{what} dh_prev"), &read(gpu, &dhp_g), &dhp);
    }
});

#[test]
fn cell_backward_matches_finite_differences() {
    let mut rng = Rng::new(112);
    // The cells compute in f32: a step of 1e-2 keeps rounding out of the differences.
    let cell = Cell { batch: 2, hidden: 3 };
    let n = 6;
    // LSTM: loss = rh . h + rc . c
    let (gates, c_prev) = (rng.vec(24, -2.0, 2.0), rng.vec(n, -1.0, 1.0));
    let (rh, rc) = (rng.vec(n, -1.0, 1.0), rng.vec(n, -1.0, 1.0));
    let lstm = |g: &[f32], cp: &[f32]| {
        let (mut h, mut c) = (vec![0.0; n], vec![0.0; n]);
        cpu::lstm_cell(&cell, g, cp, &mut h, &mut c);
        dot(&h, &rh) + dot(&c, &rc)
    };
    // dh arrives in two parts, which the cell sums.
    let part = rng.vec(n, -1.0, 1.0);
    let rest: Vec<f32> = rh.iter().zip(&part).map(|(a, b)| a - b).collect();
    let (mut dg, mut dcp) = (vec![0.0; 24], vec![0.0; n]);
    cpu::lstm_cell_backward(&cell, &gates, &c_prev, &part, &rest, &rc, &mut dg, &mut dcp);
    check_gradient("lstm dgates", &gates, &dg, 1e-2, 1e-3, 24, |g| lstm(g, &c_prev));
    check_gradient("lstm dc_prev", &c_prev, &dcp, 1e-2, 1e-3, n, |cp| lstm(&gates, cp));
    // GRU: loss = r . h; dh_prev's direct part plus dhidden . (d hidden gates / d h_prev) is
    // checked in the sequence test; here the three gate gradients and the direct part.
    let (xg, hg, hp, r) =
        (rng.vec(18, -2.0, 2.0), rng.vec(18, -2.0, 2.0), rng.vec(n, -1.0, 1.0), rng.vec(n, -1.0, 1.0));
    let gru = |x: &[f32], hh: &[f32], hp: &[f32]| {
        let mut h = vec![0.0; n];
        cpu::gru_cell(&cell, x, hh, hp, &mut h);
        dot(&h, &r)
    };
    let (mut dx, mut dhh, mut dhp) = (vec![0.0; 18], vec![0.0; 18], vec![0.0; n]);
    let part = rng.vec(n, -1.0, 1.0);
    let rest: Vec<f32> = r.iter().zip(&part).map(|(a, b)| a - b).collect();
    cpu::gru_cell_backward(&cell, &xg, &hg, &hp, &part, &rest, &mut dx, &mut dhh, &mut dhp);
    check_gradient("gru dinput", &xg, &dx, 1e-2, 1e-3, 18, |x| gru(x, &hg, &hp));
    check_gradient("gru dhidden", &hg, &dhh, 1e-2, 1e-3, 18, |hh| gru(&xg, hh, &hp));
    check_gradient("gru dh_prev (direct)", &hp, &dhp, 1e-2, 1e-3, n, |h| gru(&xg, &hg, h));
}

/// torch.nn.LSTM / GRU (one layer, batch_first) written out step by step, in f64.
/// Sizes of a test sequence: batch, steps, input features, hidden units.
#[derive(Clone, Copy)]
struct Dims {
    batch: usize,
    steps: usize,
    input: usize,
    hidden: usize,
}

fn reference_sequence(
    gru: bool,
    dims: &Dims,
    x: &[f32],
    w_ih: &[f32],
    w_hh: &[f32],
    b_ih: &[f32],
    b_hh: &[f32],
) -> Vec<f32> {
    let Dims { batch, steps, input, hidden } = *dims;
    let gates = if gru { 3 } else { 4 };
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    let mut out = vec![0f32; batch * steps * hidden];
    for b in 0..batch {
        let (mut h, mut c) = (vec![0f64; hidden], vec![0f64; hidden]);
        for t in 0..steps {
            let xt = &x[(b * steps + t) * input..][..input];
            let lin = |w: &[f32], v: &[f64], bias: &[f32], row: usize, width: usize| -> f64 {
                bias[row] as f64 + (0..width).map(|k| w[row * width + k] as f64 * v[k]).sum::<f64>()
            };
            let xv: Vec<f64> = xt.iter().map(|&v| v as f64).collect();
            let gx: Vec<f64> = (0..gates * hidden).map(|r| lin(w_ih, &xv, b_ih, r, input)).collect();
            let gh: Vec<f64> = (0..gates * hidden).map(|r| lin(w_hh, &h, b_hh, r, hidden)).collect();
            let mut next = vec![0f64; hidden];
            for j in 0..hidden {
                if gru {
                    let r = sig(gx[j] + gh[j]);
                    let z = sig(gx[hidden + j] + gh[hidden + j]);
                    let nn = (gx[2 * hidden + j] + r * gh[2 * hidden + j]).tanh();
                    next[j] = (1.0 - z) * nn + z * h[j];
                } else {
                    let g = |k: usize| gx[k * hidden + j] + gh[k * hidden + j];
                    let (i, f, gg, o) = (sig(g(0)), sig(g(1)), g(2).tanh(), sig(g(3)));
                    c[j] = f * c[j] + i * gg;
                    next[j] = o * c[j].tanh();
                }
            }
            h = next;
            for j in 0..hidden {
                out[(b * steps + t) * hidden + j] = h[j] as f32;
            }
        }
    }
    out
}

gpu_test!(recurrent_sequences_match_a_step_by_step_reference, |gpu| {
    let mut rng = Rng::new(113);
    let (batch, steps, input, hidden) = (3, 7, 5, 9);
    for gru in [false, true] {
        let gates = if gru { 3 } else { 4 } * hidden;
        let x = rng.vec(batch * steps * input, -1.0, 1.0);
        let (w_ih, w_hh) = (rng.vec(gates * input, -0.5, 0.5), rng.vec(gates * hidden, -0.5, 0.5));
        let (b_ih, b_hh) = (rng.vec(gates, -0.5, 0.5), rng.vec(gates, -0.5, 0.5));
        let want = reference_sequence(gru, &Dims { batch, steps, input, hidden }, &x, &w_ih, &w_hh, &b_ih, &b_hh);

        let (xg, wig, whg, big, bhg) =
            (upload(gpu, &x), upload(gpu, &w_ih), upload(gpu, &w_hh), upload(gpu, &b_ih), upload(gpu, &b_hh));
        let cell = Cell { batch, hidden };
        // Input gates of every step at once: [B*T, G] = x [B*T, I] . W_ihᵀ + b_ih.
        let all_gates = poisoned(gpu, batch * steps * gates);
        let mut input_product = Matmul::new(batch * steps, gates, input).transpose_b();
        input_product.bias = Bias::PerColumn;
        let mut dispatches = matmul(gpu, &input_product, &xg, &wig, Some(&big), &all_gates).unwrap();
        let (h_all, zeros) = (poisoned(gpu, batch * steps * hidden), upload(gpu, &vec![0.0; batch * hidden]));
        let c_all = poisoned(gpu, batch * steps * hidden);
        let hidden_gates = poisoned(gpu, batch * gates);
        for t in 0..steps {
            let (h_prev, h_prev_view) =
                if t == 0 { (&zeros, RowView::rows(hidden)) } else { (&h_all, RowView::step(t - 1, steps, hidden)) };
            // Recurrent product h_{t-1} . W_hhᵀ + b_hh: into the step's gates (LSTM, beta = 1)
            // or into its own buffer (GRU keeps the hidden part apart for r * (.)).
            let mut rec = Matmul::new(batch, gates, hidden).transpose_b();
            rec.a = MatrixView {
                offset: h_prev_view.offset,
                batch_stride: 0,
                row_stride: h_prev_view.stride,
                col_stride: 1,
            };
            rec.bias = Bias::PerColumn;
            let step = |w| RowView::step(t, steps, w);
            if gru {
                dispatches.extend(matmul(gpu, &rec, h_prev, &whg, Some(&bhg), &hidden_gates).unwrap());
                dispatches.push(
                    gru_cell(
                        gpu,
                        &cell,
                        (&all_gates, step(gates)),
                        (&hidden_gates, RowView::rows(gates)),
                        (h_prev, h_prev_view),
                        (&h_all, step(hidden)),
                    )
                    .unwrap(),
                );
            } else {
                rec.c = MatrixView { offset: t * gates, batch_stride: 0, row_stride: steps * gates, col_stride: 1 };
                rec.beta = 1.0;
                dispatches.extend(matmul(gpu, &rec, h_prev, &whg, Some(&bhg), &all_gates).unwrap());
                let (c_prev, c_prev_view) = if t == 0 {
                    (&zeros, RowView::rows(hidden))
                } else {
                    (&c_all, RowView::step(t - 1, steps, hidden))
                };
                dispatches.push(
                    lstm_cell(
                        gpu,
                        &cell,
                        (&all_gates, step(gates)),
                        (c_prev, c_prev_view),
                        (&h_all, step(hidden)),
                        (&c_all, step(hidden)),
                    )
                    .unwrap(),
                );
            }
        }
        run_all(gpu, &dispatches);
        assert_close(if gru { "GRU sequence" } else { "LSTM sequence" }, &read(gpu, &h_all), &want);
    }
});
