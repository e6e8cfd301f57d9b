//! LSTM and GRU cells on contiguous [B, ·] slices: the CPU executor's and the tests' reference.
//! In f32 (a cell sums nothing long), row after row on the calling thread: the recurrence
//! gives each thread its own rows (`graph`'s `recurrent/on_cpu.rs`). Every slice a unit loop
//! indexes is cut to exactly H first, so that the loop has no bounds checks and vectorises.

use super::activation::{sigmoid, tanh};
use super::vector::wide;
use crate::recurrent::Cell;

/// The first H values of each slice.
fn units<const N: usize>(slices: [&[f32]; N], hd: usize) -> [&[f32]; N] {
    slices.map(|s| &s[..hd])
}

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
    let rows = h.chunks_mut(hd).zip(c.chunks_mut(hd)).zip(gates.chunks(4 * hd).zip(c_prev.chunks(hd)));
    rows.for_each(|((h, c), (gates, c_prev))| {
        let [gi, gf, gg, go] = blocks::<4>(gates, hd);
        let units = h.iter_mut().zip(c.iter_mut()).zip(gi.iter().zip(gf)).zip(gg.iter().zip(go).zip(c_prev));
        wide(
            #[inline(always)]
            || {
                for (((h, c), (&i, &f)), ((&g, &o), &cp)) in units {
                    *c = sigmoid(f) * cp + sigmoid(i) * tanh(g);
                    *h = sigmoid(o) * tanh(*c);
                }
            },
        )
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
    let outputs = dgates.chunks_mut(4 * hd).zip(dc_prev.chunks_mut(hd));
    let inputs = gates.chunks(4 * hd).zip(c_prev.chunks(hd));
    let grads = dh.chunks(hd).zip(dh_next.chunks(hd)).zip(dc_next.chunks(hd));
    outputs.zip(inputs.zip(grads)).for_each(|((dgates, dc_prev), ((gates, c_prev), ((dh, dh_next), dc_next)))| {
        let [gi, gf, gg, go] = blocks::<4>(gates, hd);
        let [di, df, dg, d_o] = blocks_mut::<4>(dgates, hd);
        let [c_prev, dh, dh_next, dc_next] = units([c_prev, dh, dh_next, dc_next], hd);
        let dc_prev = &mut dc_prev[..hd];
        wide(
            #[inline(always)]
            || {
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
            },
        )
    });
}

/// GRU gates (r, z, n) of one unit from its input and hidden parts.
#[inline(always)]
fn gru_gates([xr, xz, xn]: [f32; 3], [hr, hz, hn]: [f32; 3]) -> [f32; 3] {
    let r = sigmoid(xr + hr);
    [r, sigmoid(xz + hz), tanh(xn + r * hn)]
}

/// h from input gates and hidden gates [B, 3H] (r, z, n) and h_prev.
pub fn gru_cell(cell: &Cell, input_gates: &[f32], hidden_gates: &[f32], h_prev: &[f32], h: &mut [f32]) {
    let hd = cell.hidden;
    let inputs = input_gates.chunks(3 * hd).zip(hidden_gates.chunks(3 * hd)).zip(h_prev.chunks(hd));
    h.chunks_mut(hd).zip(inputs).for_each(|(h, ((xg, hg), h_prev))| {
        let ([xr, xz, xn], [hr, hz, hn]) = (blocks::<3>(xg, hd), blocks::<3>(hg, hd));
        let ([h_prev], h) = (units([h_prev], hd), &mut h[..hd]);
        wide(
            #[inline(always)]
            || {
                for j in 0..hd {
                    let [_, z, n] = gru_gates([xr[j], xz[j], xn[j]], [hr[j], hz[j], hn[j]]);
                    h[j] = (1.0 - z) * n + z * h_prev[j];
                }
            },
        )
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
    let outputs = dinput_gates.chunks_mut(3 * hd).zip(dhidden_gates.chunks_mut(3 * hd)).zip(dh_prev.chunks_mut(hd));
    let inputs = input_gates.chunks(3 * hd).zip(hidden_gates.chunks(3 * hd)).zip(h_prev.chunks(hd));
    let grads = dh.chunks(hd).zip(dh_next.chunks(hd));
    outputs.zip(inputs.zip(grads)).for_each(|(((dxg, dhg), dh_prev), (((xg, hg), h_prev), (dh, dh_next)))| {
        let ([xr, xz, xn], [hr, hz, hn]) = (blocks::<3>(xg, hd), blocks::<3>(hg, hd));
        let ([dxr, dxz, dxn], [dhr, dhz, dhn]) = (blocks_mut::<3>(dxg, hd), blocks_mut::<3>(dhg, hd));
        let ([h_prev, dh, dh_next], dh_prev) = (units([h_prev, dh, dh_next], hd), &mut dh_prev[..hd]);
        wide(
            #[inline(always)]
            || {
                for j in 0..hd {
                    let [r, z, n] = gru_gates([xr[j], xz[j], xn[j]], [hr[j], hz[j], hn[j]]);
                    let d = dh[j] + dh_next[j];
                    let dn = d * (1.0 - z) * (1.0 - n * n);
                    let dz = d * (h_prev[j] - n) * z * (1.0 - z);
                    let dr = dn * hn[j] * r * (1.0 - r);
                    (dxr[j], dxz[j], dxn[j]) = (dr, dz, dn);
                    (dhr[j], dhz[j], dhn[j]) = (dr, dz, dn * r);
                    dh_prev[j] = d * z;
                }
            },
        )
    });
}
