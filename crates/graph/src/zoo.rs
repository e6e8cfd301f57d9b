//! Reference models that benchmarks, tests and PyTorch scripts share.

use kernels::Unary;

use crate::error::Result;
use crate::ir::TensorId;
use crate::layers::Model;
use crate::ops::{CellKind, ConvGeometry, PoolGeometry};
use crate::spec::{Recurrent, SequenceOutput, Transformer};

/// The nodes of a built reference model.
pub struct Built {
    /// The model.
    pub model: Model,
    /// Its input "x".
    pub input: TensorId,
    /// Its output.
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
    let layer =
        Recurrent { hidden: 128, layers: 1, bidirectional: false, dropout: 0.0, r#return: SequenceOutput::Last };
    let out = m.recurrent("rnn", rows, cell, &layer)?;
    let logits = m.linear("fc", out.last, 128, 10, true)?;
    Ok(Built { model: m, input, logits, features: out.sequence })
}

/// The reference MNIST Vision Transformer (`configs/vit-mnist.toml`): 4×4 patches (a conv2d
/// 1→64, kernel = stride = 4) as 49 tokens, a class token, learned positions, 2 pre-norm
/// encoder layers (4 heads, feed-forward 128, GELU, no dropout), a layer norm and the class
/// token's features to Linear 64→10, on [batch, 1, 28, 28]. `features` is the patch map.
pub fn mnist_vit(seed: u64, batch: usize) -> Result<Built> {
    let mut m = Model::new(seed);
    let input = m.graph.input("x", &[batch, 1, 28, 28]);
    let patches = ConvGeometry { stride: (4, 4), padding: (0, 0), dilation: (1, 1) };
    let features = m.conv2d("patch", input, 64, (4, 4), patches, true)?;
    let positions = m.graph.permute(features, &[0, 2, 3, 1])?;
    let tokens = m.graph.reshape(positions, &[batch, 49, 64])?;
    let h = m.class_token("cls", tokens)?;
    let h = m.position("pos", h, true)?;
    let h = encoder_stack(&mut m, "encoder", h, (2, 4, 128), false)?;
    let h = m.layer_norm("norm", h, 1e-5)?;
    let class = m.graph.step(h, 0)?;
    let logits = m.linear("head", class, 64, 10, true)?;
    Ok(Built { model: m, input, logits, features })
}

/// The reference character LSTM (`configs/char-lstm.toml`) on token ids [batch, context]:
/// an embedding of 64, 2 stacked LSTM layers of 256, Linear 256→vocab at every position.
/// `features` is the LSTM's output.
pub fn char_lstm(seed: u64, batch: usize, context: usize, vocab: usize) -> Result<Built> {
    let mut m = Model::new(seed);
    let input = m.graph.indices("x", &[batch, context], vocab);
    let h = m.embedding("embed", input, (vocab, 64), None, 1.0)?;
    let layer =
        Recurrent { hidden: 256, layers: 2, bidirectional: false, dropout: 0.0, r#return: SequenceOutput::Sequence };
    let features = m.recurrent("lstm", h, CellKind::Lstm, &layer)?.sequence;
    let logits = m.linear("head", features, 256, vocab, true)?;
    Ok(Built { model: m, input, logits, features })
}

/// The reference character GPT (`configs/gpt-char.toml`) on token ids [batch, context]: an
/// embedding of 128 (N(0, 0.02²)), learned positions, 4 causal pre-norm encoder layers (4
/// heads, feed-forward 512, GELU, no dropout), a layer norm and a head tied to the embedding.
/// `features` is the last layer's output.
pub fn char_gpt(seed: u64, batch: usize, context: usize, vocab: usize) -> Result<Built> {
    let mut m = Model::new(seed);
    let input = m.graph.indices("x", &[batch, context], vocab);
    let h = m.embedding("embed", input, (vocab, 128), None, 0.02)?;
    let h = m.position("pos", h, true)?;
    let features = encoder_stack(&mut m, "blocks", h, (4, 4, 512), true)?;
    let h = m.layer_norm("norm", features, 1e-5)?;
    let logits = m.tied_linear("head", h, "embed.weight", true)?;
    Ok(Built { model: m, input, logits, features })
}

/// (layers, heads, feed-forward width) pre-norm encoder layers (GELU, no dropout) on x, named
/// `name.layers.{i}` as `nn.TransformerEncoder`'s.
fn encoder_stack(
    m: &mut Model,
    name: &str,
    x: TensorId,
    shape: (usize, usize, usize),
    causal: bool,
) -> Result<TensorId> {
    let (layers, heads, feedforward) = shape;
    let activation = Unary::GeluErf;
    let layer =
        Transformer { layers, heads, feedforward, activation, dropout: 0.0, norm_first: true, causal, eps: 1e-5 };
    let mut h = x;
    for i in 0..layers {
        h = m.encoder_layer(&format!("{name}.layers.{i}"), h, &layer, None)?;
    }
    Ok(h)
}
