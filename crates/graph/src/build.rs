//! Builds a declared layer (`spec.rs`) on a [`Model`] with the builders of `layers.rs`,
//! after checking its input against the layer's shape precondition: [`LayerKind::build`].

use kernels::Binary;

use crate::error::{GraphError, Result};
use crate::ir::TensorId;
use crate::layers::Model;
use crate::ops::{ConvGeometry, PoolGeometry};
use crate::spec::{LayerKind, PositionEncoding, RecurrentLayer, SequenceOutput, TransformerKind, TransformerLayer};

/// What a layer may need of the data it is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataShape {
    /// A linear layer's default width: the classes, or the values each sample predicts.
    pub outputs: usize,
    /// The vocabulary of token inputs; None where the inputs are values.
    pub vocab: Option<usize>,
}

/// A layer's input that does not meet its shape precondition.
fn shape(name: &str, detail: String) -> GraphError {
    GraphError::Shape { node: name.into(), detail }
}

impl LayerKind {
    /// Builds this layer, named `name`, on `inputs` (the first its main input) of `m`, for data
    /// shaped as `data`; returns its output.
    pub fn build(&self, m: &mut Model, name: &str, inputs: &[TensorId], data: &DataShape) -> Result<TensorId> {
        let x = inputs[0];
        match *self {
            LayerKind::Conv2d { out_channels, kernel, stride, padding, dilation, bias } => {
                let geo = ConvGeometry {
                    stride: (stride, stride),
                    padding: (padding, padding),
                    dilation: (dilation, dilation),
                };
                m.conv2d(name, x, out_channels, (kernel, kernel), geo, bias)
            }
            LayerKind::Linear { out_features, bias, ref tie } => linear(m, name, x, (out_features, bias, tie), data),
            LayerKind::Embedding { dim, padding, std } => embedding(m, name, x, (dim, padding, std), data),
            LayerKind::MaxPool2d { kernel, stride, padding } | LayerKind::AvgPool2d { kernel, stride, padding } => {
                let stride = stride.unwrap_or(kernel);
                let geo = PoolGeometry {
                    kernel: (kernel, kernel),
                    stride: (stride, stride),
                    padding: (padding, padding),
                    count_include_pad: true,
                };
                match self {
                    LayerKind::MaxPool2d { .. } => m.graph.max_pool2d(x, geo),
                    _ => m.graph.avg_pool2d(x, geo),
                }
            }
            LayerKind::GlobalAvgPool {} => m.graph.global_avg_pool(x),
            LayerKind::BatchNorm { eps, momentum } => m.batch_norm(name, x, eps, momentum),
            LayerKind::LayerNorm { eps } => m.layer_norm(name, x, eps),
            LayerKind::Dropout { p } => m.dropout(x, p),
            LayerKind::Flatten {} => m.graph.flatten(x),
            LayerKind::Activation(op) => m.graph.unary(op, x),
            LayerKind::Add {} => add(m, name, inputs),
            LayerKind::Concat {} => m.graph.concat(inputs, 1),
            LayerKind::ImageRows {} => {
                // [N, C, H, W] as a sequence of rows [N, H, C·W].
                let [n, c, h, w] = images(m, name, "image_rows", x)?;
                let rows = m.graph.permute(x, &[0, 2, 1, 3])?;
                m.graph.reshape(rows, &[n, h, c * w])
            }
            LayerKind::Recurrent(ref layer) => recurrent(m, name, x, layer),
            LayerKind::Tokens {} => {
                // [N, C, H, W] as the sequence of its positions [N, H·W, C].
                let [n, c, h, w] = images(m, name, "tokens", x)?;
                let positions = m.graph.permute(x, &[0, 2, 3, 1])?;
                m.graph.reshape(positions, &[n, h * w, c])
            }
            LayerKind::ClassToken {} => m.class_token(name, x),
            LayerKind::Position { encoding } => m.position(name, x, encoding == PositionEncoding::Learned),
            LayerKind::Transformer(ref layer) => transformer(m, name, inputs, layer),
            LayerKind::Step { index } => step(m, name, x, index),
        }
    }
}

/// An embedding of the data's vocabulary (dim, padding id, initial std) on token ids x.
fn embedding(
    m: &mut Model,
    name: &str,
    x: TensorId,
    (dim, padding, std): (usize, Option<usize>, f32),
    data: &DataShape,
) -> Result<TensorId> {
    let usage = |detail: String| Err(GraphError::Usage { node: name.into(), detail });
    let Some(vocab) = data.vocab else {
        return usage("embedding needs token ids as input, but this data gives values".into());
    };
    if let Some(p) = padding.filter(|&p| p >= vocab) {
        return usage(format!("padding = {p} is not a token id of the {vocab}-token vocabulary"));
    }
    m.embedding(name, x, (vocab, dim), padding, std)
}

/// The sum of two or more inputs.
fn add(m: &mut Model, name: &str, inputs: &[TensorId]) -> Result<TensorId> {
    let [first, rest @ ..] = inputs else { unreachable!("a layer has an input") };
    if rest.is_empty() {
        let detail = "add needs at least two inputs (inputs = [\"a\", \"b\"])".into();
        return Err(GraphError::Usage { node: name.into(), detail });
    }
    rest.iter().try_fold(*first, |sum, &other| m.graph.binary(Binary::Add, sum, other))
}

/// The shape of x, which a `kind` layer needs to be images [N, C, H, W].
fn images(m: &Model, name: &str, kind: &str, x: TensorId) -> Result<[usize; 4]> {
    let dims = m.graph.shape(x);
    dims.try_into()
        .map_err(|_| shape(name, format!("{kind} needs images [batch, channels, height, width], got {dims:?}")))
}

/// Step `index` of a sequence [N, T, C].
fn step(m: &mut Model, name: &str, x: TensorId, index: usize) -> Result<TensorId> {
    let dims = m.graph.shape(x).to_vec();
    let [_, t, _] = dims[..] else {
        return Err(shape(name, format!("step needs a sequence [batch, steps, features], got {dims:?}")));
    };
    if index >= t {
        return Err(shape(name, format!("step index {index} is past the {t} steps of the sequence")));
    }
    m.graph.step(x, index)
}

/// A linear layer of `out_features` (default: the data's width) on the last axis of x, or tied
/// to an earlier layer's weight.
fn linear(
    m: &mut Model,
    name: &str,
    x: TensorId,
    (out_features, bias, tie): (Option<usize>, bool, &Option<String>),
    data: &DataShape,
) -> Result<TensorId> {
    let shape_of = m.graph.shape(x).to_vec();
    let Some(&features) = shape_of.last().filter(|_| shape_of.len() >= 2) else {
        return Err(shape(name, format!("linear needs [batch, ..., features] input, got {shape_of:?}")));
    };
    let Some(layer) = tie else { return m.linear(name, x, features, out_features.unwrap_or(data.outputs), bias) };
    let y = m.tied_linear(name, x, &format!("{layer}.weight"), bias)?;
    let width = *m.graph.shape(y).last().unwrap_or(&0);
    match out_features {
        Some(n) if n != width => {
            Err(shape(name, format!("out_features = {n} but the tied layer {layer:?} has {width} rows")))
        }
        _ => Ok(y),
    }
}

/// A stack of Transformer encoder layers on x, or decoder layers on x attending to the second
/// input, named `name.layers.{i}` as in `nn.TransformerEncoder` / `nn.TransformerDecoder`.
fn transformer(m: &mut Model, name: &str, inputs: &[TensorId], layer: &TransformerLayer) -> Result<TensorId> {
    let usage = |detail: &str| Err(GraphError::Usage { node: name.into(), detail: detail.into() });
    let memory = match (layer.kind, inputs) {
        (TransformerKind::Encoder, [_]) => None,
        (TransformerKind::Decoder, [_, memory]) => Some(*memory),
        (TransformerKind::Encoder, _) => return usage("transformer_encoder reads one input"),
        (TransformerKind::Decoder, _) => {
            return usage(
                "transformer_decoder reads two inputs: inputs = [\"x\", \"memory\"] (the target sequence and what it \
                 attends to)",
            );
        }
    };
    let mut h = inputs[0];
    for i in 0..layer.settings.layers {
        let layer_name = format!("{name}.layers.{i}");
        h = match memory {
            None => m.encoder_layer(&layer_name, h, &layer.settings, None)?,
            Some(memory) => m.decoder_layer(&layer_name, h, memory, &layer.settings, None)?,
        };
    }
    m.graph.set_label(h, name);
    Ok(h)
}

/// A recurrent layer on the sequence x: every step's output, or the last step's.
fn recurrent(m: &mut Model, name: &str, x: TensorId, layer: &RecurrentLayer) -> Result<TensorId> {
    let shape_of = m.graph.shape(x).to_vec();
    if shape_of.len() != 3 {
        let detail = format!(
            "a recurrent layer needs a sequence [batch, steps, features], got {shape_of:?}: for images, add an \
             image_rows layer before it"
        );
        return Err(shape(name, detail));
    }
    let out = m.recurrent(name, x, layer.cell, &layer.settings)?;
    Ok(match layer.settings.r#return {
        SequenceOutput::Sequence => out.sequence,
        SequenceOutput::Last => {
            m.graph.set_label(out.last, name);
            out.last
        }
    })
}
