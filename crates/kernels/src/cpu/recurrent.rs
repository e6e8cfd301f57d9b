//! LSTM and GRU cells on contiguous [B, ·] slices: the CPU executor's and the tests' reference.
//! In f32 (a cell sums nothing long), rows in parallel.

use rayon::prelude::*;

use super::activation::{sigmoid, tanh};
use super::vector::wide;
use crate::recurrent::Cell;

/// Rows per parallel task: a row is a few hundred units, too little work alone.
const ROWS: usize = 8;

/// A row's [G·H] gates as its G blocks of H.
fn blocks<const G: usize>(row: &[f32], hd: usize) -> [&[f32]; G] {
    std::array::from_fn(|k| &row[k * hd..(k + 1) * hd])
}

fn blocks_mut<const G: usize>(row: &mut [f32], hd: usize) -> [&mut [f32]; G] {
    let mut rest = row;
    std::array::from_fn(|_| {
        let (block, tail) = std::mem::take(&mut rest).split_at_mut(hd);
        rest = tail;
        block
    })
}

/// h, c from gates [B, 4H] (i, f, g, o) and c_prev.
pub fn lstm_cell(cell: &Cell, gates: &[f32], c_prev: &[f32], h: &mut [f32], c: &mut [f32]) {
    let hd = cell.hidden;
    let rows = h.par_chunks_mut(hd).zip(c.par_chunks_mut(hd)).zip(gates.par_chunks(4 * hd).zip(c_prev.par_chunks(hd)));
    rows.with_min_len(ROWS).for_each(|((h, c), (gates, c_prev))| {
        let [gi, gf, gg, go] = blocks::<4>(gates, hd);
        let units = h.iter_mut().zip(c.iter_mut()).zip(gi.iter().zip(gf)).zip(gg.iter().zip(go).zip(c_prev));
        wide(|| {
            for (((h, c), (&i, &f)), ((&g, &o), &cp)) in units {
                *c = sigmoid(f) * cp + sigmoid(i) * tanh(g);
                *h = sigmoid(o) * tanh(*c);
            }
        })
    });
}

/// As the GPU's: dh is the layer output's gradient, dh_next and dc_next what reaches h and c
/// from the next step.
#[allow(clippy::too_many_arguments)]
pub fn lstm_cell_backward(
    cell: &Cell,
    gates: &[f32],
    c_prev: &[f32],
    dh: &[f32],
    dh_next: &[f32],
    dc_next: &[f32],
    dgates: &mut [f32],
    dc_prev: &mut [f32],
) {
    let hd = cell.hidden;
    let outputs = dgates.par_chunks_mut(4 * hd).zip(dc_prev.par_chunks_mut(hd));
    let inputs = gates.par_chunks(4 * hd).zip(c_prev.par_chunks(hd));
    let grads = dh.par_chunks(hd).zip(dh_next.par_chunks(hd)).zip(dc_next.par_chunks(hd));
    outputs.zip(inputs.zip(grads)).with_min_len(ROWS).for_each(
        |((dgates, dc_prev), ((gates, c_prev), ((dh, dh_next), dc_next)))| {
            let [gi, gf, gg, go] = blocks::<4>(gates, hd);
            let [di, df, dg, d_o] = blocks_mut::<4>(dgates, hd);
            wide(|| {
                for j in 0..hd {
                    let (i, f, g, o) = (sigmoid(gi[j]), sigmoid(gf[j]), tanh(gg[j]), sigmoid(go[j]));
                    let tc = tanh(f * c_prev[j] + i * g);
                    let dhv = dh[j] + dh_next[j];
                    let dc = dc_next[j] + dhv * o * (1.0 - tc * tc);
                    di[j] = dc * g * i * (1.0 - i);
                    df[j] = dc * c_prev[j] * f * (1.0 - f);
                    dg[j] = dc * i * (1.0 - g * g);
                    d_o[j] = dhv * tc * o * (1.0 - o);
                    dc_prev[j] = dc * f;
                }
            })
        },
    );
}

/// GRU gates (r, z, n) of unit j of one row, and the hidden part hₙ of n.
#[inline(always)]
fn gru_gates(x: &[&[f32]; 3], hh: &[&[f32]; 3], j: usize) -> [f32; 4] {
    let r = sigmoid(x[0][j] + hh[0][j]);
    let z = sigmoid(x[1][j] + hh[1][j]);
    [r, z, tanh(x[2][j] + r * hh[2][j]), hh[2][j]]
}

/// h from input gates and hidden gates [B, 3H] (r, z, n) and h_prev.
pub fn gru_cell(cell: &Cell, input_gates: &[f32], hidden_gates: &[f32], h_prev: &[f32], h: &mut [f32]) {
    let hd = cell.hidden;
    let inputs = input_gates.par_chunks(3 * hd).zip(hidden_gates.par_chunks(3 * hd)).zip(h_prev.par_chunks(hd));
    h.par_chunks_mut(hd).zip(inputs).with_min_len(ROWS).for_each(|(h, ((xg, hg), h_prev))| {
        let (x, hh) = (blocks::<3>(xg, hd), blocks::<3>(hg, hd));
        wide(|| {
            for j in 0..hd {
                let [_, z, n, _] = gru_gates(&x, &hh, j);
                h[j] = (1.0 - z) * n + z * h_prev[j];
            }
        })
    });
}

/// Gradients of both gate sets and the direct part of dh_prev, z (dh + dh_next).
#[allow(clippy::too_many_arguments)]
pub fn gru_cell_backward(
    cell: &Cell,
    input_gates: &[f32],
    hidden_gates: &[f32],
    h_prev: &[f32],
    dh: &[f32],
    dh_next: &[f32],
    dinput_gates: &mut [f32],
    dhidden_gates: &mut [f32],
    dh_prev: &mut [f32],
) {
    let hd = cell.hidden;
    let outputs =
        dinput_gates.par_chunks_mut(3 * hd).zip(dhidden_gates.par_chunks_mut(3 * hd)).zip(dh_prev.par_chunks_mut(hd));
    let inputs = input_gates.par_chunks(3 * hd).zip(hidden_gates.par_chunks(3 * hd)).zip(h_prev.par_chunks(hd));
    let grads = dh.par_chunks(hd).zip(dh_next.par_chunks(hd));
    outputs.zip(inputs.zip(grads)).with_min_len(ROWS).for_each(
        |(((dxg, dhg), dh_prev), (((xg, hg), h_prev), (dh, dh_next)))| {
            let (x, hh) = (blocks::<3>(xg, hd), blocks::<3>(hg, hd));
            let ([dxr, dxz, dxn], [dhr, dhz, dhn]) = (blocks_mut::<3>(dxg, hd), blocks_mut::<3>(dhg, hd));
            wide(|| {
                for j in 0..hd {
                    let [r, z, n, hn] = gru_gates(&x, &hh, j);
                    let d = dh[j] + dh_next[j];
                    let dn = d * (1.0 - z) * (1.0 - n * n);
                    let dz = d * (h_prev[j] - n) * z * (1.0 - z);
                    let dr = dn * hn * r * (1.0 - r);
                    (dxr[j], dxz[j], dxn[j]) = (dr, dz, dn);
                    (dhr[j], dhz[j], dhn[j]) = (dr, dz, dn * r);
                    dh_prev[j] = d * z;
                }
            })
        },
    );
}
