//! Inverted dropout with counter-based (Philox) masks.

use kernels::{Dispatch, Dropout as DropoutShape, Gpu, StridedCopy, cpu, dropout, layout};

use super::{CpuCall, GpuCall, Operation, one_f32};
use crate::error::Result;
use crate::ir::{Graph, Mode, NodeId, TensorId, TensorType};

/// Input [x]: in training, each element zeroed with probability `p` and the rest scaled by
/// 1/(1-p), the mask a Philox stream of (seed, the run's step, index); in evaluation, x.
/// Its gradient is the same mask applied to dy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dropout {
    /// The probability of zeroing an element.
    pub p: f32,
    /// The model's seed, with the layer's stream mixed in.
    pub seed: u64,
}

impl Dropout {
    fn shape(&self, n: usize, step: u64) -> DropoutShape {
        DropoutShape { n, p: self.p, seed: self.seed, stream: step }
    }
}

impl Operation for Dropout {
    fn name(&self) -> &'static str {
        "dropout"
    }

    fn infer(&self, inputs: &[&TensorType]) -> Result<Vec<TensorType>, String> {
        if !(0.0..1.0).contains(&self.p) {
            return Err(format!("dropout probability {} must be in [0, 1)", self.p));
        }
        Ok(vec![one_f32(inputs)?.clone()])
    }

    fn backward(&self, g: &mut Graph, _: NodeId, grads: &[Option<TensorId>]) -> Result<Vec<Option<TensorId>>> {
        let Some(dy) = grads[0] else { return Ok(vec![None]) };
        Ok(vec![Some(g.apply1(*self, &[dy])?)])
    }

    fn flops(&self, inputs: &[&TensorType], _: &[TensorType], _: &[bool]) -> u64 {
        inputs[0].len() as u64
    }

    fn cpu(&self, mut call: CpuCall) {
        match call.mode {
            Mode::Train => cpu::dropout(&self.shape(call.inputs[0].len(), call.step), call.inputs[0], call.outputs[0]),
            Mode::Eval => call.outputs[0].copy_from_slice(call.inputs[0]),
        }
    }

    fn gpu(&self, gpu: &Gpu, call: &GpuCall) -> kernels::Result<Vec<Dispatch>> {
        let n = call.output_types[0].len();
        Ok(vec![match call.mode {
            Mode::Train => dropout::dropout(gpu, &self.shape(n, 0), &call.inputs[0], &call.outputs[0])?,
            Mode::Eval => {
                let copy = StridedCopy::slice(&[n], 0, 0, n).expect("whole range");
                layout::strided_copy(gpu, &copy, &call.inputs[0], &call.outputs[0])?
            }
        }])
    }

    // Each training run draws the masks of its own step.
    fn before_run(&self, gpu: &Gpu, mode: Mode, outputs: &[TensorType], dispatches: &[Dispatch], step: u64) {
        if let (Mode::Train, [d]) = (mode, dispatches) {
            dropout::set_stream(gpu, d, &self.shape(outputs[0].len(), step));
        }
    }
}

impl Graph {
    /// Dropout of `x` with probability `p`; `seed` picks the mask stream of this layer.
    pub fn dropout(&mut self, x: TensorId, p: f32, seed: u64) -> Result<TensorId> {
        self.apply1(Dropout { p, seed }, &[x])
    }
}
