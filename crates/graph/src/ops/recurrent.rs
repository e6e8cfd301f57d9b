//! The recurrence of an LSTM or GRU layer: one direction of one layer run over time, on
//! time-major tensors ([T, B, ·], so each step's rows are contiguous). An LSTM reads its input
//! x and Wᵢₕ: each step's gates, x_t Wᵢₕᵀ + h_prev Wₕₕᵀ + (bᵢₕ + bₕₕ), are one product on the
//! CPU and, on a GPU, one matmul of every step's x before the steps and one per step. A GRU's
//! n gate keeps its input part apart (r ⊙ (h Wₕₙᵀ + bₕₙ) is between them), so a GRU reads the
//! input projection of every step (x Wᵢₕᵀ + bᵢₕ), one matmul before it (see `layers.rs`), and
//! each step here is one matmul (h Wₕₕᵀ + bₕₕ) and the fused cell kernel. The forward saves the
//! gates and states; the backward runs back through time once, from them, and returns every
//! gradient.

use std::ops::Range;

use kernels::{
    Bias, Cell, Dispatch, Gpu, GpuTensor, Matmul, ReduceOp, Reduction, RowView, cpu, matmul, recurrent, reduce,
};

use super::{CpuCall, GpuCall, Operation, describe, no_second_derivative};

mod on_cpu;
use crate::error::{GraphError, Result};
use crate::ir::{Graph, NodeId, TensorId, TensorType};

/// Which recurrent cell, with PyTorch's gate order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellKind {
    /// Gates i, f, g, o; state (h, c).
    Lstm,
    /// Gates r, z, n; state h.
    Gru,
}

impl CellKind {
    /// Gate blocks per hidden unit.
    pub fn gates(self) -> usize {
        match self {
            CellKind::Lstm => 4,
            CellKind::Gru => 3,
        }
    }
}

/// The sizes of one run and the order its steps go in.
#[derive(Debug, Clone, Copy)]
struct Dims {
    steps: usize,
    batch: usize,
    hidden: usize,
    cell: CellKind,
    reverse: bool,
}

impl Dims {
    /// From gates [T, B, G·H].
    fn of(gates: &[usize], cell: CellKind, reverse: bool) -> Dims {
        let hidden = gates[2] / cell.gates();
        Dims { steps: gates[0], batch: gates[1], hidden, cell, reverse }
    }

    /// The gate width G·H.
    fn width(&self) -> usize {
        self.cell.gates() * self.hidden
    }

    fn cell(&self) -> Cell {
        Cell { batch: self.batch, hidden: self.hidden }
    }

    /// The steps in the order the forward runs them.
    fn order(&self) -> impl DoubleEndedIterator<Item = usize> + use<> {
        let (steps, reverse) = (self.steps, self.reverse);
        (0..steps).map(move |i| if reverse { steps - 1 - i } else { i })
    }

    /// The step before `t` in the forward's order (None: the initial state comes first).
    fn prev(&self, t: usize) -> Option<usize> {
        if self.reverse { (t + 1 < self.steps).then_some(t + 1) } else { t.checked_sub(1) }
    }

    /// The step after `t` in the forward's order.
    fn next(&self, t: usize) -> Option<usize> {
        if self.reverse { t.checked_sub(1) } else { (t + 1 < self.steps).then_some(t + 1) }
    }

    /// Step t's rows of a [T, B, w] buffer.
    fn rows(&self, t: usize, w: usize) -> Range<usize> {
        t * self.batch * w..(t + 1) * self.batch * w
    }

    fn view(&self, t: usize, w: usize) -> RowView {
        RowView { offset: t * self.batch * w, stride: w }
    }

    /// The [B, H] state before step t: `states` at the step before, or `initial` at the first.
    fn before<'a>(&self, t: usize, states: &'a GpuTensor, initial: &'a GpuTensor) -> (&'a GpuTensor, RowView) {
        self.prev(t).map_or((initial, RowView::rows(self.hidden)), |p| (states, self.view(p, self.hidden)))
    }

    /// What reaches step t's state from the step after: `states` at step t, or `zeros` at the last.
    fn after<'a>(&self, t: usize, states: &'a GpuTensor, zeros: &'a GpuTensor) -> (&'a GpuTensor, RowView) {
        match self.next(t) {
            Some(_) => (states, self.view(t, self.hidden)),
            None => (zeros, RowView::rows(self.hidden)),
        }
    }

    /// gates[t] (+)= h_prev Wₕₕᵀ + bₕₕ: [B, G·H] from h_prev at `h_offset` and gates at step t.
    fn recurrent_product(&self, h_offset: usize, t: usize, beta: f32) -> Matmul {
        let mut mm = Matmul::new(self.batch, self.width(), self.hidden).transpose_b();
        mm.bias = Bias::PerColumn;
        mm.beta = beta;
        mm.a.offset = h_offset;
        mm.c.offset = t * self.batch * self.width();
        mm
    }

    /// dh_prev (+)= dgates[t] Wₕₕ: [B, H] into a [B, H] slice at `offset`.
    fn hidden_gradient(&self, t: usize, offset: usize, beta: f32) -> Matmul {
        let mut mm = Matmul::new(self.batch, self.hidden, self.width());
        mm.beta = beta;
        mm.a.offset = t * self.batch * self.width();
        mm.c.offset = offset;
        mm
    }

    /// dWₕₕ = Σₜ dgates[t]ᵀ h_prev(t), as at most two products: the steps whose h_prev is
    /// another step's h (one product over their rows, which lie together) and the step whose
    /// h_prev is h0. Each is (product, whether its B operand is h0).
    fn weight_gradient(&self) -> Vec<(Matmul, bool)> {
        let (b, w, hd, steps) = (self.batch, self.width(), self.hidden, self.steps);
        let first = if self.reverse { steps - 1 } else { 0 };
        let mut products = Vec::new();
        if steps > 1 {
            let mut mm = Matmul::new(w, hd, (steps - 1) * b).transpose_a();
            // Forward: steps 1.. read h of steps 0..; reverse: steps ..T-1 read h of 1...
            (mm.a.offset, mm.b.offset) = if self.reverse { (0, b * hd) } else { (b * w, 0) };
            products.push((mm, false));
        }
        let mut mm = Matmul::new(w, hd, b).transpose_a();
        mm.a.offset = first * b * w;
        mm.beta = if steps > 1 { 1.0 } else { 0.0 };
        products.push((mm, true));
        products
    }

    /// dbₕₕ: the gate gradients summed over every row.
    fn bias_gradient(&self) -> Reduction {
        Reduction::along(&[self.steps * self.batch, self.width()], 0)
    }
}

/// The recurrence, backwards in time if `reverse`. An LSTM's inputs: [x [T, B, I], w_hh
/// [4H, H], b [4H] (bᵢₕ + bₕₕ), h0 [B, H], c0 [B, H], w_ih [4H, I]]; a GRU's: [xgates
/// [T, B, 3H] (x Wᵢₕᵀ + bᵢₕ of every step), w_hh [3H, H], b_hh [3H], h0 [B, H]]. Outputs: h
/// [T, B, H] and what the backward reads: an LSTM's c [T, B, H] and gate pre-activations
/// [T, B, 4H], a GRU's hidden gates h_prev Wₕₕᵀ + bₕₕ [T, B, 3H]; the gates last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recurrence {
    /// LSTM or GRU.
    pub cell: CellKind,
    /// Runs from the last step back to the first.
    pub reverse: bool,
}

impl Recurrence {
    /// The states a step carries: h, and an LSTM's c.
    fn states(&self) -> usize {
        if self.cell == CellKind::Lstm { 2 } else { 1 }
    }

    /// How many inputs the op takes.
    fn inputs(&self) -> usize {
        if self.cell == CellKind::Lstm { 6 } else { 4 }
    }

    /// The sizes of a run, from its outputs: the gates [T, B, G·H] are the last.
    fn dims(&self, outputs: &[TensorType]) -> Dims {
        Dims::of(&outputs.last().expect("a recurrence has outputs").shape, self.cell, self.reverse)
    }
}

impl Operation for Recurrence {
    fn name(&self) -> &'static str {
        match self.cell {
            CellKind::Lstm => "lstm",
            CellKind::Gru => "gru",
        }
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        let gates = self.cell.gates();
        let lstm = self.cell == CellKind::Lstm;
        let fits = || {
            if inputs.len() != self.inputs() {
                return None;
            }
            let ([x, w_hh, b, ..], initial) = (inputs, &inputs[3..3 + self.states()]) else { return None };
            let (&[t, batch, features], &[width, hidden]) = (&x.shape[..], &w_hh.shape[..]) else { return None };
            let input_ok = match lstm {
                true => inputs[5].shape == [width, features],
                false => features == width,
            };
            let ok = width == hidden * gates
                && input_ok
                && b.shape == [width]
                && initial.iter().all(|s| s.shape == [batch, hidden]);
            ok.then_some((t, batch, hidden, width))
        };
        let needs = match lstm {
            true => "x [T, B, I], w_hh [4H, H], b [4H], h0 and c0 [B, H] and w_ih [4H, I]",
            false => "xgates [T, B, 3H], w_hh [3H, H], b_hh [3H] and h0 [B, H]",
        };
        let Some((t, batch, hidden, width)) = fits() else {
            return Err(format!("needs {needs}, got {}", describe(inputs)));
        };
        let state = TensorType::f32(&[t, batch, hidden]);
        let gates = TensorType::f32(&[t, batch, width]);
        Ok(match self.cell {
            CellKind::Lstm => vec![state.clone(), state, gates],
            CellKind::Gru => vec![state, gates],
        })
    }

    fn backward(&self, g: &mut Graph, node: NodeId, grads: &[Option<TensorId>]) -> Result<Vec<Option<TensorId>>> {
        let inputs = g.node(node).inputs.clone();
        if grads[1..].iter().any(Option::is_some) {
            let detail = "only h takes a gradient, not the cell state or the saved gates".into();
            return Err(GraphError::NotDifferentiable { node: g.node(node).label.clone(), detail });
        }
        let Some(dh) = grads[0] else { return Ok(vec![None; inputs.len()]) };
        let state = g.shape(inputs[3]).to_vec();
        let zeros = g.fill(0.0, &state);
        let back = RecurrenceBackward { cell: self.cell, reverse: self.reverse };
        let (w_hh, h0) = (inputs[1], inputs[3]);
        match self.cell {
            CellKind::Lstm => {
                let saved = [node.out(2), node.out(1), node.out(0)];
                let back = g.apply(back, &[&saved[..], &[w_hh, h0, inputs[4], dh, zeros]].concat())?;
                // x and Wᵢₕ from the gate gradients, as the input product's matmul would give.
                let (x, w_ih) = (inputs[0], inputs[5]);
                let [t, b, features] = g.shape(x)[..] else { unreachable!("checked when built") };
                let dgates = g.reshape(back.out(0), &[t * b, g.shape(w_ih)[0]])?;
                let x_rows = g.reshape(x, &[t * b, features])?;
                let dx = g.matmul(dgates, w_ih, false, false)?;
                let dx = g.reshape(dx, &[t, b, features])?;
                let dw_ih = g.matmul(dgates, x_rows, true, false)?;
                let [dw_hh, db, dh0, dc0] = [1, 2, 3, 4].map(|slot| Some(back.out(slot)));
                Ok(vec![Some(dx), dw_hh, db, dh0, dc0, Some(dw_ih)])
            }
            CellKind::Gru => {
                let back = g.apply(back, &[inputs[0], node.out(1), node.out(0), w_hh, h0, dh, zeros])?;
                Ok((0..inputs.len()).map(|slot| Some(back.out(slot))).collect())
            }
        }
    }

    fn flops(&self, inputs: &[&TensorType], outputs: &[TensorType], _: &[bool]) -> u64 {
        let d = self.dims(outputs);
        // An LSTM's input product too: its x's features per gate.
        let input_product = if self.cell == CellKind::Lstm { 2 * inputs[0].shape[2] } else { 0 };
        ((2 * d.hidden + input_product + 12) * d.width() * d.batch * d.steps) as u64
    }

    fn cpu(&self, mut call: CpuCall) {
        let d = self.dims(call.output_types);
        if d.batch * d.hidden == 0 {
            return;
        }
        let (inputs, groups) = (&call.inputs, on_cpu::groups(d.batch));
        // The gates are the last output; only a backward reads them.
        let keep_gates = *call.wanted.last().expect("a recurrence has outputs");
        match &mut call.outputs[..] {
            [h, c, gates] => {
                let [x, w_hh, b, h0, c0, w_ih] = inputs[..] else { unreachable!("checked when built") };
                let fused = on_cpu::fuses_input(call.input_types[0].shape[2], d.hidden);
                on_cpu::lstm(&d, &groups, [x, w_ih, w_hh, b, h0, c0], h, c, (gates, keep_gates), fused)
            }
            [h, hidden_gates] => {
                on_cpu::gru(&d, &groups, [inputs[0], inputs[1], inputs[2], inputs[3]], h, (hidden_gates, keep_gates))
            }
            _ => unreachable!("checked when built"),
        }
    }

    fn gpu(&self, gpu: &Gpu, call: &GpuCall) -> kernels::Result<Vec<Dispatch>> {
        let d = self.dims(call.output_types);
        let (cell, hd, w) = (d.cell(), d.hidden, d.width());
        let [x, w_hh, b_hh, h0, ..] = &call.inputs[..] else { unreachable!("checked when built") };
        let h = &call.outputs[0];
        let prev_h = |t: usize| d.prev(t).map_or((h0, 0), |p| (h, d.rows(p, hd).start));
        let mut out = Vec::new();
        match self.cell {
            CellKind::Lstm => {
                let (c, gates, c0, w_ih) = (&call.outputs[1], &call.outputs[2], &call.inputs[4], &call.inputs[5]);
                // Every step's x Wᵢₕᵀ at once; each step then adds h_prev Wₕₕᵀ + b.
                let input_product = Matmul::new(d.steps * d.batch, w, call.shape(0)[2]).transpose_b();
                out.extend(matmul::matmul(gpu, &input_product, x, w_ih, None, gates)?);
                for t in d.order() {
                    let (a, offset) = prev_h(t);
                    out.extend(matmul::matmul(gpu, &d.recurrent_product(offset, t, 1.0), a, w_hh, Some(b_hh), gates)?);
                    let c_prev = d.before(t, c, c0);
                    let (gates, h, c) = ((gates, d.view(t, w)), (h, d.view(t, hd)), (c, d.view(t, hd)));
                    out.push(recurrent::lstm_cell(gpu, &cell, gates, c_prev, h, c)?);
                }
            }
            CellKind::Gru => {
                let hidden_gates = &call.outputs[1];
                for t in d.order() {
                    let (a, offset) = prev_h(t);
                    let product = d.recurrent_product(offset, t, 0.0);
                    out.extend(matmul::matmul(gpu, &product, a, w_hh, Some(b_hh), hidden_gates)?);
                    let (xg, hg) = ((x, d.view(t, w)), (hidden_gates, d.view(t, w)));
                    out.push(recurrent::gru_cell(gpu, &cell, xg, hg, d.before(t, h, h0), (h, d.view(t, hd)))?);
                }
            }
        }
        Ok(out)
    }
}

/// Every gradient of a [`Recurrence`] from what its forward saved, back through time once.
/// LSTM inputs [gates, c, h, w_hh, h0, c0, dh, zeros [B, H]], outputs [dgates, dw_hh, db,
/// dh0, dc0] and workspace [dh_next, dc_next] ([T, B, H]: what reaches each step from the
/// next). GRU inputs [xgates, hidden_gates, h, w_hh, h0, dh, zeros], outputs [dxgates, dw_hh,
/// db_hh, dh0] and workspace [dhidden_gates [T, B, 3H], dh_next].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecurrenceBackward {
    /// The forward's.
    pub cell: CellKind,
    /// The forward's.
    pub reverse: bool,
}

impl Operation for RecurrenceBackward {
    fn name(&self) -> &'static str {
        match self.cell {
            CellKind::Lstm => "lstm_backward",
            CellKind::Gru => "gru_backward",
        }
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        let owned = |t: &&TensorType| (*t).clone();
        match (self.cell, inputs) {
            (CellKind::Lstm, [gates, _, h, w_hh, h0, c0, dh, _]) if h == dh => {
                let db = TensorType::f32(&[gates.shape[2]]);
                Ok(vec![owned(gates), owned(w_hh), db, owned(h0), owned(c0), owned(h), owned(h)])
            }
            (CellKind::Gru, [xgates, hidden_gates, h, w_hh, h0, dh, _]) if h == dh => {
                let db = TensorType::f32(&[xgates.shape[2]]);
                Ok(vec![owned(xgates), owned(w_hh), db, owned(h0), owned(hidden_gates), owned(h)])
            }
            _ => Err(format!(
                "takes the forward's saved tensors, w_hh, the initial state(s), dh and zeros, got {}",
                describe(inputs)
            )),
        }
    }

    fn backward(&self, g: &mut Graph, node: NodeId, _: &[Option<TensorId>]) -> Result<Vec<Option<TensorId>>> {
        Err(no_second_derivative(g, node))
    }

    fn flops(&self, inputs: &[&TensorType], _: &[TensorType], _: &[bool]) -> u64 {
        let d = Dims::of(&inputs[0].shape, self.cell, self.reverse);
        ((4 * d.hidden + 24) * d.width() * d.batch * d.steps) as u64
    }

    fn cpu(&self, mut call: CpuCall) {
        let d = Dims::of(call.shape(0), self.cell, self.reverse);
        if d.batch * d.hidden == 0 {
            return;
        }
        match self.cell {
            CellKind::Lstm => lstm_backward_cpu(&d, &mut call),
            CellKind::Gru => gru_backward_cpu(&d, &mut call),
        }
        // dWₕₕ and dbₕₕ from the gate gradients: output 0 for an LSTM, workspace 4 for a GRU.
        let dgates_slot = if self.cell == CellKind::Lstm { 0 } else { 4 };
        let (h, h0) = (call.inputs[2], call.inputs[4]);
        let [dgates, dw, db] = [dgates_slot, 1, 2].map(|slot| std::mem::take(&mut call.outputs[slot]));
        for (mm, from_h0) in d.weight_gradient() {
            cpu::matmul(&mm, dgates, if from_h0 { h0 } else { h }, None, dw);
        }
        cpu::reduce(ReduceOp::Sum, &d.bias_gradient(), dgates, db);
    }

    fn gpu(&self, gpu: &Gpu, call: &GpuCall) -> kernels::Result<Vec<Dispatch>> {
        let d = Dims::of(call.shape(0), self.cell, self.reverse);
        let mut out = match self.cell {
            CellKind::Lstm => lstm_backward_gpu(gpu, &d, call)?,
            CellKind::Gru => gru_backward_gpu(gpu, &d, call)?,
        };
        let dgates = &call.outputs[if self.cell == CellKind::Lstm { 0 } else { 4 }];
        let (h, h0, dw, db) = (&call.inputs[2], &call.inputs[4], &call.outputs[1], &call.outputs[2]);
        for (mm, from_h0) in d.weight_gradient() {
            out.extend(matmul::matmul(gpu, &mm, dgates, if from_h0 { h0 } else { h }, None, dw)?);
        }
        out.push(reduce::reduce(gpu, ReduceOp::Sum, &d.bias_gradient(), dgates, db)?);
        Ok(out)
    }
}

fn lstm_backward_cpu(d: &Dims, call: &mut CpuCall) {
    let [gates, c, _, w_hh, _, c0, dh, zeros] = call.inputs[..] else { unreachable!("eight inputs") };
    let [dgates, _, _, dh0, dc0, dh_next, dc_next] = &mut call.outputs[..] else { unreachable!("seven outputs") };
    on_cpu::lstm_backward(
        d,
        &on_cpu::groups(d.batch),
        [gates, c, w_hh, c0, dh, zeros],
        dgates,
        dh0,
        dc0,
        dh_next,
        dc_next,
    );
}

fn gru_backward_cpu(d: &Dims, call: &mut CpuCall) {
    let [xgates, hidden_gates, h, w_hh, h0, dh, zeros] = call.inputs[..] else { unreachable!("seven inputs") };
    let [dxgates, _, _, dh0, dhg, dh_next] = &mut call.outputs[..] else { unreachable!("six outputs") };
    on_cpu::gru_backward(
        d,
        &on_cpu::groups(d.batch),
        [xgates, hidden_gates, h, w_hh, h0, dh, zeros],
        dxgates,
        dh0,
        dhg,
        dh_next,
    );
}

fn lstm_backward_gpu(gpu: &Gpu, d: &Dims, call: &GpuCall) -> kernels::Result<Vec<Dispatch>> {
    let (cell, hd, w) = (d.cell(), d.hidden, d.width());
    let [gates, c, _, w_hh, _, c0, dh, zeros] = &call.inputs[..] else { unreachable!("eight inputs") };
    let [dgates, _, _, dh0, dc0, dh_next, dc_next] = &call.outputs[..] else { unreachable!("seven outputs") };
    let mut out = Vec::new();
    for t in d.order().rev() {
        let (dh_in, dc_in) = (d.after(t, dh_next, zeros), d.after(t, dc_next, zeros));
        let (g, dg, dh_t) = ((gates, d.view(t, w)), (dgates, d.view(t, w)), (dh, d.view(t, hd)));
        let (c_prev, dc_out) = (d.before(t, c, c0), d.before(t, dc_next, dc0));
        out.push(recurrent::lstm_cell_backward(gpu, &cell, g, c_prev, dh_t, dh_in, dc_in, dg, dc_out)?);
        let (target, offset) = d.prev(t).map_or((dh0, 0), |p| (dh_next, d.rows(p, hd).start));
        out.extend(matmul::matmul(gpu, &d.hidden_gradient(t, offset, 0.0), dgates, w_hh, None, target)?);
    }
    Ok(out)
}

fn gru_backward_gpu(gpu: &Gpu, d: &Dims, call: &GpuCall) -> kernels::Result<Vec<Dispatch>> {
    let (cell, hd, w) = (d.cell(), d.hidden, d.width());
    let [xgates, hidden_gates, h, w_hh, h0, dh, zeros] = &call.inputs[..] else { unreachable!("seven inputs") };
    let [dxgates, _, _, dh0, dhg, dh_next] = &call.outputs[..] else { unreachable!("six outputs") };
    let mut out = Vec::new();
    for t in d.order().rev() {
        let (h_prev, dh_in, dh_out) = (d.before(t, h, h0), d.after(t, dh_next, zeros), d.before(t, dh_next, dh0));
        let (xg, hg) = ((xgates, d.view(t, w)), (hidden_gates, d.view(t, w)));
        let (dxg, dhg_t, dh_t) = ((dxgates, d.view(t, w)), (dhg, d.view(t, w)), (dh, d.view(t, hd)));
        out.push(recurrent::gru_cell_backward(gpu, &cell, xg, hg, h_prev, dh_t, dh_in, dxg, dhg_t, dh_out)?);
        let (target, offset) = d.prev(t).map_or((dh0, 0), |p| (dh_next, d.rows(p, hd).start));
        out.extend(matmul::matmul(gpu, &d.hidden_gradient(t, offset, 1.0), dhg, w_hh, None, target)?);
    }
    Ok(out)
}

impl Graph {
    /// One direction of one recurrent layer over time-major inputs, as [`Recurrence`] takes
    /// them (an LSTM's x and weights, a GRU's input projection): h [T, B, H].
    pub fn recurrence(&mut self, cell: CellKind, reverse: bool, inputs: &[TensorId]) -> Result<TensorId> {
        let node = self.apply(Recurrence { cell, reverse }, inputs)?;
        Ok(node.out(0))
    }
}
