//! Layers: builders that add a layer's nodes to a graph and declare its parameters, named as
//! the equivalent `torch.nn` module's `state_dict` keys and initialised as PyTorch does by
//! default, from a seed.

use std::collections::HashMap;

use kernels::Binary;
use kernels::cpu::dropout::philox4x32_10;

use crate::decoding::{Carried, Carry, Decoding};
use crate::error::{GraphError, Result};
use crate::ir::{Graph, TensorId};
use crate::ops::{CellKind, ConvGeometry};
use crate::spec::{Recurrent, Transformer};

/// How a parameter or state tensor starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Uniform in [-bound, bound), from the model's Philox stream at this offset.
    Uniform {
        /// Values lie in ±bound.
        bound: f32,
        /// Where in the stream the tensor's draws start.
        offset: u64,
    },
    /// Every element the same value.
    Constant(f32),
    /// The sinusoidal encoding of "Attention is all you need" for a [steps, dim] table:
    /// row t is sin(t / 10000^(2i/dim)) at 2i and cos(...) at 2i + 1.
    Sinusoidal {
        /// Features of a row.
        dim: usize,
    },
    /// N(0, std²) by Box–Muller from two draws of the stream per element (from `offset`), the
    /// elements `zeroed.0 .. zeroed.0 + zeroed.1` zero (an embedding's padding row).
    Normal {
        /// The deviation.
        std: f32,
        /// Where in the stream the tensor's draws start.
        offset: u64,
        /// (first, count) of the elements kept zero.
        zeroed: (usize, usize),
    },
}

/// The initial values of a model's parameters and state, declared but not yet drawn: a
/// model's memory can be weighed from its shapes before anything is allocated.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Initializers {
    seed: u64,
    /// Name, element count and initialiser, in declaration order (a `state_dict`'s).
    entries: Vec<(String, usize, Init)>,
}

impl Initializers {
    /// Every value, drawn now. The same seed gives the same values on every machine.
    pub fn values(&self) -> HashMap<String, Vec<f32>> {
        self.entries.iter().map(|(name, len, init)| (name.clone(), self.draw(*len, *init))).collect()
    }

    /// The names in declaration order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(name, ..)| name.as_str())
    }

    /// Elements of every tensor together.
    pub fn elements(&self) -> usize {
        self.entries.iter().fold(0, |n, (_, len, _)| n.saturating_add(*len))
    }

    /// Word 1 of the Philox counter is all ones here and zero in dropout's, so the two
    /// streams never share a counter.
    fn draw(&self, n: usize, init: Init) -> Vec<f32> {
        match init {
            Init::Constant(v) => vec![v; n],
            Init::Sinusoidal { dim } => (0..n)
                .map(|e| {
                    let (t, c) = ((e / dim) as f64, e % dim);
                    let angle = t / 10_000f64.powf((c - c % 2) as f64 / dim as f64);
                    (if c % 2 == 0 { angle.sin() } else { angle.cos() }) as f32
                })
                .collect(),
            Init::Uniform { bound, offset } => {
                (0..n as u64).map(|i| (2.0 * self.uniform(offset + i) - 1.0) * bound).collect()
            }
            Init::Normal { std, offset, zeroed: (start, len) } => (0..n)
                .map(|i| {
                    if (start..start + len).contains(&i) {
                        return 0.0;
                    }
                    let (u1, u2) = (self.uniform(offset + 2 * i as u64), self.uniform(offset + 2 * i as u64 + 1));
                    // 1 - u1 lies in (0, 1]: its logarithm is finite.
                    std * (-2.0 * (1.0 - u1).ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
                })
                .collect(),
        }
    }

    /// Draw `counter` of the stream, uniform in [0, 1) on a 2⁻²⁴ grid.
    fn uniform(&self, counter: u64) -> f32 {
        let key = [self.seed as u32, (self.seed >> 32) as u32];
        let words = philox4x32_10([(counter / 4) as u32, u32::MAX, (counter >> 34) as u32, 0], key);
        (words[(counter % 4) as usize] >> 8) as f32 / 16_777_216.0
    }
}

/// A model under construction: its graph and how each parameter and state tensor starts,
/// from the seeded stream.
pub struct Model {
    /// The layers' nodes so far.
    pub graph: Graph,
    /// How each parameter and state tensor starts.
    pub init: Initializers,
    /// `state_dict` keys that name another key's parameter (tied weights), with that key.
    pub tied: Vec<(String, String)>,
    /// Set when the model is built to take one token at a time ([`Model::for_decoding`]).
    pub decoding: Option<Decoding>,
    /// Every attention layer, in order, with what its probabilities are computed from.
    pub attention: Vec<AttentionSite>,
    drawn: u64,
    dropouts: u64,
}

impl Model {
    /// An empty model whose parameters are drawn from `seed`'s stream.
    pub fn new(seed: u64) -> Self {
        Model {
            graph: Graph::new(),
            init: Initializers { seed, entries: Vec::new() },
            tied: Vec::new(),
            decoding: None,
            attention: Vec::new(),
            drawn: 0,
            dropouts: 0,
        }
    }

    /// Declares parameter `name` of `shape`, uniform in ±`bound`: the next values of the
    /// model's stream.
    fn param(&mut self, name: String, shape: &[usize], bound: f32) -> TensorId {
        let node = self.graph.param(&name, shape);
        let len = self.graph.numel(node);
        self.init.entries.push((name, len, Init::Uniform { bound, offset: self.drawn }));
        self.drawn = self.drawn.saturating_add(len as u64);
        node
    }

    /// The [batch, steps, features] of a sequence x that layer `name` reads, or what it is instead.
    fn sequence(&self, name: &str, x: TensorId) -> Result<[usize; 3]> {
        let shape = self.graph.shape(x);
        shape.try_into().map_err(|_| GraphError::Shape {
            node: name.into(),
            detail: format!("needs a sequence [batch, steps, features], got {shape:?}"),
        })
    }

    /// Declares parameter `name` of `shape`, N(0, std²) with the elements `zeroed` zero: the
    /// next values of the stream (two draws each).
    fn normal_param(&mut self, name: String, shape: &[usize], std: f32, zeroed: (usize, usize)) -> TensorId {
        let node = self.graph.param(&name, shape);
        let len = self.graph.numel(node);
        self.init.entries.push((name, len, Init::Normal { std, offset: self.drawn, zeroed }));
        self.drawn = self.drawn.saturating_add((len as u64).saturating_mul(2));
        node
    }

    /// Declares parameter (or, with `trained` false, state) `name` of `len` equal values.
    fn constant(&mut self, name: String, len: usize, value: f32, trained: bool) -> TensorId {
        let node = if trained { self.graph.param(&name, &[len]) } else { self.graph.state(&name, &[len]) };
        self.init.entries.push((name, len, Init::Constant(value)));
        node
    }

    /// `nn.Linear(inputs, outputs, bias)` named `name` on the last axis of x [..., inputs]:
    /// [..., outputs]. Weight [outputs, inputs] and bias [outputs] are U(±1/√inputs),
    /// PyTorch's default (Kaiming-uniform with a = √5 reduces to that bound).
    pub fn linear(&mut self, name: &str, x: TensorId, inputs: usize, outputs: usize, bias: bool) -> Result<TensorId> {
        let weight = self.param(format!("{name}.weight"), &[outputs, inputs], 1.0 / (inputs as f32).sqrt());
        self.project(name, x, weight, bias)
    }

    /// x [..., inputs] · weightᵀ (+ a bias `name.bias` [outputs], U(±1/√inputs)), the leading
    /// axes taken as rows of one matmul.
    fn project(&mut self, name: &str, x: TensorId, weight: TensorId, bias: bool) -> Result<TensorId> {
        let shape = self.graph.shape(x).to_vec();
        let &[outputs, inputs] = self.graph.shape(weight) else { unreachable!("a weight is a matrix") };
        let rows = if shape.len() == 2 {
            x
        } else {
            self.graph.reshape(x, &[shape[..shape.len() - 1].iter().product(), inputs])?
        };
        let mut y = match bias {
            true => {
                let b = self.param(format!("{name}.bias"), &[outputs], 1.0 / (inputs as f32).sqrt());
                self.graph.matmul_bias(rows, weight, (false, true), b)?
            }
            false => self.graph.matmul(rows, weight, false, true)?,
        };
        if shape.len() != 2 {
            y = self.graph.reshape(y, &[&shape[..shape.len() - 1], &[outputs][..]].concat())?;
        }
        self.graph.set_label(y, name);
        Ok(y)
    }

    /// `nn.Linear(inputs, outputs, bias)` named `name` on x [..., inputs] whose weight is the
    /// parameter `weight` [outputs, inputs] of another layer (a language model's output head
    /// tied to its embedding, `head.weight = embedding.weight` in PyTorch): `name.weight` is
    /// a second `state_dict` key for that tensor.
    pub fn tied_linear(&mut self, name: &str, x: TensorId, weight: &str, bias: bool) -> Result<TensorId> {
        let inputs = self.graph.shape(x).last().copied().unwrap_or(0);
        let shared = self.graph.find_param(weight).filter(|&w| self.graph.shape(w)[1..] == [inputs]);
        let shared = shared.ok_or_else(|| GraphError::Usage {
            node: name.into(),
            detail: format!(
                "ties its weight to {weight:?}, which is no [outputs, {inputs}] parameter declared before it"
            ),
        })?;
        self.tied.push((format!("{name}.weight"), weight.to_string()));
        self.project(name, x, shared, bias)
    }

    /// `nn.Embedding(vocab, dim, padding_idx)` named `name` on u32 ids of any shape: [ids'
    /// shape, dim]. Weight [vocab, dim] is N(0, std²) with the padding row zero (std 1 is
    /// PyTorch's default; GPT-2 draws 0.02, which an output head tied to it needs to start
    /// from small logits); the padding row gets no gradient.
    pub fn embedding(
        &mut self,
        name: &str,
        ids: TensorId,
        (vocab, dim): (usize, usize),
        padding: Option<usize>,
        std: f32,
    ) -> Result<TensorId> {
        let zeroed = padding.map_or((0, 0), |p| (p * dim, dim));
        let weight = self.normal_param(format!("{name}.weight"), &[vocab, dim], std, zeroed);
        let y = self.graph.embedding(ids, weight, padding)?;
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
        let bound = 1.0 / (in_channels as f32 * kernel.0 as f32 * kernel.1 as f32).sqrt();
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
        let seed = self.init.seed ^ self.dropouts.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.graph.dropout(x, p, seed)
    }
}

/// Building a model to take one token at a time ([`crate::Decoder`] runs it).
impl Model {
    /// A model to be built one token at a time (batch 1) for windows of up to `context`.
    pub fn for_decoding(seed: u64, context: usize) -> Model {
        let mut m = Model::new(seed);
        let position = m.graph.indices("position", &[1, 1], context);
        let attended = m.graph.indices("attended", &[1, context], 2);
        m.decoding = Some(Decoding { context, position, attended, carried: Vec::new(), bounded: false });
        m
    }

    /// Records what the token leaves for the carried input `input` named `name`.
    pub(crate) fn leave(&mut self, name: &str, input: TensorId, output: TensorId, carry: Carry) {
        let decoding = self.decoding.as_mut().expect("decoding");
        decoding.carried.push(Carried { name: name.to_string(), input, output, carry });
    }

    /// Fails, naming `layer` and `why`, when the model is being built for decoding: `layer`
    /// cannot take one token at a time.
    pub(crate) fn refuse_decoding(&self, layer: &str, why: &str) -> Result<()> {
        match self.decoding {
            Some(_) => Err(cannot_decode(layer, why)),
            None => Ok(()),
        }
    }
}

/// The error of a layer that cannot take one token at a time.
pub(crate) fn cannot_decode(layer: &str, why: &str) -> GraphError {
    GraphError::Unsupported { node: layer.into(), detail: format!("cannot decode token by token: {why}") }
}

/// What a recurrent layer gives: the outputs of every step, [B, T, D·H], and of the last
/// alone, [B, D·H] (`out[:, -1]`). A run computes only what it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecurrentOutput {
    /// [B, T, D·H]
    pub sequence: TensorId,
    /// [B, D·H]
    pub last: TensorId,
}

impl Model {
    /// `nn.LSTM` / `nn.GRU(inputs, hidden, layers, batch_first=True, bidirectional)` (the
    /// `cell`'s, with `r`'s settings: hidden units, stacked layers, both directions or one, the
    /// dropout between layers) named `name` on x [B, T, I]: the outputs of every step [B, T, D·H] (D = 2 if bidirectional,
    /// the backward direction's features second), from a zero initial state. Parameters
    /// `weight_ih_l{k}`, `weight_hh_l{k}`, `bias_ih_l{k}`, `bias_hh_l{k}` (`_reverse` for the
    /// backward direction) in PyTorch's order and layout, all U(±1/√H) as PyTorch draws them.
    /// The layers run time-major: one permute in and one out, each step's rows contiguous; the
    /// last step is sliced from the time-major output, so a classifier reading it alone
    /// (`out[:, -1]`) never transposes the other steps.
    pub fn recurrent(&mut self, name: &str, x: TensorId, cell: CellKind, r: &Recurrent) -> Result<RecurrentOutput> {
        let [batch, steps, _] = self.sequence(name, x)?;
        let (hd, width) = (r.hidden, cell.gates() * r.hidden);
        let bound = 1.0 / (hd as f32).sqrt();
        let mut seq = self.graph.permute(x, &[1, 0, 2])?; // [T, B, I]
        for layer in 0..r.layers {
            let inputs = self.graph.shape(seq)[2];
            let mut directions = Vec::new();
            for reverse in [false, true].into_iter().take(if r.bidirectional { 2 } else { 1 }) {
                let suffix = format!("_l{layer}{}", if reverse { "_reverse" } else { "" });
                let w_ih = self.param(format!("{name}.weight_ih{suffix}"), &[width, inputs], bound);
                let w_hh = self.param(format!("{name}.weight_hh{suffix}"), &[width, hd], bound);
                let b_ih = self.param(format!("{name}.bias_ih{suffix}"), &[width], bound);
                let b_hh = self.param(format!("{name}.bias_hh{suffix}"), &[width], bound);
                // An LSTM adds both biases to every gate, so their sum goes in once (and its
                // gradient, summed once, reaches both), and its recurrence reads x itself; a
                // GRU's bₕₙ sits inside r ⊙ (·), so every step's input gates, with bᵢₕ, are one
                // matmul before its recurrence.
                let (input, b) = match cell {
                    CellKind::Lstm => (seq, self.graph.binary(Binary::Add, b_ih, b_hh)?),
                    CellKind::Gru => {
                        let flat = self.graph.reshape(seq, &[steps * batch, inputs])?;
                        let xgates = self.graph.matmul_bias(flat, w_ih, (false, true), b_ih)?;
                        (self.graph.reshape(xgates, &[steps, batch, width])?, b_hh)
                    }
                };
                let states: &[&str] = if cell == CellKind::Lstm { &["h", "c"] } else { &["h"] };
                let carried = self.decoding.is_some();
                if carried && reverse {
                    self.refuse_decoding(name, "a bidirectional layer reads later tokens")?;
                }
                let initial: Vec<TensorId> = states
                    .iter()
                    .map(|s| match carried {
                        true => self.graph.input(&format!("{name}.{s}{suffix}"), &[batch, hd]),
                        false => self.graph.fill(0.0, &[batch, hd]),
                    })
                    .collect();
                let weights: &[TensorId] = if cell == CellKind::Lstm { &[w_ih] } else { &[] };
                let recurrence_inputs = [&[input, w_hh, b][..], &initial, weights].concat();
                let h = self.graph.recurrence(cell, reverse, &recurrence_inputs)?;
                if carried {
                    // One step: its h (and c) are the states the next token starts from.
                    for (slot, (s, &input)) in states.iter().zip(&initial).enumerate() {
                        let last = self.graph.reshape(h.node.out(slot), &[batch, hd])?;
                        self.leave(&format!("{name}.{s}{suffix}"), input, last, Carry::Replace);
                    }
                }
                directions.push(h);
            }
            seq = if r.bidirectional { self.graph.concat(&directions, 2)? } else { directions[0] };
            if r.dropout > 0.0 && layer + 1 < r.layers {
                seq = self.dropout(seq, r.dropout)?;
            }
        }
        let sequence = self.graph.permute(seq, &[1, 0, 2])?;
        self.graph.set_label(sequence, name);
        let last = self.graph.slice(seq, 0, steps - 1, 1)?;
        let last = self.graph.reshape(last, &[batch, self.graph.shape(seq)[2]])?;
        Ok(RecurrentOutput { sequence, last })
    }
}

impl Model {
    /// `nn.MultiheadAttention(E, heads, batch_first=True)` named `name` as self-attention on
    /// x [B, T, E] (optionally causal, and with a key-padding mask [B, T], u32, 0 = hidden):
    /// [B, T, E]. `in_proj_weight` [3E, E] is Xavier-uniform, `out_proj.weight` U(±1/√E), both
    /// biases zero, as PyTorch initialises them. The T × T scores are never kept: attention is
    /// one fused node.
    pub fn self_attention(
        &mut self,
        name: &str,
        x: TensorId,
        heads: usize,
        causal: bool,
        key_mask: Option<TensorId>,
    ) -> Result<TensorId> {
        self.multihead_attention(name, x, None, heads, causal, key_mask)
    }

    /// The same module attending from x [B, Tq, E] to `memory` [B, Tk, E] (a decoder's
    /// cross-attention), with an optional key-padding mask of the memory [B, Tk].
    pub fn cross_attention(
        &mut self,
        name: &str,
        x: TensorId,
        memory: TensorId,
        heads: usize,
        memory_mask: Option<TensorId>,
    ) -> Result<TensorId> {
        self.multihead_attention(name, x, Some(memory), heads, false, memory_mask)
    }

    fn multihead_attention(
        &mut self,
        name: &str,
        x: TensorId,
        memory: Option<TensorId>,
        heads: usize,
        causal: bool,
        key_mask: Option<TensorId>,
    ) -> Result<TensorId> {
        let [batch, steps, embed] = self.sequence(name, x)?;
        if heads == 0 || embed % heads != 0 {
            let detail = format!("{embed} features do not split into {heads} heads");
            return Err(GraphError::Shape { node: name.into(), detail });
        }
        let head_dim = embed / heads;
        let w_in = self.param(format!("{name}.in_proj_weight"), &[3 * embed, embed], (6.0 / (4 * embed) as f32).sqrt());
        let b_in = self.constant(format!("{name}.in_proj_bias"), 3 * embed, 0.0, true);
        // Rows `parts` (of q, k, v) of the input projection applied to `source` [B, T, E], as
        // [parts, B·H, T, D].
        let project = |m: &mut Model, source: TensorId, first: usize, parts: usize| -> Result<(TensorId, usize)> {
            let t = m.sequence(name, source)?[1];
            let rows = m.graph.reshape(source, &[batch * t, embed])?;
            let (w, b) = if parts == 3 {
                (w_in, b_in)
            } else {
                (
                    m.graph.slice(w_in, 0, first * embed, parts * embed)?,
                    m.graph.slice(b_in, 0, first * embed, parts * embed)?,
                )
            };
            let h = m.graph.matmul_bias(rows, w, (false, true), b)?;
            // [B, T, parts, H, D] -> [parts, B, H, T, D].
            let h = m.graph.reshape(h, &[batch, t, parts, heads, head_dim])?;
            Ok((m.graph.permute(h, &[2, 0, 3, 1, 4])?, t))
        };
        let part = |m: &mut Model, (all, t): (TensorId, usize), i: usize| -> Result<TensorId> {
            let p = m.graph.slice(all, 0, i, 1)?;
            m.graph.reshape(p, &[batch * heads, t, head_dim])
        };
        let (q, k, v) = match memory {
            None => {
                let qkv = project(self, x, 0, 3)?;
                (part(self, qkv, 0)?, part(self, qkv, 1)?, part(self, qkv, 2)?)
            }
            Some(memory) => {
                let (q, kv) = (project(self, x, 0, 1)?, project(self, memory, 1, 2)?);
                (part(self, q, 0)?, part(self, kv, 0)?, part(self, kv, 1)?)
            }
        };
        let o = match self.decoding.as_ref().map(|d| (d.context, d.attended)) {
            Some((context, attended)) if causal && memory.is_none() && key_mask.is_none() => {
                // The token attends to the cached keys and values of those before it, and its own.
                let mut all = Vec::new();
                for (kind, new) in [("k", k), ("v", v)] {
                    let cache = format!("{name}.{kind}");
                    let past = self.graph.input(&cache, &[batch * heads, context - 1, head_dim]);
                    self.leave(&cache, past, new, Carry::Append { rows: batch * heads, width: head_dim });
                    all.push(self.graph.concat(&[past, new], 1)?);
                }
                self.decoding.as_mut().expect("decoding").bounded = true;
                self.graph.attention(q, all[0], all[1], Some(attended), heads, false)?
            }
            Some(_) => return Err(cannot_decode(name, "only causal self-attention decodes one token at a time")),
            None => {
                self.attention.push(AttentionSite { name: name.to_string(), q, k, heads, causal, key_mask });
                self.graph.attention(q, k, v, key_mask, heads, causal)?
            }
        };
        let o = self.graph.reshape(o, &[batch, heads, steps, head_dim])?;
        let o = self.graph.permute(o, &[0, 2, 1, 3])?;
        let o = self.graph.reshape(o, &[batch * steps, embed])?;
        let bound = 1.0 / (embed as f32).sqrt();
        let w_out = self.param(format!("{name}.out_proj.weight"), &[embed, embed], bound);
        let b_out = self.constant(format!("{name}.out_proj.bias"), embed, 0.0, true);
        let y = self.graph.matmul_bias(o, w_out, (false, true), b_out)?;
        let y = self.graph.reshape(y, &[batch, steps, embed])?;
        self.graph.set_label(y, name);
        Ok(y)
    }
}

/// An attention layer's queries and keys ([B·H, T, D] each) and masks: what its probabilities
/// softmax(q kᵀ / √D) come from when an explanation asks for them (training never forms them).
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionSite {
    /// The layer's name (`encoder.layers.0.self_attn`).
    pub name: String,
    /// The queries [B·H, Tq, D].
    pub q: TensorId,
    /// The keys [B·H, Tk, D].
    pub k: TensorId,
    /// Heads.
    pub heads: usize,
    /// Whether query i sees only keys up to i.
    pub causal: bool,
    /// [B, Tk] u32, 0 = hidden.
    pub key_mask: Option<TensorId>,
}

/// One sub-block of a Transformer layer: what it computes from its (normalised) input.
type Block<'a> = dyn Fn(&mut Model, TensorId) -> Result<TensorId> + 'a;

impl Model {
    /// x + block(norm(x)) (pre-norm) or norm(x + block(x)), the norm named `norm`.
    fn residual(&mut self, x: TensorId, block: &Block, norm: &str, layer: &Transformer) -> Result<TensorId> {
        if layer.norm_first {
            let h = self.layer_norm(norm, x, layer.eps)?;
            let h = block(self, h)?;
            self.graph.binary(Binary::Add, x, h)
        } else {
            let h = block(self, x)?;
            let sum = self.graph.binary(Binary::Add, x, h)?;
            self.layer_norm(norm, sum, layer.eps)
        }
    }

    fn dropped(&mut self, x: TensorId, p: f32) -> Result<TensorId> {
        if p > 0.0 { self.dropout(x, p) } else { Ok(x) }
    }

    /// linear2(dropout(activation(linear1(x)))), then dropout, named `name.linear1`, `.linear2`.
    fn feedforward(&mut self, name: &str, x: TensorId, layer: &Transformer) -> Result<TensorId> {
        let [batch, steps, d] = self.sequence(name, x)?;
        let rows = self.graph.reshape(x, &[batch * steps, d])?;
        let h = self.linear(&format!("{name}.linear1"), rows, d, layer.feedforward, true)?;
        let h = self.graph.unary(layer.activation, h)?;
        let h = self.dropped(h, layer.dropout)?;
        let h = self.linear(&format!("{name}.linear2"), h, layer.feedforward, d, true)?;
        let h = self.graph.reshape(h, &[batch, steps, d])?;
        self.dropped(h, layer.dropout)
    }

    /// `nn.TransformerEncoderLayer(d, heads, feedforward, dropout, activation, eps,
    /// batch_first=True, norm_first)` named `name` on x [B, T, d] (the width from x, the rest
    /// `layer`'s settings; its `layers` are the caller's to stack), causal if `layer` says, with
    /// an optional key-padding mask: its parameters are `self_attn.*`, `linear1.*`, `linear2.*`, `norm1.*`,
    /// `norm2.*`, as PyTorch names and initialises them.
    pub fn encoder_layer(
        &mut self,
        name: &str,
        x: TensorId,
        layer: &Transformer,
        key_mask: Option<TensorId>,
    ) -> Result<TensorId> {
        let attention = |m: &mut Model, h: TensorId| -> Result<TensorId> {
            let h = m.self_attention(&format!("{name}.self_attn"), h, layer.heads, layer.causal, key_mask)?;
            m.dropped(h, layer.dropout)
        };
        let h = self.residual(x, &attention, &format!("{name}.norm1"), layer)?;
        let y = self.residual(h, &|m, h| m.feedforward(name, h, layer), &format!("{name}.norm2"), layer)?;
        self.graph.set_label(y, name);
        Ok(y)
    }

    /// `nn.TransformerDecoderLayer(...)` named `name` on x [B, T, d] attending to `memory`
    /// [B, Tm, d]: self-attention (causal when `layer` says), cross-attention to the memory (with its
    /// optional key-padding mask), the feed-forward block; parameters `self_attn.*`,
    /// `multihead_attn.*`, `linear1.*`, `linear2.*`, `norm1.*` to `norm3.*`, as PyTorch's.
    pub fn decoder_layer(
        &mut self,
        name: &str,
        x: TensorId,
        memory: TensorId,
        layer: &Transformer,
        memory_mask: Option<TensorId>,
    ) -> Result<TensorId> {
        let attention = |m: &mut Model, h: TensorId| -> Result<TensorId> {
            let h = m.self_attention(&format!("{name}.self_attn"), h, layer.heads, layer.causal, None)?;
            m.dropped(h, layer.dropout)
        };
        let cross = |m: &mut Model, h: TensorId| -> Result<TensorId> {
            let h = m.cross_attention(&format!("{name}.multihead_attn"), h, memory, layer.heads, memory_mask)?;
            m.dropped(h, layer.dropout)
        };
        let h = self.residual(x, &attention, &format!("{name}.norm1"), layer)?;
        let h = self.residual(h, &cross, &format!("{name}.norm2"), layer)?;
        let y = self.residual(h, &|m, h| m.feedforward(name, h, layer), &format!("{name}.norm3"), layer)?;
        self.graph.set_label(y, name);
        Ok(y)
    }
}

impl Model {
    /// ViT's class token: one learned vector [C] (N(0, 0.02²), as timm draws it) named
    /// `name.token`, put before the sequence x [B, T, C]: [B, T + 1, C].
    pub fn class_token(&mut self, name: &str, x: TensorId) -> Result<TensorId> {
        self.refuse_decoding(name, "a class token comes before the sequence")?;
        let [batch, _, c] = self.sequence(name, x)?;
        let token = self.normal_param(format!("{name}.token"), &[1, 1, c], 0.02, (0, 0));
        let zeros = self.graph.fill(0.0, &[batch, 1, c]);
        let tokens = self.graph.binary(Binary::Add, zeros, token)?; // one per sample
        let y = self.graph.concat(&[tokens, x], 1)?;
        self.graph.set_label(y, name);
        Ok(y)
    }

    /// An embedding of each position added to x [B, T, C]: learned, `name.weight` [1, T, C]
    /// (N(0, 0.02²)), or the fixed sinusoidal one, kept as state `name.pe` (as the
    /// PositionalEncoding of PyTorch's tutorials keeps its buffer).
    /// When decoding, the table is the trained window's and the token's row is added.
    pub fn position(&mut self, name: &str, x: TensorId, learned: bool) -> Result<TensorId> {
        let [_, steps, c] = self.sequence(name, x)?;
        let decoding = self.decoding.as_ref().map(|d| (d.context, d.position));
        let steps = decoding.map_or(steps, |(context, _)| context);
        let table = if learned {
            self.normal_param(format!("{name}.weight"), &[1, steps, c], 0.02, (0, 0))
        } else {
            let table = self.graph.state(&format!("{name}.pe"), &[1, steps, c]);
            self.init.entries.push((format!("{name}.pe"), steps * c, Init::Sinusoidal { dim: c }));
            table
        };
        let y = match decoding {
            Some((context, position)) => {
                self.decoding.as_mut().expect("decoding").bounded = true;
                let rows = self.graph.reshape(table, &[context, c])?;
                let row = self.graph.embedding(position, rows, None)?;
                self.graph.binary(Binary::Add, x, row)?
            }
            None => self.graph.binary(Binary::Add, x, table)?,
        };
        self.graph.set_label(y, name);
        Ok(y)
    }
}
