//! How parameters are updated: the optimizer (the kernels crate's fused updates, PyTorch
//! semantics), a learning-rate schedule and optional global-norm gradient clipping.

pub use kernels::{Adam, Optimizer, Sgd};

/// A learning-rate schedule: the factor applied to the optimizer's base rate at each update.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Schedule {
    /// The base rate throughout.
    Constant,
    /// `StepLR`: times `gamma` every `every` updates.
    Step {
        /// Updates between two steps down.
        every: u64,
        /// Each step's factor.
        gamma: f32,
    },
    /// Linear warm-up from 1/warmup to 1 over `warmup` updates, then a cosine from 1 down to
    /// `floor` at update `total`.
    WarmupCosine {
        /// Updates of warm-up.
        warmup: u64,
        /// Updates of the whole run.
        total: u64,
        /// The factor at the end.
        floor: f32,
    },
    /// `OneCycleLR` (cosine annealing): from 1/div_factor up to 1 over `pct_start` of `total`,
    /// then down to 1/(div_factor · final_div_factor).
    OneCycle {
        /// Updates of the whole run.
        total: u64,
        /// The share of the run spent rising.
        pct_start: f32,
        /// The base rate over the starting one.
        div_factor: f32,
        /// The starting rate over the final one.
        final_div_factor: f32,
    },
}

impl Schedule {
    /// The factor for the update with 0-based index `step`.
    pub fn factor(&self, step: u64) -> f32 {
        let cosine = |from: f64, to: f64, t: f64| to + (from - to) * 0.5 * (1.0 + (std::f64::consts::PI * t).cos());
        let f = match *self {
            Schedule::Constant => 1.0,
            Schedule::Step { every, gamma } => (gamma as f64).powi((step / every.max(1)) as i32),
            Schedule::WarmupCosine { warmup, total, floor } => {
                if step < warmup {
                    (step + 1) as f64 / warmup as f64
                } else {
                    let t = (step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64;
                    cosine(1.0, floor as f64, t.min(1.0))
                }
            }
            Schedule::OneCycle { total, pct_start, div_factor, final_div_factor } => {
                let initial = 1.0 / div_factor as f64;
                let last = initial / final_div_factor as f64;
                let peak = (pct_start as f64 * total as f64 - 1.0).max(1.0);
                let end = (total as f64 - 1.0).max(peak + 1.0);
                let s = step as f64;
                if s <= peak {
                    cosine(initial, 1.0, s / peak)
                } else {
                    cosine(1.0, last, ((s - peak) / (end - peak)).min(1.0))
                }
            }
        };
        f as f32
    }
}

/// Everything about a parameter update except the parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Training {
    /// The optimizer with its base learning rate.
    pub optimizer: Optimizer,
    /// How the rate changes over the run.
    pub schedule: Schedule,
    /// Scale all gradients so their global L2 norm is at most this (`clip_grad_norm_`).
    pub clip_grad_norm: Option<f32>,
}

impl Training {
    /// The optimizer as it applies to update number `step` (1-based): its rate scheduled.
    pub fn optimizer_at(&self, step: u64) -> Optimizer {
        let factor = self.schedule.factor(step.saturating_sub(1));
        match self.optimizer {
            Optimizer::Sgd(s) => Optimizer::Sgd(Sgd { lr: s.lr * factor, ..s }),
            Optimizer::Adam(a) => Optimizer::Adam(Adam { lr: a.lr * factor, ..a }),
        }
    }

    /// `torch.optim.Adam(lr=lr)` with PyTorch's defaults, no schedule, no clipping.
    pub fn adam(lr: f32) -> Self {
        let adam = Adam { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: false };
        Training { optimizer: Optimizer::Adam(adam), schedule: Schedule::Constant, clip_grad_norm: None }
    }
}

/// PyTorch's names for an optimizer's per-parameter state tensors, in
/// [`Optimizer::state_count`] order.
pub fn optimizer_slots(optimizer: &Optimizer) -> &'static [&'static str] {
    match optimizer {
        Optimizer::Sgd(_) => &["momentum_buffer"],
        Optimizer::Adam(_) => &["exp_avg", "exp_avg_sq"],
    }
}

/// The name of state tensor `slot` of parameter `param`, as checkpoints store it
/// (`optimizer.exp_avg.fc1.weight`).
pub fn optimizer_state_name(optimizer: &Optimizer, slot: usize, param: &str) -> String {
    format!("optimizer.{}.{param}", optimizer_slots(optimizer)[slot])
}
