//! Builds the graph of a config's layers for one batch size.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use data::Inputs;
use graph::{ConvGeometry, EncoderLayer, Model, PoolGeometry, Recurrent, Supervised, TensorId};
use kernels::Binary;

use crate::config::{
    Config, LayerKind, PositionEncoding, RecurrentLayer, SequenceOutput, TransformerKind, TransformerLayer,
};
use crate::task::Task;

/// The model of `config` for `task` at batch size `batch`, its parameters initialised from
/// the config's seed.
pub fn build(config: &Config, task: &dyn Task, batch: usize) -> Result<Supervised> {
    Ok(build_layers(config, task, batch)?.0)
}

/// What a layer may need of the data.
struct DataShape {
    /// A linear layer's default width: the classes, or the values each sample predicts.
    outputs: usize,
    /// The vocabulary of token inputs.
    vocab: Option<usize>,
}

/// As [`build`], with the output node of each layer, in config order.
pub fn build_layers(config: &Config, task: &dyn Task, batch: usize) -> Result<(Supervised, Vec<TensorId>)> {
    let mut m = Model::new(config.train.seed);
    let shapes = task.shapes();
    let shape: Vec<usize> = std::iter::once(batch).chain(shapes.sample.iter().copied()).collect();
    let (x, vocab) = match shapes.inputs {
        Inputs::Tokens { vocab } => (m.graph.indices("x", &shape, vocab), Some(vocab)),
        Inputs::Values => (m.graph.input("x", &shape), None),
    };
    let layer_outputs = stack(config, &mut m, x, &DataShape { outputs: shapes.width(), vocab })?;
    let last = *layer_outputs.last().unwrap_or(&x);
    let (out, want) = (m.graph.shape(last).to_vec(), shapes.batch_output(batch));
    if out != want {
        bail!(
            "the last layer ({:?}) gives {out:?} per batch, but the data needs {want:?}: end the model with {}",
            config.layers.last().map_or("input", |l| l.name.as_str()),
            task.advice()
        );
    }
    Ok((task.head(m, x, last, &config.train)?, layer_outputs))
}

/// A language model of `config` built to take one token at a time (see
/// [`graph::Decoding`]), for a vocabulary of `vocab` and windows of `context`: the model, with
/// its decoding, and its logits [1, 1, vocab].
pub fn build_decoder(config: &Config, vocab: usize, context: usize) -> Result<(Model, TensorId)> {
    let mut m = Model::for_decoding(config.train.seed, context);
    let x = m.graph.indices("x", &[1, 1], vocab);
    let outputs = stack(config, &mut m, x, &DataShape { outputs: vocab, vocab: Some(vocab) })?;
    let logits = *outputs.last().unwrap_or(&x);
    if m.graph.shape(logits) != [1, 1, vocab] {
        bail!("this model gives {:?} for one token, not next-token logits [1, 1, {vocab}]", m.graph.shape(logits));
    }
    Ok((m, logits))
}

/// The config's layers on x, each reading its inputs by name: each layer's output in order.
fn stack(config: &Config, m: &mut Model, x: TensorId, data: &DataShape) -> Result<Vec<TensorId>> {
    let mut by_name: HashMap<&str, TensorId> = HashMap::new();
    let mut outputs = Vec::new();
    for (i, layer) in config.layers.iter().enumerate() {
        let inputs: Vec<TensorId> = if i == 0 && layer.inputs.is_empty() {
            vec![x]
        } else {
            layer.inputs.iter().map(|name| by_name[name.as_str()]).collect()
        };
        let first = m.graph.len();
        let out = add_layer(m, &layer.name, &layer.kind, &inputs, data)
            .with_context(|| format!("model.layers[{i}] ({:?})", layer.name))?;
        m.graph.claim_for_layer(first, &layer.name);
        by_name.insert(&layer.name, out);
        outputs.push(out);
    }
    Ok(outputs)
}

fn add_layer(m: &mut Model, name: &str, kind: &LayerKind, inputs: &[TensorId], data: &DataShape) -> Result<TensorId> {
    let x = inputs[0];
    let shape = m.graph.shape(x).to_vec();
    Ok(match *kind {
        LayerKind::Conv2d { out_channels, kernel, stride, padding, dilation, bias } => {
            let geo =
                ConvGeometry { stride: (stride, stride), padding: (padding, padding), dilation: (dilation, dilation) };
            m.conv2d(name, x, out_channels, (kernel, kernel), geo, bias)?
        }
        LayerKind::Linear { out_features, bias, ref tie } => {
            if shape.len() < 2 {
                bail!("linear needs [batch, ..., features] input, got {shape:?}");
            }
            let features = shape[shape.len() - 1];
            match tie {
                Some(layer) => {
                    let y = m.tied_linear(name, x, &format!("{layer}.weight"), bias)?;
                    let width = *m.graph.shape(y).last().unwrap_or(&0);
                    if out_features.is_some_and(|n| n != width) {
                        bail!(
                            "out_features = {} but the tied layer {layer:?} has {width} rows",
                            out_features.unwrap_or(0)
                        );
                    }
                    y
                }
                None => m.linear(name, x, features, out_features.unwrap_or(data.outputs), bias)?,
            }
        }
        LayerKind::Embedding { dim, padding, std } => {
            let Some(vocab) = data.vocab else {
                bail!("embedding needs token ids as input ([data] kind = \"text\"), but this data gives values");
            };
            if padding.is_some_and(|p| p >= vocab) {
                bail!("padding = {} is not a token id of the {vocab}-token vocabulary", padding.unwrap_or(0));
            }
            m.embedding(name, x, (vocab, dim), padding, std)?
        }
        LayerKind::MaxPool2d { kernel, stride, padding } | LayerKind::AvgPool2d { kernel, stride, padding } => {
            let geo = PoolGeometry {
                kernel: (kernel, kernel),
                stride: (stride.unwrap_or(kernel), stride.unwrap_or(kernel)),
                padding: (padding, padding),
                count_include_pad: true,
            };
            if matches!(kind, LayerKind::MaxPool2d { .. }) {
                m.graph.max_pool2d(x, geo)?
            } else {
                m.graph.avg_pool2d(x, geo)?
            }
        }
        LayerKind::GlobalAvgPool {} => m.graph.global_avg_pool(x)?,
        LayerKind::BatchNorm { eps, momentum } => m.batch_norm(name, x, eps, momentum)?,
        LayerKind::LayerNorm { eps } => m.layer_norm(name, x, eps)?,
        LayerKind::Dropout { p } => m.dropout(x, p)?,
        LayerKind::Flatten {} => m.graph.flatten(x)?,
        LayerKind::Activation(op) => m.graph.unary(op, x)?,
        LayerKind::Add {} => {
            if inputs.len() < 2 {
                bail!("add needs at least two inputs (inputs = [\"a\", \"b\"])");
            }
            let mut sum = x;
            for &other in &inputs[1..] {
                sum = m.graph.binary(Binary::Add, sum, other)?;
            }
            sum
        }
        LayerKind::Concat {} => m.graph.concat(inputs, 1)?,
        LayerKind::ImageRows {} => {
            let [n, c, h, w] = shape[..] else {
                bail!("image_rows needs images [batch, channels, height, width], got {shape:?}");
            };
            let rows = m.graph.permute(x, &[0, 2, 1, 3])?;
            m.graph.reshape(rows, &[n, h, c * w])?
        }
        LayerKind::Recurrent(ref layer) => recurrent(m, name, x, layer)?,
        LayerKind::Tokens {} => {
            let [n, c, h, w] = shape[..] else {
                bail!("tokens needs images [batch, channels, height, width], got {shape:?}");
            };
            let positions = m.graph.permute(x, &[0, 2, 3, 1])?;
            m.graph.reshape(positions, &[n, h * w, c])?
        }
        LayerKind::ClassToken {} => m.class_token(name, x)?,
        LayerKind::Position { encoding } => m.position(name, x, encoding == PositionEncoding::Learned)?,
        LayerKind::Transformer(ref layer) => transformer(m, name, inputs, layer)?,
        LayerKind::Step { index } => {
            let [_, t, _] = shape[..] else { bail!("step needs a sequence [batch, steps, features], got {shape:?}") };
            if index >= t {
                bail!("step index {index} is past the {t} steps of the sequence");
            }
            m.graph.step(x, index)?
        }
    })
}

/// A stack of Transformer encoder layers on x, or decoder layers on x attending to the second
/// input, named `name.layers.{i}` as in `nn.TransformerEncoder` / `nn.TransformerDecoder`.
fn transformer(m: &mut Model, name: &str, inputs: &[TensorId], layer: &TransformerLayer) -> Result<TensorId> {
    let k = &layer.keys;
    let spec = EncoderLayer {
        heads: k.heads,
        feedforward: k.feedforward,
        activation: k.activation,
        dropout: k.dropout,
        norm_first: k.norm_first,
        eps: k.eps,
    };
    let memory = match (layer.kind, inputs) {
        (TransformerKind::Encoder, [_]) => None,
        (TransformerKind::Decoder, [_, memory]) => Some(*memory),
        (TransformerKind::Encoder, _) => bail!("transformer_encoder reads one input"),
        (TransformerKind::Decoder, _) => {
            bail!(
                "transformer_decoder reads two inputs: inputs = [\"x\", \"memory\"] (the target sequence and what it attends to)"
            )
        }
    };
    let mut h = inputs[0];
    for i in 0..k.layers {
        let layer_name = format!("{name}.layers.{i}");
        h = match memory {
            None => m.encoder_layer(&layer_name, h, &spec, k.causal, None)?,
            Some(memory) => m.decoder_layer(&layer_name, h, memory, &spec, k.causal, None)?,
        };
    }
    m.graph.set_label(h, name);
    Ok(h)
}

fn recurrent(m: &mut Model, name: &str, x: TensorId, layer: &RecurrentLayer) -> Result<TensorId> {
    let shape = m.graph.shape(x).to_vec();
    if shape.len() != 3 {
        bail!(
            "a recurrent layer needs a sequence [batch, steps, features], got {shape:?}: for images, add an \
             image_rows layer before it"
        );
    }
    let k = &layer.keys;
    let spec = Recurrent {
        cell: layer.cell,
        hidden: k.hidden,
        layers: k.layers,
        bidirectional: k.bidirectional,
        dropout: k.dropout,
    };
    let out = m.recurrent(name, x, &spec)?;
    Ok(match k.r#return {
        SequenceOutput::Sequence => out.sequence,
        SequenceOutput::Last => {
            m.graph.set_label(out.last, name);
            out.last
        }
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use graph::Supervised;
    use graph::zoo::{self, Built};

    use crate::config::Config;
    use crate::task::{Classification, LanguageModel, Task};

    /// A decoder stack reads a sequence and the memory it attends to, named as
    /// `nn.TransformerDecoder`; without the memory it says what it needs.
    #[test]
    fn a_transformer_decoder_attends_to_its_second_input() {
        let config = |inputs: &str| {
            let text = format!(
                "[data]\nkind = \"digits\"\n[model]\nlayers = [\n\
                 {{ type = \"conv2d\", name = \"patch\", out_channels = 8, kernel = 2, stride = 2 }},\n\
                 {{ type = \"tokens\", name = \"tokens\" }},\n\
                 {{ type = \"transformer_encoder\", name = \"enc\", heads = 2, feedforward = 16 }},\n\
                 {{ type = \"transformer_decoder\", name = \"dec\", inputs = {inputs}, layers = 2, heads = 2, feedforward = 16, causal = true }},\n\
                 {{ type = \"step\", index = 0 }},\n{{ type = \"linear\", name = \"head\" }},\n]\n"
            );
            Config::parse(Path::new("decoder.toml"), &text).unwrap()
        };
        let digits = Classification::new(vec![1, 8, 8], 10, (0.0, 1.0));
        let model = super::build(&config("[\"tokens\", \"enc\"]"), &digits, 2).unwrap();
        let names: Vec<String> = model.state_dict_shapes().into_iter().map(|(n, _)| n).collect();
        for name in [
            "dec.layers.0.self_attn.in_proj_weight",
            "dec.layers.1.multihead_attn.out_proj.bias",
            "dec.layers.1.norm3.weight",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} not in {names:?}");
        }
        let err = format!("{:#}", super::build(&config("[\"tokens\"]"), &digits, 2).unwrap_err());
        assert!(err.contains("dec") && err.contains("reads two inputs"), "{err}");
    }

    /// The shipped Transformer and character configs build the zoo's reference models that
    /// the benchmarks and the PyTorch scripts use: the same `state_dict` names and shapes.
    #[test]
    fn shipped_configs_build_the_reference_models() {
        let images = Classification::new(vec![1, 28, 28], 10, (0.0, 1.0));
        let text = LanguageModel::new(128, vec!['a'; 78]);
        let cases: [(&str, &dyn Task, Built); 3] = [
            ("vit-mnist", &images, zoo::mnist_vit(0, 2).unwrap()),
            ("char-lstm", &text, zoo::char_lstm(0, 2, 128, 78).unwrap()),
            ("gpt-char", &text, zoo::char_gpt(0, 2, 128, 78).unwrap()),
        ];
        for (name, data, reference) in cases {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../configs/{name}.toml"));
            let built = super::build(&Config::load(&path).unwrap(), data, 2).unwrap();
            let reference = Supervised::classifier(reference.model, reference.input, reference.logits, 0.0).unwrap();
            assert_eq!(built.state_dict_shapes(), reference.state_dict_shapes(), "{name}");
            assert_eq!(built.tied, reference.tied, "{name}");
        }
    }
}
