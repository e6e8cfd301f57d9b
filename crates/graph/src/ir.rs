//! The IR: nodes of typed ops over statically shaped f32 tensors (class labels are u32), in
//! the order they were built, which is a topological order. Each builder method infers the
//! output shape and rejects inputs that do not fit, naming the node and every shape.

use kernels::{BatchNorm, Binary, Broadcast, Conv2d, LayerNorm, Pool2d, Reduction, Unary};

use crate::error::{GraphError, Result};

/// A node of one [`Graph`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub(crate) usize);

/// What a node computes. Gradient ops (`UnaryGrad`, `SumTo`, `CrossEntropyGrad`) are added by
/// [`crate::backward`] but are ordinary nodes.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// f32 data fed per run.
    Input {
        name: String,
    },
    /// u32 class indices fed per run, below `classes`.
    Labels {
        name: String,
        classes: usize,
    },
    /// A trainable tensor, named as the PyTorch `state_dict` key.
    Param {
        name: String,
    },
    /// Model state that is not trained but kept (batch norm's running statistics), named as
    /// the `state_dict` key. Training-mode batch norm updates it.
    State {
        name: String,
    },
    /// Every element equal to the value.
    Fill(f32),
    /// [m, k] . [k, n], either operand possibly stored transposed.
    MatMul {
        transpose_a: bool,
        transpose_b: bool,
    },
    /// Broadcasting elementwise op of two inputs.
    Binary(Binary),
    Unary(Unary),
    /// Inputs [x, dy]: dy * f'(x).
    UnaryGrad(Unary),
    /// Sums the input down to this node's shape, undoing a broadcast.
    SumTo,
    /// Inputs [x [N, C, H, W], weight [OC, C, KH, KW]] and optionally bias [OC]: a
    /// convolution, the bias added in the product's epilogue.
    Conv2d(ConvGeometry),
    /// Inputs [weight, dy]: the gradient of a convolution's input (this node's shape).
    Conv2dGradInput(ConvGeometry),
    /// Inputs [x, dy]: the gradient of a convolution's weight (this node's shape).
    Conv2dGradWeight(ConvGeometry),
    /// Input [x [N, C, H, W]].
    MaxPool2d(PoolGeometry),
    /// Inputs [x, dy]: the gradient reaches the maximum of each window.
    MaxPool2dGrad(PoolGeometry),
    AvgPool2d(PoolGeometry),
    /// Input [dy]: the gradient of average pooling (this node's shape is the input's).
    AvgPool2dGrad(PoolGeometry),
    /// The same values under another shape of the same size.
    Reshape,
    /// Inputs [x, gamma, beta]: layer norm over the last axis, scaled and shifted.
    LayerNorm {
        eps: f32,
    },
    /// Inputs [x, gamma, dy]: the gradient of the layer norm's input.
    LayerNormGradInput {
        eps: f32,
    },
    /// Inputs [x, dy]: the gradient of gamma (beta's is dy summed, a `SumTo`).
    LayerNormGradGamma {
        eps: f32,
    },
    /// Inputs [x [N, C, ...], gamma, beta, running_mean, running_var]: batch norm per channel.
    /// Training mode normalises with the batch's statistics and folds them into the running
    /// ones (`momentum`, PyTorch's rule); evaluation mode uses the running ones.
    BatchNorm {
        eps: f32,
        momentum: f32,
    },
    /// Inputs [x, gamma, running_mean, running_var, dy]: the gradient of batch norm's input.
    BatchNormGradInput {
        eps: f32,
    },
    /// Inputs [x, running_mean, running_var, dy]: the gradient of gamma.
    BatchNormGradGamma {
        eps: f32,
    },
    /// Inverted dropout in training mode (a Philox mask of (seed, the run's step, index)),
    /// the identity in evaluation mode. Its gradient is the same op on dy.
    Dropout {
        p: f32,
        seed: u64,
    },
    /// Softmax (or log-softmax) over the last axis.
    Softmax {
        log: bool,
    },
    /// Inputs [y, dy], y the softmax's output.
    SoftmaxGrad {
        log: bool,
    },
    /// The inputs joined along an axis.
    Concat {
        axis: usize,
    },
    /// Input [x]: `len` = this node's extent along `axis`, starting at `start`.
    Slice {
        axis: usize,
        start: usize,
    },
    /// Inputs [logits [rows, classes], labels [rows]]: the mean cross-entropy, a scalar.
    CrossEntropy {
        label_smoothing: f32,
    },
    /// Inputs [logits, labels, dloss]: d(mean cross-entropy)/d(logits) * dloss.
    CrossEntropyGrad {
        label_smoothing: f32,
    },
    /// Inputs [logits, targets] of one shape, targets in [0, 1]: the mean binary cross-entropy
    /// with logits (`nn.BCEWithLogitsLoss`), a scalar. Its gradient is built from other ops.
    BceWithLogits,
    /// Inputs [logits [rows, classes], labels [rows]]: how many rows rank their label among
    /// the `top_k` largest logits, a scalar (ties count against the label). Not differentiable.
    Correct {
        top_k: usize,
    },
}

/// Whether a run trains (batch statistics, dropout) or evaluates (running statistics, no
/// dropout), as PyTorch's `module.train()` / `module.eval()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Train,
    Eval,
}

/// Stride, padding and dilation of a convolution, (height, width) each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
}

/// Window, stride and padding of a pooling, (height, width) each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolGeometry {
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    /// Average pooling divides by the whole window, padding included (PyTorch's default).
    pub count_include_pad: bool,
}

impl PoolGeometry {
    /// One window over a whole `height` x `width` plane.
    pub fn global(height: usize, width: usize) -> Self {
        PoolGeometry { kernel: (height, width), stride: (height, width), padding: (0, 0), count_include_pad: true }
    }
}

/// The kernels crate's description of a convolution of input `x` [N, C, H, W] by `w`
/// [OC, C, KH, KW].
pub(crate) fn conv_shape(x: &[usize], w: &[usize], geo: &ConvGeometry) -> Conv2d {
    Conv2d {
        batch: x[0],
        in_channels: x[1],
        height: x[2],
        width: x[3],
        out_channels: w[0],
        kernel: (w[2], w[3]),
        stride: geo.stride,
        padding: geo.padding,
        dilation: geo.dilation,
    }
}

/// The kernels crate's description of a batch norm of `x` [N, C, ...] in `mode`.
pub(crate) fn batch_norm_shape(x: &[usize], eps: f32, momentum: f32, mode: Mode) -> BatchNorm {
    BatchNorm {
        batch: x[0],
        channels: x[1],
        spatial: x[2..].iter().product(),
        eps,
        momentum,
        train: mode == Mode::Train,
    }
}

/// The kernels crate's description of a layer norm of `x` over its last axis.
pub(crate) fn layer_norm_shape(x: &[usize], eps: f32) -> LayerNorm {
    let features = *x.last().unwrap();
    LayerNorm { rows: x.iter().product::<usize>() / features, features, eps }
}

/// The kernels crate's description of pooling `x` [N, C, H, W].
pub(crate) fn pool_shape(x: &[usize], geo: &PoolGeometry) -> Pool2d {
    Pool2d {
        planes: x[0] * x[1],
        height: x[2],
        width: x[3],
        kernel: geo.kernel,
        stride: geo.stride,
        padding: geo.padding,
        count_include_pad: geo.count_include_pad,
    }
}

/// The single-axis sums that take `from` down to `to` (which broadcasts to `from`), last axes
/// first; runs of adjacent summed axes are one step.
pub(crate) fn sum_to_steps(from: &[usize], to: &[usize]) -> Vec<Reduction> {
    let to: Vec<usize> = std::iter::repeat_n(1, from.len() - to.len()).chain(to.iter().copied()).collect();
    let mut current = from.to_vec();
    let mut steps = Vec::new();
    let mut axis = from.len();
    while axis > 0 {
        axis -= 1;
        if to[axis] == current[axis] {
            continue;
        }
        let end = axis + 1;
        while axis > 0 && to[axis - 1] != current[axis - 1] {
            axis -= 1;
        }
        let summed: usize = current[axis..end].iter().product();
        steps.push(Reduction {
            outer: current[..axis].iter().product(),
            axis: summed,
            inner: current[end..].iter().product(),
        });
        current.splice(axis..end, std::iter::repeat_n(1, end - axis));
    }
    steps
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub op: Op,
    pub inputs: Vec<NodeId>,
    pub shape: Vec<usize>,
    /// How errors name this node: the op and its index, or the layer that built it.
    pub label: String,
}

impl Node {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A graph under construction or ready to run.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    nodes: Vec<Node>,
}

impl Graph {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0]
    }

    pub fn nodes(&self) -> impl Iterator<Item = (NodeId, &Node)> {
        self.nodes.iter().enumerate().map(|(i, n)| (NodeId(i), n))
    }

    pub fn shape(&self, id: NodeId) -> &[usize] {
        &self.nodes[id.0].shape
    }

    /// Renames how errors and summaries refer to a node (layers name what they build).
    pub fn set_label(&mut self, id: NodeId, label: impl Into<String>) {
        self.nodes[id.0].label = label.into();
    }

    fn push(&mut self, op: Op, inputs: Vec<NodeId>, shape: Vec<usize>) -> NodeId {
        let label = format!("{}#{}", op_name(&op), self.nodes.len());
        self.nodes.push(Node { op, inputs, shape, label });
        NodeId(self.nodes.len() - 1)
    }

    fn error(&self, op: &Op, detail: String) -> GraphError {
        GraphError::Shape { node: format!("{}#{}", op_name(op), self.nodes.len()), detail }
    }

    pub fn input(&mut self, name: &str, shape: &[usize]) -> NodeId {
        self.push(Op::Input { name: name.into() }, vec![], shape.to_vec())
    }

    pub fn labels(&mut self, name: &str, rows: usize, classes: usize) -> NodeId {
        self.push(Op::Labels { name: name.into(), classes }, vec![], vec![rows])
    }

    pub fn param(&mut self, name: &str, shape: &[usize]) -> NodeId {
        self.push(Op::Param { name: name.into() }, vec![], shape.to_vec())
    }

    pub fn state(&mut self, name: &str, shape: &[usize]) -> NodeId {
        self.push(Op::State { name: name.into() }, vec![], shape.to_vec())
    }

    pub fn fill(&mut self, value: f32, shape: &[usize]) -> NodeId {
        self.push(Op::Fill(value), vec![], shape.to_vec())
    }

    /// op(a) . op(b) for 2-D operands, op = transpose where asked.
    pub fn matmul(&mut self, a: NodeId, b: NodeId, transpose_a: bool, transpose_b: bool) -> Result<NodeId> {
        let op = Op::MatMul { transpose_a, transpose_b };
        let (sa, sb) = (self.shape(a).to_vec(), self.shape(b).to_vec());
        let as_matrix = |s: &[usize], t: bool| match *s {
            [r, c] => Some(if t { (c, r) } else { (r, c) }),
            _ => None,
        };
        match (as_matrix(&sa, transpose_a), as_matrix(&sb, transpose_b)) {
            (Some((m, k1)), Some((k2, n))) if k1 == k2 => Ok(self.push(op, vec![a, b], vec![m, n])),
            _ => Err(self.error(
                &op,
                format!(
                    "cannot multiply {sa:?}{} by {sb:?}{}",
                    if transpose_a { "ᵀ" } else { "" },
                    if transpose_b { "ᵀ" } else { "" }
                ),
            )),
        }
    }

    pub fn binary(&mut self, op: Binary, a: NodeId, b: NodeId) -> Result<NodeId> {
        let node_op = Op::Binary(op);
        let broadcast = Broadcast::new(self.shape(a), self.shape(b)).map_err(|_| {
            self.error(&node_op, format!("shapes {:?} and {:?} do not broadcast", self.shape(a), self.shape(b)))
        })?;
        Ok(self.push(node_op, vec![a, b], broadcast.out))
    }

    pub fn unary(&mut self, op: Unary, x: NodeId) -> NodeId {
        let shape = self.shape(x).to_vec();
        self.push(Op::Unary(op), vec![x], shape)
    }

    /// Convolution of `x` [N, C, H, W] by `weight` [OC, C, KH, KW], plus `bias` [OC].
    pub fn conv2d(&mut self, x: NodeId, weight: NodeId, bias: Option<NodeId>, geo: ConvGeometry) -> Result<NodeId> {
        let op = Op::Conv2d(geo);
        let (sx, sw) = (self.shape(x).to_vec(), self.shape(weight).to_vec());
        if sx.len() != 4 || sw.len() != 4 || sx[1] != sw[1] {
            return Err(
                self.error(&op, format!("input {sx:?} and weight {sw:?} must be [N, C, H, W] and [OC, C, KH, KW]"))
            );
        }
        if let Some(b) = bias.filter(|&b| self.shape(b) != [sw[0]]) {
            return Err(self.error(&op, format!("bias {:?} must be [{}] for weight {sw:?}", self.shape(b), sw[0])));
        }
        let conv = conv_shape(&sx, &sw, &geo);
        conv.validate().map_err(|e| self.error(&op, e.to_string()))?;
        let inputs = [x, weight].into_iter().chain(bias).collect();
        Ok(self.push(op, inputs, vec![sx[0], sw[0], conv.out_height(), conv.out_width()]))
    }

    pub fn max_pool2d(&mut self, x: NodeId, geo: PoolGeometry) -> Result<NodeId> {
        self.pool(Op::MaxPool2d(geo), x, geo)
    }

    pub fn avg_pool2d(&mut self, x: NodeId, geo: PoolGeometry) -> Result<NodeId> {
        self.pool(Op::AvgPool2d(geo), x, geo)
    }

    fn pool(&mut self, op: Op, x: NodeId, geo: PoolGeometry) -> Result<NodeId> {
        let sx = self.shape(x).to_vec();
        if sx.len() != 4 {
            return Err(self.error(&op, format!("input {sx:?} must be [N, C, H, W]")));
        }
        let pool = pool_shape(&sx, &geo);
        pool.validate().map_err(|e| self.error(&op, e.to_string()))?;
        Ok(self.push(op, vec![x], vec![sx[0], sx[1], pool.out_height(), pool.out_width()]))
    }

    /// The mean of each channel plane of x [N, C, H, W], as [N, C] (`AdaptiveAvgPool2d(1)`
    /// then `Flatten`).
    pub fn global_avg_pool(&mut self, x: NodeId) -> Result<NodeId> {
        let sx = self.shape(x).to_vec();
        if sx.len() != 4 {
            return Err(
                self.error(&Op::AvgPool2d(PoolGeometry::global(1, 1)), format!("input {sx:?} must be [N, C, H, W]"))
            );
        }
        let pooled = self.avg_pool2d(x, PoolGeometry::global(sx[2], sx[3]))?;
        self.reshape(pooled, &sx[..2])
    }

    /// The same values as `shape`, which must hold as many elements.
    pub fn reshape(&mut self, x: NodeId, shape: &[usize]) -> Result<NodeId> {
        let from = self.shape(x).to_vec();
        if from.iter().product::<usize>() != shape.iter().product::<usize>() {
            return Err(self.error(&Op::Reshape, format!("cannot reshape {from:?} to {shape:?}")));
        }
        Ok(self.push(Op::Reshape, vec![x], shape.to_vec()))
    }

    /// Layer norm of `x` over its last axis with learned `gamma` and `beta` of that length.
    pub fn layer_norm(&mut self, x: NodeId, gamma: NodeId, beta: NodeId, eps: f32) -> Result<NodeId> {
        let op = Op::LayerNorm { eps };
        let (sx, sg, sb) = (self.shape(x).to_vec(), self.shape(gamma).to_vec(), self.shape(beta).to_vec());
        match sx.last() {
            Some(&d) if sg == [d] && sb == [d] => Ok(self.push(op, vec![x, gamma, beta], sx)),
            _ => {
                Err(self
                    .error(&op, format!("input {sx:?} needs gamma and beta of its last axis, got {sg:?} and {sb:?}")))
            }
        }
    }

    /// Batch norm of `x` [N, C, ...] over its channels (axis 1), with `gamma`, `beta` and the
    /// running statistics all [C].
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm(
        &mut self,
        x: NodeId,
        gamma: NodeId,
        beta: NodeId,
        running_mean: NodeId,
        running_var: NodeId,
        eps: f32,
        momentum: f32,
    ) -> Result<NodeId> {
        let op = Op::BatchNorm { eps, momentum };
        let sx = self.shape(x).to_vec();
        let per_channel = [gamma, beta, running_mean, running_var].map(|n| self.shape(n).to_vec());
        if sx.len() < 2 || per_channel.iter().any(|s| s[..] != [sx[1]]) {
            return Err(self.error(
                &op,
                format!(
                    "input {sx:?} must be [N, C, ...] with gamma, beta and running statistics [C], got {per_channel:?}"
                ),
            ));
        }
        Ok(self.push(op, vec![x, gamma, beta, running_mean, running_var], sx))
    }

    /// Dropout of `x` with probability `p`; `seed` picks the mask stream of this layer.
    pub fn dropout(&mut self, x: NodeId, p: f32, seed: u64) -> Result<NodeId> {
        let op = Op::Dropout { p, seed };
        if !(0.0..1.0).contains(&p) {
            return Err(self.error(&op, format!("dropout probability {p} must be in [0, 1)")));
        }
        let shape = self.shape(x).to_vec();
        Ok(self.push(op, vec![x], shape))
    }

    /// The sum of every element, a scalar.
    pub fn sum(&mut self, x: NodeId) -> NodeId {
        self.sum_to(x, &[])
    }

    /// The mean of every element, a scalar.
    pub fn mean(&mut self, x: NodeId) -> NodeId {
        let n = self.node(x).len();
        let total = self.sum(x);
        self.unary(Unary::Scale(1.0 / n as f32), total)
    }

    /// Mean squared error between `prediction` and `target` of one shape (`nn.MSELoss`).
    pub fn mse(&mut self, prediction: NodeId, target: NodeId) -> Result<NodeId> {
        if self.shape(prediction) != self.shape(target) {
            let detail = format!("prediction {:?} and target {:?} differ", self.shape(prediction), self.shape(target));
            return Err(self.error(&Op::Binary(Binary::Sub), detail));
        }
        let diff = self.binary(Binary::Sub, prediction, target)?;
        let square = self.binary(Binary::Mul, diff, diff)?;
        Ok(self.mean(square))
    }

    /// Softmax, or log-softmax with `log`, over the last axis.
    pub fn softmax(&mut self, x: NodeId, log: bool) -> Result<NodeId> {
        let shape = self.shape(x).to_vec();
        if shape.is_empty() {
            return Err(self.error(&Op::Softmax { log }, "softmax of a scalar".into()));
        }
        Ok(self.push(Op::Softmax { log }, vec![x], shape))
    }

    /// Joins `parts` along `axis`; every other axis must agree.
    pub fn concat(&mut self, parts: &[NodeId], axis: usize) -> Result<NodeId> {
        let op = Op::Concat { axis };
        let shapes: Vec<Vec<usize>> = parts.iter().map(|&p| self.shape(p).to_vec()).collect();
        let Some(first) = shapes.first() else {
            return Err(self.error(&op, "nothing to concatenate".into()));
        };
        let agree = |s: &Vec<usize>| {
            s.len() == first.len()
                && axis < s.len()
                && s.iter().zip(first).enumerate().all(|(a, (x, y))| a == axis || x == y)
        };
        if !shapes.iter().all(agree) {
            return Err(self.error(&op, format!("shapes {shapes:?} differ off axis {axis}")));
        }
        let mut shape = first.clone();
        shape[axis] = shapes.iter().map(|s| s[axis]).sum();
        Ok(self.push(op, parts.to_vec(), shape))
    }

    /// `len` entries of `x` along `axis` from `start`.
    pub fn slice(&mut self, x: NodeId, axis: usize, start: usize, len: usize) -> Result<NodeId> {
        let op = Op::Slice { axis, start };
        let mut shape = self.shape(x).to_vec();
        if axis >= shape.len() || start + len > shape[axis] {
            return Err(self.error(&op, format!("{start}..{} of axis {axis} of {shape:?}", start + len)));
        }
        shape[axis] = len;
        Ok(self.push(op, vec![x], shape))
    }

    /// Mean cross-entropy of `logits` [rows, classes] against `labels` [rows].
    pub fn cross_entropy(&mut self, logits: NodeId, labels: NodeId, label_smoothing: f32) -> Result<NodeId> {
        let op = Op::CrossEntropy { label_smoothing };
        let (sl, st) = (self.shape(logits).to_vec(), self.shape(labels).to_vec());
        let fits = matches!((&sl[..], &st[..]), ([rows, _], [n]) if rows == n)
            && matches!(&self.node(labels).op, Op::Labels { classes, .. } if *classes == sl[1]);
        if !fits {
            return Err(self.error(
                &op,
                format!("logits {sl:?} and labels {st:?} must be [rows, classes] and [rows] of those classes"),
            ));
        }
        Ok(self.push(op, vec![logits, labels], vec![]))
    }

    /// Mean binary cross-entropy of `logits` against `targets` of the same shape.
    pub fn bce_with_logits(&mut self, logits: NodeId, targets: NodeId) -> Result<NodeId> {
        if self.shape(logits) != self.shape(targets) {
            let detail = format!("logits {:?} and targets {:?} differ", self.shape(logits), self.shape(targets));
            return Err(self.error(&Op::BceWithLogits, detail));
        }
        Ok(self.push(Op::BceWithLogits, vec![logits, targets], vec![]))
    }

    /// How many rows of `logits` [rows, classes] have their label among the `top_k` largest.
    pub fn correct(&mut self, logits: NodeId, labels: NodeId, top_k: usize) -> Result<NodeId> {
        let op = Op::Correct { top_k };
        let (sl, st) = (self.shape(logits).to_vec(), self.shape(labels).to_vec());
        let fits = matches!((&sl[..], &st[..]), ([rows, classes], [n]) if rows == n && (1..=*classes).contains(&top_k))
            && matches!(&self.node(labels).op, Op::Labels { classes, .. } if *classes == sl[1]);
        if !fits {
            return Err(self.error(
                &op,
                format!(
                    "logits {sl:?} and labels {st:?} must be [rows, classes] and [rows], top-{top_k} within classes"
                ),
            ));
        }
        Ok(self.push(op, vec![logits, labels], vec![]))
    }

    /// `x` [N, ...] as [N, rest] (`nn.Flatten`).
    pub fn flatten(&mut self, x: NodeId) -> Result<NodeId> {
        let shape = self.shape(x).to_vec();
        let rows = shape.first().copied().unwrap_or(1);
        self.reshape(x, &[rows, shape.iter().skip(1).product()])
    }

    /// The parameter node named `name`.
    pub fn find_param(&self, name: &str) -> Option<NodeId> {
        self.nodes().find(|(_, n)| matches!(&n.op, Op::Param { name: p } if p == name)).map(|(id, _)| id)
    }

    /// The nodes `outputs` depend on, `outputs` included, in graph order.
    pub fn ancestors(&self, outputs: &[NodeId]) -> Vec<NodeId> {
        let mut needed = vec![false; self.nodes.len()];
        for &o in outputs {
            needed[o.0] = true;
        }
        for i in (0..self.nodes.len()).rev() {
            if needed[i] {
                for input in &self.nodes[i].inputs {
                    needed[input.0] = true;
                }
            }
        }
        (0..self.nodes.len()).filter(|&i| needed[i]).map(NodeId).collect()
    }

    // Gradient ops, built by autodiff.

    /// Sums `x` down to `shape`, which must broadcast to x's shape.
    pub(crate) fn sum_to(&mut self, x: NodeId, shape: &[usize]) -> NodeId {
        if self.shape(x) == shape {
            return x;
        }
        self.push(Op::SumTo, vec![x], shape.to_vec())
    }

    /// A gradient node of `op` with the given inputs and shape (autodiff's constructor).
    pub(crate) fn gradient(&mut self, op: Op, inputs: Vec<NodeId>, shape: &[usize]) -> NodeId {
        self.push(op, inputs, shape.to_vec())
    }
}

fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Input { .. } => "input",
        Op::Labels { .. } => "labels",
        Op::Param { .. } => "param",
        Op::State { .. } => "state",
        Op::Fill(_) => "fill",
        Op::MatMul { .. } => "matmul",
        Op::Binary(_) => "binary",
        Op::Unary(_) => "unary",
        Op::UnaryGrad(_) => "unary_grad",
        Op::SumTo => "sum_to",
        Op::Conv2d(_) => "conv2d",
        Op::Conv2dGradInput(_) => "conv2d_grad_input",
        Op::Conv2dGradWeight(_) => "conv2d_grad_weight",
        Op::MaxPool2d(_) => "max_pool2d",
        Op::MaxPool2dGrad(_) => "max_pool2d_grad",
        Op::AvgPool2d(_) => "avg_pool2d",
        Op::AvgPool2dGrad(_) => "avg_pool2d_grad",
        Op::Reshape => "reshape",
        Op::LayerNorm { .. } => "layer_norm",
        Op::LayerNormGradInput { .. } => "layer_norm_grad_input",
        Op::LayerNormGradGamma { .. } => "layer_norm_grad_gamma",
        Op::BatchNorm { .. } => "batch_norm",
        Op::BatchNormGradInput { .. } => "batch_norm_grad_input",
        Op::BatchNormGradGamma { .. } => "batch_norm_grad_gamma",
        Op::Dropout { .. } => "dropout",
        Op::Softmax { .. } => "softmax",
        Op::SoftmaxGrad { .. } => "softmax_grad",
        Op::Concat { .. } => "concat",
        Op::Slice { .. } => "slice",
        Op::CrossEntropy { .. } => "cross_entropy",
        Op::CrossEntropyGrad { .. } => "cross_entropy_grad",
        Op::Correct { .. } => "correct",
        Op::BceWithLogits => "bce_with_logits",
    }
}

#[cfg(test)]
mod tests {
    use super::sum_to_steps;
    use kernels::Reduction;

    #[test]
    fn sum_to_merges_adjacent_axes() {
        let r = |outer, axis, inner| Reduction { outer, axis, inner };
        assert_eq!(sum_to_steps(&[2, 3, 4, 5], &[3, 1, 1]), vec![r(6, 20, 1), r(1, 2, 3)]);
        assert_eq!(sum_to_steps(&[2, 3], &[]), vec![r(1, 6, 1)]);
        assert_eq!(sum_to_steps(&[2, 3, 4], &[2, 1, 4]), vec![r(2, 3, 4)]);
        assert_eq!(sum_to_steps(&[2, 3], &[2, 3]), vec![]);
    }
}
