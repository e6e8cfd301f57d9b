//! Layers: builders that add a layer's nodes to a graph and declare its parameters, named as
//! the equivalent `torch.nn` module's `state_dict` keys and initialised as PyTorch does by
//! default, from a seed.

use std::collections::HashMap;

use kernels::Binary;
use kernels::cpu::dropout::philox4x32_10;

use crate::error::Result;
use crate::ir::{Graph, TensorId};
use crate::ops::ConvGeometry;

/// A model under construction: its graph, the initial values of its parameters and state by
/// name (in declaration order, like a `state_dict`), and the seeded stream they are drawn from.
pub struct Model {
    pub graph: Graph,
    pub params: HashMap<String, Vec<f32>>,
    /// Parameter names in declaration order.
    pub order: Vec<String>,
    seed: u64,
    drawn: u64,
    dropouts: u64,
}

impl Model {
    pub fn new(seed: u64) -> Self {
        Model { graph: Graph::new(), params: HashMap::new(), order: Vec::new(), seed, drawn: 0, dropouts: 0 }
    }

    /// `n` values uniform in [-bound, bound) from the model's Philox stream: the same seed
    /// gives the same parameters on every machine. Word 1 of the counter is all ones here and
    /// zero in dropout's, so the two streams never share a counter.
    fn uniform(&mut self, n: usize, bound: f32) -> Vec<f32> {
        let key = [self.seed as u32, (self.seed >> 32) as u32];
        let values = (0..n)
            .map(|i| {
                let counter = self.drawn + i as u64;
                let words = philox4x32_10([(counter / 4) as u32, u32::MAX, (counter >> 34) as u32, 0], key);
                let u = (words[(counter % 4) as usize] >> 8) as f32 / 16_777_216.0;
                (2.0 * u - 1.0) * bound
            })
            .collect();
        self.drawn += n as u64;
        values
    }

    /// Declares parameter `name` of `shape`, uniform in ±`bound`.
    fn param(&mut self, name: String, shape: &[usize], bound: f32) -> TensorId {
        let values = self.uniform(shape.iter().product(), bound);
        let node = self.graph.param(&name, shape);
        self.declare(name, values);
        node
    }

    /// Declares parameter (or, with `trained` false, state) `name` of `len` equal values.
    fn constant(&mut self, name: String, len: usize, value: f32, trained: bool) -> TensorId {
        self.declare(name.clone(), vec![value; len]);
        if trained { self.graph.param(&name, &[len]) } else { self.graph.state(&name, &[len]) }
    }

    fn declare(&mut self, name: String, values: Vec<f32>) {
        self.params.insert(name.clone(), values);
        self.order.push(name);
    }

    /// `nn.Linear(inputs, outputs, bias)` named `name`: x [rows, inputs] -> [rows, outputs].
    /// Weight [outputs, inputs] and bias [outputs] are U(±1/√inputs), PyTorch's default
    /// (Kaiming-uniform with a = √5 reduces to that bound).
    pub fn linear(&mut self, name: &str, x: TensorId, inputs: usize, outputs: usize, bias: bool) -> Result<TensorId> {
        let bound = 1.0 / (inputs as f32).sqrt();
        let weight = self.param(format!("{name}.weight"), &[outputs, inputs], bound);
        let mut y = self.graph.matmul(x, weight, false, true)?;
        if bias {
            let b = self.param(format!("{name}.bias"), &[outputs], bound);
            y = self.graph.binary(Binary::Add, y, b)?;
        }
        self.graph.set_label(y, name);
        Ok(y)
    }

    /// `nn.Conv2d(in_channels, out_channels, kernel, ...)` named `name` on x [N, C, H, W].
    /// Weight [out, in, kh, kw] and bias [out] are U(±1/√(in·kh·kw)), PyTorch's default.
    pub fn conv2d(
        &mut self,
        name: &str,
        x: TensorId,
        out_channels: usize,
        kernel: (usize, usize),
        geo: ConvGeometry,
        bias: bool,
    ) -> Result<TensorId> {
        let in_channels = self.graph.shape(x).get(1).copied().unwrap_or(0);
        let bound = 1.0 / ((in_channels * kernel.0 * kernel.1) as f32).sqrt();
        let weight = self.param(format!("{name}.weight"), &[out_channels, in_channels, kernel.0, kernel.1], bound);
        let bias = bias.then(|| self.param(format!("{name}.bias"), &[out_channels], bound));
        let y = self.graph.conv2d(x, weight, bias, geo)?;
        self.graph.set_label(y, name);
        Ok(y)
    }
}

impl Model {
    /// `nn.BatchNorm1d` / `nn.BatchNorm2d` named `name` on x [N, C, ...]: weight 1, bias 0,
    /// running_mean 0, running_var 1, as PyTorch initialises them.
    pub fn batch_norm(&mut self, name: &str, x: TensorId, eps: f32, momentum: f32) -> Result<TensorId> {
        let channels = self.graph.shape(x).get(1).copied().unwrap_or(0);
        let gamma = self.constant(format!("{name}.weight"), channels, 1.0, true);
        let beta = self.constant(format!("{name}.bias"), channels, 0.0, true);
        let mean = self.constant(format!("{name}.running_mean"), channels, 0.0, false);
        let var = self.constant(format!("{name}.running_var"), channels, 1.0, false);
        let y = self.graph.batch_norm(x, [gamma, beta, mean, var], eps, momentum)?;
        self.graph.set_label(y, name);
        Ok(y)
    }

    /// `nn.LayerNorm(features)` named `name` over the last axis of x: weight 1, bias 0.
    pub fn layer_norm(&mut self, name: &str, x: TensorId, eps: f32) -> Result<TensorId> {
        let features = self.graph.shape(x).last().copied().unwrap_or(0);
        let gamma = self.constant(format!("{name}.weight"), features, 1.0, true);
        let beta = self.constant(format!("{name}.bias"), features, 0.0, true);
        let y = self.graph.layer_norm(x, gamma, beta, eps)?;
        self.graph.set_label(y, name);
        Ok(y)
    }

    /// `nn.Dropout(p)`: each dropout layer draws its masks from its own stream of the seed.
    pub fn dropout(&mut self, x: TensorId, p: f32) -> Result<TensorId> {
        self.dropouts += 1;
        let seed = self.seed ^ self.dropouts.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.graph.dropout(x, p, seed)
    }
}
