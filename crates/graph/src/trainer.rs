//! Training and evaluating a [`Classifier`] on one executor. [`Trainer`] is what the command
//! line drives; [`CpuTrainer`] runs it on the CPU reference, the GPU executor on a device.

use std::collections::HashMap;

use kernels::{Dispatch, Gpu, GpuTensor, Optimizer, StridedCopy, cpu, layout, optimizer};

use crate::classifier::Classifier;
use crate::cpu::CpuExecutor;
use crate::error::{GraphError, Result};
use crate::feed::Feed;
use crate::gpu::{GpuExecutor, Memory, SharedBuffers};
use crate::ir::Mode;
use crate::optim::Training;

/// The scalars one step reads back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// Mean loss over the batch's rows that are not padding.
    pub loss: f32,
    /// How many of those rows were classified correctly.
    pub correct: f32,
}

/// Everything training has changed: parameter and state values by `state_dict` name, the
/// optimizer's per-parameter state tensors ([`Optimizer::state_count`] each), updates done.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainerState {
    pub params: HashMap<String, Vec<f32>>,
    pub optimizer: HashMap<String, Vec<Vec<f32>>>,
    pub steps: u64,
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

    /// A copy of everything training has changed (for a checkpoint).
    fn state(&self) -> Result<TrainerState>;

    /// Continues from `state` (a loaded checkpoint), which must be of this model.
    fn restore(&mut self, state: &TrainerState) -> Result<()>;
}

/// Trains on the CPU executor: host vectors for parameters and optimizer state, and one
/// executor each for training and evaluation, their buffers planned once.
pub struct CpuTrainer {
    model: Classifier,
    training: Training,
    /// Parameters and state by `state_dict` name.
    params: HashMap<String, Vec<f32>>,
    /// Per parameter, [`Optimizer::state_count`] zero-initialised buffers.
    state: HashMap<String, Vec<Vec<f32>>>,
    train: CpuExecutor,
    eval: CpuExecutor,
    steps: u64,
}

impl CpuTrainer {
    pub fn new(model: Classifier, training: Training) -> Self {
        let params = model.initial.clone();
        let state = model
            .params
            .iter()
            .map(|p| (p.name.clone(), vec![vec![0.0; params[&p.name].len()]; training.optimizer.state_count()]))
            .collect();
        let mut wanted = vec![model.loss, model.correct];
        wanted.extend(model.params.iter().map(|p| p.grad));
        let train = CpuExecutor::new(&model.graph, Mode::Train, &wanted);
        let eval = CpuExecutor::new(&model.graph, Mode::Eval, &[model.loss, model.correct]);
        CpuTrainer { model, training, params, state, train, eval, steps: 0 }
    }

    fn stats(&self, exec: &CpuExecutor) -> StepStats {
        StepStats { loss: exec.read(self.model.loss)[0], correct: exec.read(self.model.correct)[0] }
    }
}

impl Trainer for CpuTrainer {
    fn train_step(&mut self, feed: &Feed) -> Result<StepStats> {
        self.train.run(&mut self.params, feed)?;
        let m = &self.model;
        let mut grads: Vec<Vec<f32>> = m.params.iter().map(|p| self.train.read(p.grad).to_vec()).collect();
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
        Ok(self.stats(&self.train))
    }

    fn evaluate(&mut self, feed: &Feed) -> Result<StepStats> {
        self.eval.run(&mut self.params, feed)?;
        Ok(self.stats(&self.eval))
    }

    fn params(&self) -> Result<HashMap<String, Vec<f32>>> {
        Ok(self.params.clone())
    }

    fn steps(&self) -> u64 {
        self.steps
    }

    fn state(&self) -> Result<TrainerState> {
        Ok(TrainerState { params: self.params.clone(), optimizer: self.state.clone(), steps: self.steps })
    }

    fn restore(&mut self, state: &TrainerState) -> Result<()> {
        check_fits(&self.model, &self.training, state)?;
        self.params = state.params.clone();
        self.state = state.optimizer.clone();
        self.steps = state.steps;
        Ok(())
    }
}

/// Trains on a GPU: parameters, gradients and optimizer state stay on the device; a step is
/// one submission (forward, backward, clipping, updates) and reads back two scalars.
pub struct GpuTrainer<'g> {
    gpu: &'g Gpu,
    model: Classifier,
    training: Training,
    params: HashMap<String, GpuTensor>,
    train: GpuExecutor<'g>,
    eval: GpuExecutor<'g>,
    /// Global-norm clipping, then one fused update per parameter, after the backward pass.
    clip: Vec<Dispatch>,
    updates: Vec<Dispatch>,
    /// Optimizer state per parameter (in `model.params` order).
    state: Vec<Vec<GpuTensor>>,
    /// [loss, correct], gathered at the end of each run so one readback returns both.
    scalars: GpuTensor,
    gather_train: [Dispatch; 2],
    gather_eval: [Dispatch; 2],
    steps: u64,
}

impl<'g> GpuTrainer<'g> {
    pub fn new(gpu: &'g Gpu, model: Classifier, training: Training) -> Result<Self> {
        let mut params = HashMap::new();
        for (name, value) in &model.initial {
            params.insert(name.clone(), gpu.upload(value)?);
        }
        let mut shared = SharedBuffers::default();
        let mut wanted = vec![model.loss, model.correct];
        wanted.extend(model.params.iter().map(|p| p.grad));
        let train = GpuExecutor::new(gpu, &model.graph, Mode::Train, &wanted, &params, &mut shared)?;
        let outputs = [model.loss, model.correct];
        let eval = GpuExecutor::new(gpu, &model.graph, Mode::Eval, &outputs, &params, &mut shared)?;
        let grads: Vec<&GpuTensor> = model.params.iter().map(|p| train.output(p.grad)).collect();
        let clip = match training.clip_grad_norm {
            Some(max_norm) => {
                let lens: Vec<usize> = grads.iter().map(|g| g.len()).collect();
                let partials = gpu.tensor(optimizer::norm_partials(&lens))?;
                let norm = gpu.tensor(2)?;
                optimizer::clip_grad_norm(gpu, &grads, max_norm, &partials, &norm)?
            }
            None => Vec::new(),
        };
        let (mut updates, mut state) = (Vec::new(), Vec::new());
        for (p, grad) in model.params.iter().zip(&grads) {
            let param = &params[&p.name];
            let buffers: Vec<GpuTensor> = (0..training.optimizer.state_count())
                .map(|_| gpu.upload(&vec![0f32; param.len()]))
                .collect::<kernels::Result<_>>()?;
            let views: Vec<&GpuTensor> = buffers.iter().collect();
            updates.push(optimizer::update(gpu, &training.optimizer, 1, param, grad, &views)?);
            state.push(buffers);
        }
        let scalars = gpu.tensor(2)?;
        let gather = |executor: &GpuExecutor| -> Result<[Dispatch; 2]> {
            let into = |node, slot| {
                let place = StridedCopy::place(&[1], &[2], 0, slot).expect("a scalar fits");
                layout::strided_copy(gpu, &place, executor.output(node), &scalars)
            };
            Ok([into(model.loss, 0)?, into(model.correct, 1)?])
        };
        let (gather_train, gather_eval) = (gather(&train)?, gather(&eval)?);
        Ok(GpuTrainer {
            gpu,
            model,
            training,
            params,
            train,
            eval,
            clip,
            updates,
            state,
            scalars,
            gather_train,
            gather_eval,
            steps: 0,
        })
    }

    /// Device memory of the training step and of evaluation (which share planned buffers).
    pub fn memory(&self) -> (Memory, Memory) {
        (self.train.memory(), self.eval.memory())
    }

    /// Kernel dispatches of one training step: forward, backward, gathering the scalars,
    /// clipping and the updates.
    pub fn dispatches_per_step(&self) -> usize {
        self.train.dispatch_count() + self.gather_train.len() + self.clip.len() + self.updates.len()
    }

    /// Loss and correct count of the last run, in one readback.
    fn stats(&self) -> Result<StepStats> {
        let [loss, correct] = self.gpu.read::<f32>(&self.scalars)?[..] else { unreachable!("two scalars") };
        Ok(StepStats { loss, correct })
    }
}

impl Trainer for GpuTrainer<'_> {
    fn train_step(&mut self, feed: &Feed) -> Result<StepStats> {
        let step = self.steps + 1;
        let optimizer = self.training.optimizer_at(step);
        for (update, p) in self.updates.iter().zip(&self.model.params) {
            optimizer::set_step(self.gpu, update, &optimizer, step, self.params[&p.name].len());
        }
        let after: Vec<&Dispatch> = self.gather_train.iter().chain(&self.clip).chain(&self.updates).collect();
        self.train.run_with(feed, &after)?;
        self.steps = step;
        self.stats()
    }

    fn evaluate(&mut self, feed: &Feed) -> Result<StepStats> {
        self.eval.run_with(feed, &self.gather_eval.iter().collect::<Vec<_>>())?;
        self.stats()
    }

    fn params(&self) -> Result<HashMap<String, Vec<f32>>> {
        self.params.iter().map(|(name, t)| Ok((name.clone(), self.gpu.read(t)?))).collect()
    }

    fn steps(&self) -> u64 {
        self.steps
    }

    fn state(&self) -> Result<TrainerState> {
        let mut optimizer = HashMap::new();
        for (p, buffers) in self.model.params.iter().zip(&self.state) {
            let values = buffers.iter().map(|t| self.gpu.read(t)).collect::<kernels::Result<_>>()?;
            optimizer.insert(p.name.clone(), values);
        }
        Ok(TrainerState { params: self.params()?, optimizer, steps: self.steps })
    }

    /// Writes into the existing tensors, so every prepared dispatch stays valid.
    fn restore(&mut self, state: &TrainerState) -> Result<()> {
        check_fits(&self.model, &self.training, state)?;
        for (name, tensor) in &self.params {
            self.gpu.write(tensor, &state.params[name])?;
        }
        for (p, buffers) in self.model.params.iter().zip(&self.state) {
            for (tensor, value) in buffers.iter().zip(&state.optimizer[&p.name]) {
                self.gpu.write(tensor, value)?;
            }
        }
        self.steps = state.steps;
        Ok(())
    }
}

/// Fails unless `state` has a value of the right length for every parameter, state tensor and
/// optimizer slot of `model`.
fn check_fits(model: &Classifier, training: &Training, state: &TrainerState) -> Result<()> {
    let mismatch = |name: &str, detail: String| GraphError::Shape { node: name.to_string(), detail };
    for (name, shape) in model.state_dict_shapes() {
        let want = shape.iter().product::<usize>();
        match state.params.get(&name) {
            Some(v) if v.len() == want => {}
            Some(v) => return Err(mismatch(&name, format!("{} values for shape {shape:?}", v.len()))),
            None => return Err(mismatch(&name, "no value to restore".into())),
        }
    }
    for p in &model.params {
        let want = model.initial[&p.name].len();
        let slots = state.optimizer.get(&p.name).map_or(&[][..], |s| s.as_slice());
        if slots.len() != training.optimizer.state_count() || slots.iter().any(|s| s.len() != want) {
            return Err(mismatch(&p.name, "optimizer state does not fit this optimizer and parameter".into()));
        }
    }
    Ok(())
}
