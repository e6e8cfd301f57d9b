//! Reference models that benchmarks, tests and PyTorch scripts share.

use kernels::Unary;

use crate::error::Result;
use crate::ir::TensorId;
use crate::layers::{Model, Recurrent};
use crate::ops::{CellKind, ConvGeometry, PoolGeometry};

/// The nodes of a built reference model.
pub struct Built {
    pub model: Model,
    pub input: TensorId,
    pub logits: TensorId,
    /// The last convolution's activation, where Grad-CAM looks.
    pub features: TensorId,
}

/// The reference MNIST CNN (`configs/cnn.toml`, `scripts/torch_train_bench.py`): Conv 1→32
/// 3×3, ReLU, MaxPool 2, Conv 32→64 3×3, ReLU, MaxPool 2, Flatten, Linear 1600→128, ReLU,
/// Linear 128→10, on [batch, 1, 28, 28].
pub fn mnist_cnn(seed: u64, batch: usize) -> Result<Built> {
    let mut m = Model::new(seed);
    let input = m.graph.input("x", &[batch, 1, 28, 28]);
    let valid = ConvGeometry { stride: (1, 1), padding: (0, 0), dilation: (1, 1) };
    let pool = PoolGeometry { kernel: (2, 2), stride: (2, 2), padding: (0, 0), count_include_pad: true };
    let h = m.conv2d("conv1", input, 32, (3, 3), valid, true)?;
    let h = m.graph.unary(Unary::Relu, h)?;
    let h = m.graph.max_pool2d(h, pool)?;
    let h = m.conv2d("conv2", h, 64, (3, 3), valid, true)?;
    let features = m.graph.unary(Unary::Relu, h)?;
    let h = m.graph.max_pool2d(features, pool)?;
    let h = m.graph.flatten(h)?;
    let h = m.linear("fc1", h, 1600, 128, true)?;
    let h = m.graph.unary(Unary::Relu, h)?;
    let logits = m.linear("fc2", h, 128, 10, true)?;
    Ok(Built { model: m, input, logits, features })
}

/// The reference MNIST recurrent classifiers (`configs/lstm-mnist.toml`, `gru-mnist.toml`,
/// `scripts/torch_train_bench.py --model lstm|gru`): each image row one step, an LSTM or GRU
/// 28→128, its last step's output to Linear 128→10, on [batch, 1, 28, 28]. `features` is the
/// recurrent layer's output at every step.
pub fn mnist_rnn(cell: CellKind, seed: u64, batch: usize) -> Result<Built> {
    let mut m = Model::new(seed);
    let input = m.graph.input("x", &[batch, 1, 28, 28]);
    let rows = m.graph.reshape(input, &[batch, 28, 28])?;
    let layer = Recurrent { cell, hidden: 128, layers: 1, bidirectional: false, dropout: 0.0 };
    let features = m.recurrent("rnn", rows, &layer)?;
    let last = m.graph.step(features, 27)?;
    let logits = m.linear("fc", last, 128, 10, true)?;
    Ok(Built { model: m, input, logits, features })
}
