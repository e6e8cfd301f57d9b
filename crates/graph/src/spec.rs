//! What a config's layers are: each layer type's settings declared once (name, type,
//! default, bound and a line of docs, by [`variants!`](crate::variants!) and
//! [`settings!`](crate::settings!)). `build.rs` builds them ([`LayerKind::build`]); the
//! builders of `layers.rs` take the `Recurrent` and `Transformer` settings as declared here;
//! dlcli's config reads and writes these declarations as they are.

use kernels::Unary;

use crate::ops::CellKind;
use crate::settings::{Bound, Fields, Key, Named, Section, Setting, Tagged, Value, Variant, did_you_mean};
use crate::{settings, variants};

variants! {
    /// A layer's type (`type = "conv2d"`) and its own keys.
    pub enum LayerKind {
        /// 2-D convolution of [N, C, H, W] (torch.nn.Conv2d).
        Conv2d = "conv2d" {
            /// Filters: the output's channels.
            out_channels: usize, Bound::AtLeastOne;
            /// The window's side.
            kernel: usize, Bound::AtLeastOne;
            /// The window's step.
            stride: usize = 1, Bound::AtLeastOne;
            /// Zero pixels added on each side.
            padding: usize = 0;
            /// Spacing of the window's taps.
            dilation: usize = 1, Bound::AtLeastOne;
            /// Add a learned bias per output channel.
            bias: bool = true;
        }
        /// x W^T + b over the last axis of [batch, ..., features] (torch.nn.Linear).
        Linear = "linear" {
            /// Default: the data's classes (or values per target), for the output layer.
            out_features: Option<usize>, Bound::AtLeastOne;
            /// Add a learned bias per output feature.
            bias: bool = true;
            /// The name of an earlier embedding layer whose weight this one shares (weight tying: out_features is its vocabulary).
            tie: Option<String>;
        }
        /// Token ids [N, T] to vectors [N, T, dim], one row per token of the data's vocabulary (torch.nn.Embedding).
        Embedding = "embedding" {
            /// Features of each token's vector.
            dim: usize, Bound::AtLeastOne;
            /// A token id whose row stays zero and gets no gradient (padding_idx).
            padding: Option<usize>;
            /// Of the initial weights, N(0, std²): 1 is torch's default, 0.02 GPT-2's (for an output head tied to it).
            std: f32 = 1.0, Bound::Positive;
        }
        /// The largest value of each window.
        MaxPool2d = "max_pool2d" {
            /// The window's side.
            kernel: usize, Bound::AtLeastOne;
            /// Default: the kernel.
            stride: Option<usize>, Bound::AtLeastOne;
            /// Padding added on each side (at most half the window).
            padding: usize = 0;
        }
        /// The mean of each window, padding counted (torch's count_include_pad).
        AvgPool2d = "avg_pool2d" {
            /// The window's side.
            kernel: usize, Bound::AtLeastOne;
            /// Default: the kernel.
            stride: Option<usize>, Bound::AtLeastOne;
            /// Zero padding added on each side (at most half the window).
            padding: usize = 0;
        }
        /// [N, C, H, W] to [N, C], the mean of each plane.
        GlobalAvgPool = "global_avg_pool" {}
        /// Batch statistics in training, running ones in eval (BatchNorm1d/2d).
        BatchNorm = "batch_norm" {
            /// Added to the variance.
            eps: f32 = 1e-5, Bound::Positive;
            /// Weight of the batch in the running statistics.
            momentum: f32 = 0.1, Bound::Probability;
        }
        /// Over the last axis.
        LayerNorm = "layer_norm" {
            /// Added to the variance.
            eps: f32 = 1e-5, Bound::Positive;
        }
        /// Zeroes each element with probability p in training, scaling the rest by 1/(1 - p).
        Dropout = "dropout" {
            /// The probability of zeroing an element.
            p: f32 = 0.5, Bound::Fraction;
        }
        /// Every axis after the batch into one.
        Flatten = "flatten" {}
        /// The element-wise sum of its inputs (inputs = ["a", "b"]).
        Add = "add" {}
        /// Its inputs joined along the channels (inputs = ["a", "b"]).
        Concat = "concat" {}
        /// [N, C, H, W] as a sequence [N, H, C·W]: each image row one step (for lstm and gru).
        ImageRows = "image_rows" {}
        /// [N, C, H, W] as the sequence of its positions [N, H·W, C]: after a conv2d with kernel = stride, ViT's patch embedding.
        Tokens = "tokens" {}
        /// One learned token put before the sequence (ViT's class token): [N, T, C] to [N, T + 1, C].
        ClassToken = "class_token" {}
        /// An embedding of each position, added: [N, T, C].
        Position = "position" {
            /// "learned" (N(0, 0.02²) at first) or "sinusoidal" (fixed, as in Vaswani et al.).
            encoding: PositionEncoding = PositionEncoding::Learned;
        }
        /// One step of a sequence: [N, T, C] to [N, C] (0: the class token's).
        Step = "step" {
            /// Which step.
            index: usize = 0;
        }
    }
    else Recurrent(RecurrentLayer)
    else Transformer(TransformerLayer)
    else Activation(Unary)
}

/// A layer activation of the unary table by its name (no parameter: leaky_relu's is its
/// default).
impl Setting for Unary {
    fn kind() -> String {
        Unary::layers().map(|r| format!("{:?}", r.name)).collect::<Vec<_>>().join(" | ")
    }

    fn read(value: &Value) -> Result<Self, String> {
        let name = String::read(value)?;
        match Unary::layer(&name) {
            Some(row) => Ok(row.op),
            None => {
                let names: Vec<&str> = Unary::layers().map(|r| r.name).collect();
                Err(format!("{name:?} is not one of {names:?}{}", did_you_mean(&name, &names)))
            }
        }
    }

    fn write(&self) -> Option<Value> {
        Some(self.name().into())
    }
}

/// How a `position` layer encodes positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionEncoding {
    /// Learned vectors, N(0, 0.02²) at first.
    Learned,
    /// Fixed sines and cosines (Vaswani et al.).
    Sinusoidal,
}

impl Named for PositionEncoding {
    const ALL: &'static [(&'static str, Self)] =
        &[("learned", PositionEncoding::Learned), ("sinusoidal", PositionEncoding::Sinusoidal)];
}

/// What a recurrent layer gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceOutput {
    /// Every step's output, [batch, steps, features].
    Sequence,
    /// The last step's, [batch, features] (`output[:, -1]` in PyTorch).
    Last,
}

impl Named for SequenceOutput {
    const ALL: &'static [(&'static str, Self)] =
        &[("sequence", SequenceOutput::Sequence), ("last", SequenceOutput::Last)];
}

settings! {
    /// The settings of an `lstm` or a `gru` layer (its cell aside).
    pub struct Recurrent {
        /// Hidden units (per direction).
        hidden: usize, Bound::AtLeastOne;
        /// Stacked layers.
        layers: usize = 1, Bound::Depth;
        /// Also run each layer backwards in time; the features are then the forward's, then the backward's.
        bidirectional: bool = false;
        /// Between stacked layers, in training.
        dropout: f32 = 0.0, Bound::Fraction;
        /// "sequence": every step's output; "last": the last step's, [batch, features].
        r#return: SequenceOutput = SequenceOutput::Sequence;
    }
}

/// An `lstm` or `gru` layer over [batch, steps, features] (torch.nn.LSTM / GRU, batch_first).
#[derive(Debug, Clone, PartialEq)]
pub struct RecurrentLayer {
    /// LSTM or GRU.
    pub cell: CellKind,
    /// The layer's settings.
    pub settings: Recurrent,
}

const CELLS: [(&str, CellKind, &str); 2] = [
    ("lstm", CellKind::Lstm, "Long short-term memory (torch.nn.LSTM, batch_first), from a zero state."),
    ("gru", CellKind::Gru, "Gated recurrent unit (torch.nn.GRU, batch_first), from a zero state."),
];

impl Tagged for RecurrentLayer {
    fn variants() -> Vec<Variant> {
        CELLS.iter().map(|(name, _, doc)| Variant { name, doc: doc.to_string(), keys: Recurrent::keys() }).collect()
    }

    fn read(name: &str, fields: &mut impl Fields, path: &str) -> Option<RecurrentLayer> {
        let &(_, cell, _) = CELLS.iter().find(|(n, ..)| *n == name)?;
        Some(RecurrentLayer { cell, settings: Recurrent::read_known(fields, path, &mut Vec::new())? })
    }

    fn write(&self) -> (&'static str, Vec<(&'static str, Value)>) {
        let name = CELLS.iter().find(|(_, c, _)| *c == self.cell).map_or("lstm", |(n, ..)| n);
        (name, self.settings.write())
    }
}

settings! {
    /// The settings of a stack of `transformer_encoder` or `transformer_decoder` layers
    /// (`nn.TransformerEncoderLayer` / `DecoderLayer`, batch_first).
    pub struct Transformer {
        /// Stacked layers.
        layers: usize = 1, Bound::Depth;
        /// Attention heads; they split C.
        heads: usize, Bound::AtLeastOne;
        /// Width of the feed-forward block.
        feedforward: usize, Bound::AtLeastOne;
        /// Of the feed-forward block: a layer activation ("gelu", "relu", ...).
        activation: Unary = Unary::GeluErf;
        /// Of the attention's weights and the feed-forward block's outputs, in training.
        dropout: f32 = 0.1, Bound::Fraction;
        /// Normalise each block's input (pre-norm), not its output.
        norm_first: bool = true;
        /// Step t attends to steps up to t only (a decoder's self-attention, a language model).
        causal: bool = false;
        /// Of the layer norms.
        eps: f32 = 1e-5, Bound::Positive;
    }
}

/// Which stack of Transformer layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransformerKind {
    /// Self-attention only.
    Encoder,
    /// Self-attention, then attention to a memory (the layer's second input).
    Decoder,
}

/// A `transformer_encoder` or `transformer_decoder` layer on [batch, steps, features].
#[derive(Debug, Clone, PartialEq)]
pub struct TransformerLayer {
    /// Encoder or decoder layers.
    pub kind: TransformerKind,
    /// The layers' settings.
    pub settings: Transformer,
}

const TRANSFORMERS: [(&str, TransformerKind, &str); 2] = [
    (
        "transformer_encoder",
        TransformerKind::Encoder,
        "Stacked torch.nn.TransformerEncoderLayer (batch_first) on [N, T, C].",
    ),
    (
        "transformer_decoder",
        TransformerKind::Decoder,
        "Stacked torch.nn.TransformerDecoderLayer (batch_first) on [N, T, C], attending to a memory [N, S, C]: inputs = [\"x\", \"memory\"].",
    ),
];

impl Tagged for TransformerLayer {
    fn variants() -> Vec<Variant> {
        let keys = Transformer::keys();
        TRANSFORMERS.iter().map(|(name, _, doc)| Variant { name, doc: doc.to_string(), keys: keys.clone() }).collect()
    }

    fn read(name: &str, fields: &mut impl Fields, path: &str) -> Option<TransformerLayer> {
        let &(_, kind, _) = TRANSFORMERS.iter().find(|(n, ..)| *n == name)?;
        Some(TransformerLayer { kind, settings: Transformer::read_known(fields, path, &mut Vec::new())? })
    }

    fn write(&self) -> (&'static str, Vec<(&'static str, Value)>) {
        let name = TRANSFORMERS.iter().find(|(_, k, _)| *k == self.kind).map_or("transformer_encoder", |(n, ..)| n);
        (name, self.settings.write())
    }
}

/// The unary table's layer rows (`kernels/src/unary.rs`) are layer types: `{ type = "relu" }`,
/// their parameter a key (`{ type = "leaky_relu", slope = 0.01 }`).
impl Tagged for Unary {
    fn variants() -> Vec<Variant> {
        let key = |name, op: Unary| Key::new::<f32>(name, "", Some(op.parameter()), Some(Bound::Finite));
        let variant = |row: &kernels::UnaryRow| Variant {
            name: row.name,
            doc: format!("Activation: {}.", row.doc.trim().trim_end_matches('.')),
            keys: row.parameter.map(|p| key(p, row.op)).into_iter().collect(),
        };
        Unary::layers().map(variant).collect()
    }

    fn read(name: &str, fields: &mut impl Fields, path: &str) -> Option<Unary> {
        let row = Unary::layer(name)?;
        match row.parameter {
            Some(key) => {
                Some(row.op.with_parameter(fields.setting(path, key, Some(row.op.parameter()), Some(Bound::Finite))?))
            }
            None => Some(row.op),
        }
    }

    fn write(&self) -> (&'static str, Vec<(&'static str, Value)>) {
        let row = self.row();
        (row.name, row.parameter.map(|key| (key, self.parameter().write().unwrap())).into_iter().collect())
    }
}
