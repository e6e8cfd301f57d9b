//! LSTM and GRU layers (2 layers, bidirectional) against PyTorch's nn.LSTM and nn.GRU on both
//! executors (fixture from scripts/torch_recurrent.py: outputs and the gradients of the input
//! and every parameter), and their gradients against finite differences; each with an LSTM
//! whose input is narrow beside its hidden state too, which the CPU executor runs with the
//! input product inside each step.

mod common;

use std::collections::HashMap;

use common::{assert_golden, fixture, golden_params, numbers, on_both, values, weighted_sum};
use graph::{CellKind, Feed, Mode, Model, Recurrent, SequenceOutput, TensorId};

/// A recurrent layer on x [B, T, I] with loss = sum(y * r), and the tensors a test reads: y,
/// dx and each parameter's gradient by its name.
struct Case {
    model: Model,
    loss: TensorId,
    reads: Vec<(String, TensorId)>,
}

fn case(cell: CellKind, (batch, steps, inputs): (usize, usize, usize), hidden: usize, layers: usize) -> Case {
    let mut model = Model::new(0);
    let x = model.graph.input("x", &[batch, steps, inputs]);
    let layer = Recurrent { hidden, layers, bidirectional: true, dropout: 0.0, r#return: SequenceOutput::Sequence };
    let y = model.recurrent("rnn", x, cell, &layer).unwrap().sequence;
    let (loss, reads) = weighted_sum(&mut model, y, &[("x", x)]);
    Case { model, loss, reads }
}

#[test]
fn lstm_and_gru_match_pytorch_on_both_executors() {
    let fixture = fixture("recurrent");
    for (key, cell) in [("lstm", CellKind::Lstm), ("gru", CellKind::Gru), ("lstm_narrow_input", CellKind::Lstm)] {
        let golden = &fixture[key];
        let dim = |k: &str| golden["shape"][k].as_u64().unwrap() as usize;
        let c = case(cell, (dim("batch"), dim("steps"), dim("inputs")), dim("hidden"), dim("layers"));
        // The same parameters by the same names as torch's state_dict.
        let params = golden_params(&c.model, golden, "rnn");
        let mut feed = Feed::default();
        feed.inputs.insert("x".into(), numbers(&golden["x"]));
        feed.inputs.insert("r".into(), numbers(&golden["r"]));
        for (device, got) in on_both(&c.model.graph, &c.reads, &params, &feed) {
            assert_golden(&format!("{key} {device}"), &got, golden, "rnn");
        }
    }
}

/// Central differences of the loss through several time steps, both directions and both
/// layers, for the input and every parameter.
#[test]
fn recurrent_gradients_match_finite_differences() {
    // (cell, inputs, hidden, layers): the last LSTM's first layer fuses its input product.
    for (cell, inputs, hidden, layers) in
        [(CellKind::Lstm, 3, 3, 2), (CellKind::Gru, 3, 3, 2), (CellKind::Lstm, 1, 4, 2)]
    {
        let c = case(cell, (2, 4, inputs), hidden, layers);
        let mut params = c.model.init.values();
        let mut feed = Feed::default();
        feed.inputs.insert("x".into(), values(1, 2 * 4 * inputs, 1.0));
        feed.inputs.insert("r".into(), values(2, 2 * 4 * 2 * hidden, 1.0));
        let got = on_both(&c.model.graph, &c.reads, &params, &feed).remove(0).1;
        let loss = |params: &HashMap<String, Vec<f32>>, feed: &Feed| {
            graph::evaluate(&c.model.graph, Mode::Train, params, feed, &[c.loss]).unwrap().scalar(c.loss) as f64
        };
        let h = 1e-2;
        for (name, _) in c.reads.iter().skip(1) {
            for (i, &g) in got[name].iter().enumerate() {
                let fd = if name == "dx" {
                    let at = |delta: f32| {
                        let mut f = feed.clone();
                        f.inputs.get_mut("x").unwrap()[i] += delta;
                        loss(&params, &f)
                    };
                    (at(h) - at(-h)) / (2.0 * h as f64)
                } else {
                    let mut at = |delta: f32| {
                        params.get_mut(name).unwrap()[i] += delta;
                        let l = loss(&params, &feed);
                        params.get_mut(name).unwrap()[i] -= delta;
                        l
                    };
                    (at(h) - at(-h)) / (2.0 * h as f64)
                };
                let g = g as f64;
                assert!(
                    (fd - g).abs() <= 1e-2 * g.abs() + 2e-4,
                    "{cell:?} {name}[{i}]: analytic {g}, finite difference {fd}"
                );
            }
        }
    }
}
