//! Training and evaluating a [`Classifier`] on one executor. [`Trainer`] is what the command
//! line drives; [`CpuTrainer`] runs it on the CPU reference, the GPU executor on a device.

use std::collections::HashMap;

use kernels::{Optimizer, cpu};

use crate::classifier::Classifier;
use crate::cpu::{CpuExecutor, Feed};
use crate::error::Result;
use crate::optim::Training;

/// The scalars one step reads back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// Mean loss over the batch's rows that are not padding.
    pub loss: f32,
    /// How many of those rows were classified correctly.
    pub correct: f32,
}

/// A classifier being trained: its parameters and optimizer state live with the executor.
pub trait Trainer {
    /// One update from a batch ("x" and labels "y" in `feed`): forward, backward, clipping
    /// and the optimizer step. Returns the batch's loss and correct count before the update.
    fn train_step(&mut self, feed: &Feed) -> Result<StepStats>;

    /// Loss and correct count of a batch under the current parameters; nothing changes.
    fn evaluate(&mut self, feed: &Feed) -> Result<StepStats>;

    /// Current parameter values by `state_dict` name.
    fn params(&self) -> Result<HashMap<String, Vec<f32>>>;

    /// Updates done so far.
    fn steps(&self) -> u64;
}

/// Trains on the CPU executor: host vectors for parameters and optimizer state.
pub struct CpuTrainer {
    model: Classifier,
    training: Training,
    params: HashMap<String, Vec<f32>>,
    /// Per parameter, [`Optimizer::state_count`] zero-initialised buffers.
    state: HashMap<String, Vec<Vec<f32>>>,
    steps: u64,
}

impl CpuTrainer {
    pub fn new(model: Classifier, training: Training) -> Self {
        let params = model.initial.clone();
        let state = params
            .iter()
            .map(|(name, p)| (name.clone(), vec![vec![0.0; p.len()]; training.optimizer.state_count()]))
            .collect();
        CpuTrainer { model, training, params, state, steps: 0 }
    }

    fn stats(&self, values: &crate::cpu::Values) -> StepStats {
        StepStats { loss: values.scalar(self.model.loss), correct: values.scalar(self.model.correct) }
    }
}

impl Trainer for CpuTrainer {
    fn train_step(&mut self, feed: &Feed) -> Result<StepStats> {
        let m = &self.model;
        let mut wanted = vec![m.loss, m.correct];
        wanted.extend(m.params.iter().map(|p| p.grad));
        let values = CpuExecutor::new(&m.graph).run_for(&self.params, feed, &wanted)?;
        let mut grads: Vec<Vec<f32>> = m.params.iter().map(|p| values.get(p.grad).to_vec()).collect();
        if let Some(max_norm) = self.training.clip_grad_norm {
            let mut views: Vec<&mut [f32]> = grads.iter_mut().map(|g| g.as_mut_slice()).collect();
            cpu::clip_grad_norm(&mut views, max_norm);
        }
        self.steps += 1;
        let optimizer = self.training.optimizer_at(self.steps);
        for (p, grad) in m.params.iter().zip(&grads) {
            let param = self.params.get_mut(&p.name).expect("every parameter has a value");
            let state = self.state.get_mut(&p.name).expect("every parameter has state");
            match (&optimizer, state.as_mut_slice()) {
                (Optimizer::Sgd(s), [buf]) => cpu::sgd(s, self.steps, param, grad, buf),
                (Optimizer::Adam(a), [m1, m2]) => cpu::adam(a, self.steps, param, grad, m1, m2),
                _ => unreachable!("state_count buffers per parameter"),
            }
        }
        Ok(self.stats(&values))
    }

    fn evaluate(&mut self, feed: &Feed) -> Result<StepStats> {
        let m = &self.model;
        let values = CpuExecutor::new(&m.graph).run_for(&self.params, feed, &[m.loss, m.correct])?;
        Ok(self.stats(&values))
    }

    fn params(&self) -> Result<HashMap<String, Vec<f32>>> {
        Ok(self.params.clone())
    }

    fn steps(&self) -> u64 {
        self.steps
    }
}
