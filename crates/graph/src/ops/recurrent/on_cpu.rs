//! The recurrence on the CPU. A step's rows depend only on the same rows at the step before,
//! so the batch is cut into groups of rows, one per thread, and each group runs every step of
//! its rows alone: no step waits for another thread. The weights are packed once per call
//! ([`Packed`]) and serve every step of every group.

use std::ops::Range;

use kernels::cpu::packed::{Columns, Packed};
use kernels::{Bias, Cell, Matmul, cpu};
use rayon::prelude::*;

use super::Dims;

/// Rows a group has at least: a tile is 6 rows, and fewer rows per thread leave tiles empty.
const MIN_ROWS: usize = 6;

/// Rows a group's step runs at a time: a chunk's gates (48 × 4H: 96 KiB at H = 128) stay in
/// the core's cache from the product that forms them to the cell that reads them, where a
/// whole group's (1 MiB for 500 rows) went out to memory and back.
const CHUNK: usize = 8 * MIN_ROWS;

/// A group's `m` rows in chunks of [`CHUNK`].
fn chunks(m: usize) -> impl Iterator<Item = Range<usize>> {
    (0..m).step_by(CHUNK).map(move |r| r..(r + CHUNK).min(m))
}

/// Rows `r` of a [rows, w] slice.
fn span<'a>(buf: &'a [f32], r: &Range<usize>, w: usize) -> &'a [f32] {
    &buf[r.start * w..r.end * w]
}

fn span_mut<'a>(buf: &'a mut [f32], r: &Range<usize>, w: usize) -> &'a mut [f32] {
    &mut buf[r.start * w..r.end * w]
}

/// The batch's rows cut into at most one group per thread.
pub(super) fn groups(batch: usize) -> Vec<Range<usize>> {
    let n = rayon::current_num_threads().min(batch / MIN_ROWS).max(1);
    (0..n).map(|g| g * batch / n..(g + 1) * batch / n).collect()
}

/// A time-major [steps, B, w] buffer cut into each group's rows at every step: [group][step].
fn by_group<'a>(
    buf: &'a mut [f32],
    steps: usize,
    batch: usize,
    w: usize,
    groups: &[Range<usize>],
) -> Vec<Vec<&'a mut [f32]>> {
    let mut out: Vec<Vec<&mut [f32]>> = groups.iter().map(|_| Vec::with_capacity(steps)).collect();
    for step in buf[..steps * batch * w].chunks_mut(batch * w) {
        let mut rest = step;
        for (parts, rows) in out.iter_mut().zip(groups) {
            let (part, tail) = std::mem::take(&mut rest).split_at_mut(rows.len() * w);
            parts.push(part);
            rest = tail;
        }
    }
    out
}

/// A group's rows of a [T, B, w] buffer at step t (or of a [B, w] one at t = 0).
fn at<'a>(buf: &'a [f32], d: &Dims, t: usize, w: usize, rows: &Range<usize>) -> &'a [f32] {
    &buf[(t * d.batch + rows.start) * w..(t * d.batch + rows.end) * w]
}

/// Step `read` of a group's steps to read and step `write` to write.
fn read_write<'a>(steps: &'a mut [&mut [f32]], read: usize, write: usize) -> (&'a [f32], &'a mut [f32]) {
    if read < write {
        let (a, b) = steps.split_at_mut(write);
        (&*a[read], &mut *b[0])
    } else {
        let (a, b) = steps.split_at_mut(read);
        (&*b[0], &mut *a[write])
    }
}

/// Each row of `out` [rows, w] = `bias`.
fn rows_of(out: &mut [f32], bias: &[f32]) {
    out.chunks_mut(bias.len()).for_each(|row| row.copy_from_slice(bias));
}

/// The step whose part of the gates buffer a step writes. Gates that nobody reads (in
/// evaluation: no backward) all go through step 0's part, which stays in the core's cache,
/// instead of streaming T·B·G·H floats out to memory (57 MB for an MNIST LSTM at batch 1000).
fn gates_slot(t: usize, keep_gates: bool) -> usize {
    if keep_gates { t } else { 0 }
}

/// Whether an LSTM's steps multiply [x_t, h_prev] by [Wᵢₕ | Wₕₕ]ᵀ, rather than taking the
/// input product (with the bias) of every step at once first. Fused, no step's input gates go
/// out to memory and back, but every step reads Wᵢₕ again beside Wₕₕ: that pays where x is
/// narrow beside h. Measured on a 2-core Xeon (`dlcli bench`, 3 alternated runs): the MNIST
/// LSTM (I = 28, H = 128) evaluates 10-15% faster fused and trains as fast; the character
/// LSTM (I = 64 then 256, H = 256) fused in both layers trains 8% and evaluates 6% slower than
/// in neither, and fused in its first alone evaluates 5% faster.
pub(super) fn fuses_input(inputs: usize, hidden: usize) -> bool {
    4 * inputs <= hidden
}

/// h, c and the gate pre-activations (x Wᵢₕᵀ + h_prev Wₕₕᵀ + b) of an LSTM over x [T, B, I];
/// the gates of every step only where `keep_gates`; the input product in each step's where
/// `fused` (see [`fuses_input`]).
pub(super) fn lstm(
    d: &Dims,
    groups: &[Range<usize>],
    [x, w_ih, w_hh, bias, h0, c0]: [&[f32]; 6],
    h: &mut [f32],
    c: &mut [f32],
    (gates, keep_gates): (&mut [f32], bool),
    fused: bool,
) {
    let (hd, w, inputs) = (d.hidden, d.width(), w_ih.len() / d.width());
    let packed = match fused {
        true => {
            let weight = |i: usize, j: usize| if i < inputs { w_ih[j * inputs + i] } else { w_hh[j * hd + i - inputs] };
            Packed::from_fn(inputs + hd, w, weight)
        }
        false => {
            let mut input_product = Matmul::new(d.steps * d.batch, w, inputs).transpose_b();
            input_product.bias = Bias::PerColumn;
            cpu::matmul(&input_product, x, w_ih, Some(bias), gates);
            Packed::new(hd, w, w_hh, 1, hd)
        }
    };
    let split = |buf, w| by_group(buf, d.steps, d.batch, w, groups);
    let parts = split(h, hd).into_iter().zip(split(c, hd)).zip(split(gates, w));
    groups.par_iter().zip(parts.collect::<Vec<_>>()).for_each(|(rows, ((mut h, mut c), mut g))| {
        let (h0, c0) = (at(h0, d, 0, hd, rows), at(c0, d, 0, hd, rows));
        for t in d.order() {
            let (h_prev, h_t) = match d.prev(t) {
                Some(p) => read_write(&mut h, p, t),
                None => (h0, &mut *h[t]),
            };
            let (c_prev, c_t) = match d.prev(t) {
                Some(p) => read_write(&mut c, p, t),
                None => (c0, &mut *c[t]),
            };
            let x_t = at(x, d, t, inputs, rows);
            for r in chunks(rows.len()) {
                // Unfused, step t's part already holds its input gates.
                let gates = span_mut(g[gates_slot(t, keep_gates || !fused)], &r, w);
                let h_prev_rows = Columns::rows(span(h_prev, &r, hd), hd);
                match fused {
                    true => {
                        rows_of(gates, bias);
                        let a = [Columns::rows(span(x_t, &r, inputs), inputs), h_prev_rows];
                        packed.multiply_add(&a, r.len(), gates, w);
                    }
                    false => packed.multiply_add(&[h_prev_rows], r.len(), gates, w),
                }
                let cell = Cell { batch: r.len(), hidden: hd };
                cpu::lstm_cell(&cell, gates, span(c_prev, &r, hd), span_mut(h_t, &r, hd), span_mut(c_t, &r, hd));
            }
        }
    });
}

/// h and the hidden gates (h_prev Wₕₕᵀ + bₕₕ) of a GRU; those of every step only where
/// `keep_gates`.
pub(super) fn gru(
    d: &Dims,
    groups: &[Range<usize>],
    [xgates, w_hh, b_hh, h0]: [&[f32]; 4],
    h: &mut [f32],
    (hidden_gates, keep_gates): (&mut [f32], bool),
) {
    let (hd, w) = (d.hidden, d.width());
    let packed = Packed::new(hd, w, w_hh, 1, hd);
    let split = |buf, w| by_group(buf, d.steps, d.batch, w, groups);
    let parts: Vec<_> = split(h, hd).into_iter().zip(split(hidden_gates, w)).collect();
    groups.par_iter().zip(parts).for_each(|(rows, (mut h, mut hg))| {
        let h0 = at(h0, d, 0, hd, rows);
        for t in d.order() {
            let (h_prev, h_t) = match d.prev(t) {
                Some(p) => read_write(&mut h, p, t),
                None => (h0, &mut *h[t]),
            };
            let x_t = at(xgates, d, t, w, rows);
            for r in chunks(rows.len()) {
                let gates = span_mut(hg[gates_slot(t, keep_gates)], &r, w);
                rows_of(gates, b_hh);
                packed.multiply_add(&[Columns::rows(span(h_prev, &r, hd), hd)], r.len(), gates, w);
                let cell = Cell { batch: r.len(), hidden: hd };
                cpu::gru_cell(&cell, span(x_t, &r, w), gates, span(h_prev, &r, hd), span_mut(h_t, &r, hd));
            }
        }
    });
}

/// An LSTM's gate gradients, dh0 and dc0, back through time, with the workspaces dh_next and
/// dc_next (what reaches each step from the next).
#[allow(clippy::too_many_arguments)]
pub(super) fn lstm_backward(
    d: &Dims,
    groups: &[Range<usize>],
    [gates, c, w_hh, c0, dh, zeros]: [&[f32]; 6],
    dgates: &mut [f32],
    dh0: &mut [f32],
    dc0: &mut [f32],
    dh_next: &mut [f32],
    dc_next: &mut [f32],
) {
    let (hd, w) = (d.hidden, d.width());
    let packed = Packed::new(w, hd, w_hh, hd, 1);
    let split = |buf, steps, w| by_group(buf, steps, d.batch, w, groups);
    let (dg, dhn, dcn) = (split(dgates, d.steps, w), split(dh_next, d.steps, hd), split(dc_next, d.steps, hd));
    let (dh0, dc0) = (split(dh0, 1, hd), split(dc0, 1, hd));
    let parts: Vec<_> = dg.into_iter().zip(dhn).zip(dcn).zip(dh0.into_iter().zip(dc0)).collect();
    groups.par_iter().zip(parts).for_each(|(rows, (((mut dg, mut dhn), mut dcn), (mut dh0, mut dc0)))| {
        let (m, cell) = (rows.len(), Cell { batch: rows.len(), hidden: hd });
        let (dh0, dc0, zeros) = (&mut *dh0[0], &mut *dc0[0], &zeros[..m * hd]);
        for t in d.order().rev() {
            let c_prev = d.prev(t).map_or(at(c0, d, 0, hd, rows), |p| at(c, d, p, hd, rows));
            let (dc_in, dc_out) = match (d.next(t), d.prev(t)) {
                (Some(_), Some(p)) => read_write(&mut dcn, t, p),
                (Some(_), None) => (&*dcn[t], &mut *dc0),
                (None, Some(p)) => (zeros, &mut *dcn[p]),
                (None, None) => (zeros, &mut *dc0),
            };
            let dh_in = if d.next(t).is_some() { &*dhn[t] } else { zeros };
            let (gates_t, dh_t) = (at(gates, d, t, w, rows), at(dh, d, t, hd, rows));
            cpu::lstm_cell_backward(&cell, gates_t, c_prev, dh_t, dh_in, dc_in, dg[t], dc_out);
            // dh_prev = dgates Wₕₕ.
            let target = match d.prev(t) {
                Some(p) => &mut *dhn[p],
                None => &mut *dh0,
            };
            target.fill(0.0);
            packed.multiply_add(&[Columns::rows(dg[t], w)], m, target, hd);
        }
    });
}

/// A GRU's input and hidden gate gradients and dh0, back through time, with the workspace
/// dh_next.
pub(super) fn gru_backward(
    d: &Dims,
    groups: &[Range<usize>],
    [xgates, hidden_gates, h, w_hh, h0, dh, zeros]: [&[f32]; 7],
    dxgates: &mut [f32],
    dh0: &mut [f32],
    dhidden_gates: &mut [f32],
    dh_next: &mut [f32],
) {
    let (hd, w) = (d.hidden, d.width());
    let packed = Packed::new(w, hd, w_hh, hd, 1);
    let split = |buf, steps, w| by_group(buf, steps, d.batch, w, groups);
    let (dxg, dhg, dhn) = (split(dxgates, d.steps, w), split(dhidden_gates, d.steps, w), split(dh_next, d.steps, hd));
    let parts: Vec<_> = dxg.into_iter().zip(dhg).zip(dhn).zip(split(dh0, 1, hd)).collect();
    groups.par_iter().zip(parts).for_each(|(rows, (((mut dxg, mut dhg), mut dhn), mut dh0))| {
        let (m, cell) = (rows.len(), Cell { batch: rows.len(), hidden: hd });
        let (dh0, zeros) = (&mut *dh0[0], &zeros[..m * hd]);
        for t in d.order().rev() {
            let h_prev = d.prev(t).map_or(at(h0, d, 0, hd, rows), |p| at(h, d, p, hd, rows));
            let (dh_in, dh_out) = match (d.next(t), d.prev(t)) {
                (Some(_), Some(p)) => read_write(&mut dhn, t, p),
                (Some(_), None) => (&*dhn[t], &mut *dh0),
                (None, Some(p)) => (zeros, &mut *dhn[p]),
                (None, None) => (zeros, &mut *dh0),
            };
            let (xg, hg, dh_t) = (at(xgates, d, t, w, rows), at(hidden_gates, d, t, w, rows), at(dh, d, t, hd, rows));
            cpu::gru_cell_backward(&cell, xg, hg, h_prev, dh_t, dh_in, dxg[t], dhg[t], dh_out);
            // dh_prev = the cell's direct part + dhidden_gates Wₕₕ.
            let target = match d.prev(t) {
                Some(p) => &mut *dhn[p],
                None => &mut *dh0,
            };
            packed.multiply_add(&[Columns::rows(dhg[t], w)], m, target, hd);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::super::CellKind;
    use super::*;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| (((i + seed) * 7919) % 29) as f32 / 14.0 - 1.0).collect()
    }

    /// The variants a recurrence runs: each cell, an LSTM with its input product in each step
    /// (`fused`) and before the steps.
    const VARIANTS: [(CellKind, bool); 3] = [(CellKind::Lstm, true), (CellKind::Lstm, false), (CellKind::Gru, false)];

    /// Every output of the forward and the backward, run with the batch in `groups`.
    fn run((cell, fused): (CellKind, bool), reverse: bool, groups: &[Range<usize>]) -> Vec<Vec<f32>> {
        run_keeping((cell, fused), reverse, groups, true)
    }

    /// As [`run`]; where not `keep_gates`, the forward keeps only its states (the backward
    /// then reads gates that are not the forward's).
    fn run_keeping(
        (cell, fused): (CellKind, bool),
        reverse: bool,
        groups: &[Range<usize>],
        keep_gates: bool,
    ) -> Vec<Vec<f32>> {
        let d = Dims { steps: 4, batch: 53, hidden: 5, cell, reverse };
        let (b, hd, w, t) = (d.batch, d.hidden, d.width(), d.steps);
        let (xgates, w_hh, b_hh) = (values(t * b * w, 1), values(w * hd, 2), values(w, 3));
        let (h0, c0, dh, zeros) = (values(b * hd, 4), values(b * hd, 5), values(t * b * hd, 6), vec![0.0; b * hd]);
        let mut h = vec![0.0; t * b * hd];
        let (mut dh0, mut dh_next, mut dxgates) = (vec![0.0; b * hd], vec![0.0; t * b * hd], vec![0.0; t * b * w]);
        match cell {
            CellKind::Lstm => {
                let (mut c, mut gates) = (vec![0.0; t * b * hd], vec![0.0; t * b * w]);
                // An LSTM reads its input x [T, B, 3] and Wᵢₕ [4H, 3].
                let (x, w_ih) = (values(t * b * 3, 7), values(w * 3, 8));
                let inputs = [&x[..], &w_ih, &w_hh, &b_hh, &h0, &c0];
                lstm(&d, groups, inputs, &mut h, &mut c, (&mut gates, keep_gates), fused);
                let (mut dc0, mut dc_next) = (vec![0.0; b * hd], vec![0.0; t * b * hd]);
                let inputs = [&gates[..], &c, &w_hh, &c0, &dh, &zeros];
                lstm_backward(&d, groups, inputs, &mut dxgates, &mut dh0, &mut dc0, &mut dh_next, &mut dc_next);
                vec![h, c, gates, dxgates, dh0, dc0]
            }
            CellKind::Gru => {
                let mut hidden_gates = vec![0.0; t * b * w];
                gru(&d, groups, [&xgates, &w_hh, &b_hh, &h0], &mut h, (&mut hidden_gates, keep_gates));
                let mut dhidden_gates = vec![0.0; t * b * w];
                let inputs = [&xgates[..], &hidden_gates, &h, &w_hh, &h0, &dh, &zeros];
                gru_backward(&d, groups, inputs, &mut dxgates, &mut dh0, &mut dhidden_gates, &mut dh_next);
                vec![h, hidden_gates, dxgates, dh0, dhidden_gates]
            }
        }
    }

    /// A row's arithmetic does not depend on the group or the chunk it is in: any split of the
    /// batch gives the same bits as the whole batch in one group (53 rows: one chunk of 48 and
    /// a partial one).
    #[test]
    fn groups_of_rows_give_the_bits_of_one_group() {
        for variant in VARIANTS {
            for reverse in [false, true] {
                let whole = run(variant, reverse, &[Range { start: 0, end: 53 }]);
                assert!(whole.iter().all(|t| t.iter().any(|&v| v != 0.0)), "{variant:?}: an output was never written");
                assert_eq!(run(variant, reverse, &[0..6, 6..7, 7..53]), whole, "{variant:?} reverse {reverse}");
                assert_eq!(run(variant, reverse, &[0..50, 50..53]), whole, "{variant:?} reverse {reverse}");
            }
        }
    }

    /// An LSTM's input product inside each step or before them: the same outputs but for
    /// rounding (one sum over [x_t, h_prev], or two added).
    #[test]
    fn an_lstm_fused_or_not_gives_the_same_outputs() {
        for reverse in [false, true] {
            let groups = [0..50, 50..53];
            let (fused, apart) =
                (run((CellKind::Lstm, true), reverse, &groups), run((CellKind::Lstm, false), reverse, &groups));
            for (output, (f, a)) in fused.iter().zip(&apart).enumerate() {
                let worst = f.iter().zip(a).map(|(f, a)| (f - a).abs() / (1.0 + a.abs())).fold(0.0, f32::max);
                assert!(worst <= 2e-6, "output {output}, reverse {reverse}: differs by {worst:e}");
            }
        }
    }

    /// Gates that nobody reads change no state: h (and an LSTM's c) are the same bits whether
    /// the forward keeps every step's gates or runs them all through step 0's part (an LSTM
    /// whose input product comes first has every step's in place already).
    #[test]
    fn unread_gates_change_no_state() {
        for variant @ (cell, fused) in VARIANTS {
            for reverse in [false, true] {
                let groups = [0..50, 50..53];
                let (kept, passed) = (run(variant, reverse, &groups), run_keeping(variant, reverse, &groups, false));
                let states = if cell == CellKind::Lstm { 2 } else { 1 };
                assert_eq!(kept[..states], passed[..states], "{variant:?} reverse {reverse}");
                // The gates of steps other than 0 were left as they were: zeros.
                let gates = &passed[states];
                if fused || cell == CellKind::Gru {
                    let later = &gates[gates.len() / 4..];
                    assert!(later.iter().all(|&v| v == 0.0), "{variant:?}: a later step's gates were written");
                }
            }
        }
    }
}
