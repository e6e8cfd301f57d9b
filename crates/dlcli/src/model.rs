//! Builds the graph of a config's layers for one batch size: each layer (declared, checked and
//! built by `graph::spec`) on the inputs it names, the task's head on the last.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use data::Inputs;
use graph::{DataShape, Model, Supervised, TensorId};

use crate::config::Config;
use crate::task::Task;

/// The model of `config` for `task` at batch size `batch`, its parameters initialised from
/// the config's seed.
pub fn build(config: &Config, task: &dyn Task, batch: usize) -> Result<Supervised> {
    Ok(build_layers(config, task, batch)?.0)
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
        let out = (layer.kind.build(m, &layer.name, &inputs, data))
            .with_context(|| format!("model.layers[{i}] ({:?})", layer.name))?;
        m.graph.claim_for_layer(first, &layer.name);
        by_name.insert(&layer.name, out);
        outputs.push(out);
    }
    Ok(outputs)
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
