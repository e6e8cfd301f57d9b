//! Reference optimizer updates and gradient clipping (PyTorch semantics, f64 arithmetic).

use crate::optimizer::{Adam, Sgd};

/// Update number `step` (1-based) of SGD.
pub fn sgd(s: &Sgd, step: u64, param: &mut [f32], grad: &[f32], buf: &mut [f32]) {
    for i in 0..param.len() {
        let mut g = grad[i] as f64 + s.weight_decay as f64 * param[i] as f64;
        if s.momentum != 0.0 {
            let b = if step <= 1 { g } else { s.momentum as f64 * buf[i] as f64 + (1.0 - s.dampening as f64) * g };
            buf[i] = b as f32;
            g = if s.nesterov { g + s.momentum as f64 * b } else { b };
        }
        param[i] = (param[i] as f64 - s.lr as f64 * g) as f32;
    }
}

/// Update number `step` (1-based) of Adam / AdamW.
pub fn adam(a: &Adam, step: u64, param: &mut [f32], grad: &[f32], m: &mut [f32], v: &mut [f32]) {
    let (b1, b2) = (a.beta1 as f64, a.beta2 as f64);
    let bc1 = 1.0 - b1.powi(step as i32);
    let bc2 = 1.0 - b2.powi(step as i32);
    for i in 0..param.len() {
        let mut p = param[i] as f64;
        let mut g = grad[i] as f64;
        if a.decoupled {
            p *= 1.0 - a.lr as f64 * a.weight_decay as f64;
        } else {
            g += a.weight_decay as f64 * p;
        }
        let mi = b1 * m[i] as f64 + (1.0 - b1) * g;
        let vi = b2 * v[i] as f64 + (1.0 - b2) * g * g;
        m[i] = mi as f32;
        v[i] = vi as f32;
        param[i] = (p - a.lr as f64 * (mi / bc1) / (vi.sqrt() / bc2.sqrt() + a.eps as f64)) as f32;
    }
}

/// The global L2 norm of all gradients, summed in f64.
pub fn grad_norm(grads: &[&[f32]]) -> f32 {
    grads.iter().flat_map(|g| g.iter()).map(|&v| v as f64 * v as f64).sum::<f64>().sqrt() as f32
}

/// Scales all gradients by min(1, max_norm / (norm + 1e-6)) (`torch.nn.utils.clip_grad_norm_`);
/// returns the global norm before.
pub fn clip_grad_norm(grads: &mut [&mut [f32]], max_norm: f32) -> f32 {
    let norm = grad_norm(&grads.iter().map(|g| &g[..]).collect::<Vec<_>>()) as f64;
    let factor = (max_norm as f64 / (norm + 1e-6)).min(1.0);
    for g in grads.iter_mut() {
        for v in g.iter_mut() {
            *v = (*v as f64 * factor) as f32;
        }
    }
    norm as f32
}
