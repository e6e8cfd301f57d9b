//! Reference LSTM and GRU cells on contiguous [B, ·] slices, in f64.

use super::activation::sigmoid;
use crate::recurrent::Cell;

/// Activated LSTM gates (i, f, g, o) of unit j of row b.
fn lstm_gates(cell: &Cell, gates: &[f32], b: usize, j: usize) -> [f64; 4] {
    let g = |k: usize| gates[b * 4 * cell.hidden + k * cell.hidden + j] as f64;
    [sigmoid(g(0)), sigmoid(g(1)), g(2).tanh(), sigmoid(g(3))]
}

/// GRU gates (r, z, n) of unit j of row b, and the hidden part hₙ of n.
fn gru_gates(cell: &Cell, input_gates: &[f32], hidden_gates: &[f32], b: usize, j: usize) -> [f64; 4] {
    let at = |k: usize| b * 3 * cell.hidden + k * cell.hidden + j;
    let (x, hh) = (|k| input_gates[at(k)] as f64, |k| hidden_gates[at(k)] as f64);
    let r = sigmoid(x(0) + hh(0));
    let z = sigmoid(x(1) + hh(1));
    [r, z, (x(2) + r * hh(2)).tanh(), hh(2)]
}

/// h, c from gates [B, 4H] (i, f, g, o) and c_prev.
pub fn lstm_cell(cell: &Cell, gates: &[f32], c_prev: &[f32], h: &mut [f32], c: &mut [f32]) {
    let hd = cell.hidden;
    for b in 0..cell.batch {
        for j in 0..hd {
            let [i, f, gg, o] = lstm_gates(cell, gates, b, j);
            let cv = f * c_prev[b * hd + j] as f64 + i * gg;
            c[b * hd + j] = cv as f32;
            h[b * hd + j] = (o * cv.tanh()) as f32;
        }
    }
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
    for b in 0..cell.batch {
        for j in 0..hd {
            let [i, f, gg, o] = lstm_gates(cell, gates, b, j);
            let cp = c_prev[b * hd + j] as f64;
            let tc = (f * cp + i * gg).tanh();
            let dhv = dh[b * hd + j] as f64 + dh_next[b * hd + j] as f64;
            let dc = dc_next[b * hd + j] as f64 + dhv * o * (1.0 - tc * tc);
            let out = &mut dgates[b * 4 * hd..];
            out[j] = (dc * gg * i * (1.0 - i)) as f32;
            out[hd + j] = (dc * cp * f * (1.0 - f)) as f32;
            out[2 * hd + j] = (dc * i * (1.0 - gg * gg)) as f32;
            out[3 * hd + j] = (dhv * tc * o * (1.0 - o)) as f32;
            dc_prev[b * hd + j] = (dc * f) as f32;
        }
    }
}

/// h from input gates and hidden gates [B, 3H] (r, z, n) and h_prev.
pub fn gru_cell(cell: &Cell, input_gates: &[f32], hidden_gates: &[f32], h_prev: &[f32], h: &mut [f32]) {
    let hd = cell.hidden;
    for b in 0..cell.batch {
        for j in 0..hd {
            let [_, z, n, _] = gru_gates(cell, input_gates, hidden_gates, b, j);
            h[b * hd + j] = ((1.0 - z) * n + z * h_prev[b * hd + j] as f64) as f32;
        }
    }
}

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
    for b in 0..cell.batch {
        for j in 0..hd {
            let [r, z, n, hn] = gru_gates(cell, input_gates, hidden_gates, b, j);
            let (hp, d) = (h_prev[b * hd + j] as f64, dh[b * hd + j] as f64 + dh_next[b * hd + j] as f64);
            let dn = d * (1.0 - z) * (1.0 - n * n);
            let dz = d * (hp - n) * z * (1.0 - z);
            let dr = dn * hn * r * (1.0 - r);
            let (gi, gh) = (&mut dinput_gates[b * 3 * hd..], &mut dhidden_gates[b * 3 * hd..]);
            (gi[j], gi[hd + j], gi[2 * hd + j]) = (dr as f32, dz as f32, dn as f32);
            (gh[j], gh[hd + j], gh[2 * hd + j]) = (dr as f32, dz as f32, (dn * r) as f32);
            dh_prev[b * hd + j] = (d * z) as f32;
        }
    }
}
