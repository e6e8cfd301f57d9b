//! LSTM and GRU layers (2 layers, bidirectional) against PyTorch's nn.LSTM and nn.GRU on both
//! executors (fixture from scripts/torch_recurrent.py: outputs and the gradients of the input
//! and every parameter), and their gradients against finite differences.

mod common;

use std::collections::HashMap;

use common::{assert_close, gpu, values};
use graph::{CellKind, Executor, Feed, GpuExecutor, Mode, Model, Recurrent, TensorId, backward};
use kernels::Binary;

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
    let layer = Recurrent { cell, hidden, layers, bidirectional: true, dropout: 0.0 };
    let y = model.recurrent("rnn", x, &layer).unwrap();
    let r = model.graph.input("r", &[batch, steps, 2 * hidden]);
    let weighted = model.graph.binary(Binary::Mul, y, r).unwrap();
    let loss = model.graph.sum(weighted).unwrap();
    let grads = backward(&mut model.graph, loss).unwrap();
    let mut reads = vec![("y".to_string(), y), ("dx".to_string(), grads.of(x).unwrap())];
    for (id, node) in model.graph.nodes() {
        if let graph::Op::Param { name } = &node.op {
            reads.push((name.clone(), grads.of(id.out(0)).unwrap()));
        }
    }
    Case { model, loss, reads }
}

fn numbers(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

/// What the CPU executor and, where there is a GPU, the GPU executor give for `reads`.
fn on_both(case: &Case, params: &HashMap<String, Vec<f32>>, feed: &Feed) -> Vec<HashMap<String, Vec<f32>>> {
    let ids: Vec<TensorId> = case.reads.iter().map(|r| r.1).collect();
    let cpu = graph::evaluate(&case.model.graph, Mode::Train, params, feed, &ids).unwrap();
    let mut results = vec![case.reads.iter().map(|(n, id)| (n.clone(), cpu.get(*id).to_vec())).collect()];
    if let Some(gpu) = gpu() {
        let mut exec = GpuExecutor::new(gpu);
        params.iter().for_each(|(name, value)| exec.write_named(name, value).unwrap());
        let run = exec.prepare(&case.model.graph, Mode::Train, &ids).unwrap();
        exec.run(run, feed, 0).unwrap();
        results.push(case.reads.iter().map(|(n, id)| (n.clone(), exec.read(run, *id).unwrap())).collect());
    }
    results
}

#[test]
fn lstm_and_gru_match_pytorch_on_both_executors() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/recurrent.json")).unwrap();
    let fixture: serde_json::Value = serde_json::from_str(&text).unwrap();
    for (key, cell) in [("lstm", CellKind::Lstm), ("gru", CellKind::Gru)] {
        let golden = &fixture[key];
        let dim = |k: &str| golden["shape"][k].as_u64().unwrap() as usize;
        let c = case(cell, (dim("batch"), dim("steps"), dim("inputs")), dim("hidden"), dim("layers"));
        // The same parameters by the same names as torch's state_dict.
        let mut theirs: Vec<String> =
            golden["params"].as_object().unwrap().keys().map(|k| format!("rnn.{k}")).collect();
        let mut ours: Vec<String> = c.model.init.names().map(str::to_string).collect();
        ours.sort();
        theirs.sort();
        assert_eq!(ours, theirs, "{key}: parameter names");
        let params: HashMap<String, Vec<f32>> =
            golden["params"].as_object().unwrap().iter().map(|(k, v)| (format!("rnn.{k}"), numbers(v))).collect();
        let mut feed = Feed::default();
        feed.inputs.insert("x".into(), numbers(&golden["x"]));
        feed.inputs.insert("r".into(), numbers(&golden["r"]));
        for (device, got) in ["cpu", "gpu"].iter().zip(on_both(&c, &params, &feed)) {
            assert_close(&format!("{key} {device} y"), &got["y"], &numbers(&golden["y"]));
            assert_close(&format!("{key} {device} dx"), &got["dx"], &numbers(&golden["dx"]));
            for (name, grad) in golden["grads"].as_object().unwrap() {
                assert_close(&format!("{key} {device} d{name}"), &got[&format!("rnn.{name}")], &numbers(grad));
            }
        }
    }
}

/// Central differences of the loss through several time steps, both directions and both
/// layers, for the input and every parameter.
#[test]
fn recurrent_gradients_match_finite_differences() {
    for cell in [CellKind::Lstm, CellKind::Gru] {
        let c = case(cell, (2, 4, 3), 3, 2);
        let mut params = c.model.init.values();
        let mut feed = Feed::default();
        feed.inputs.insert("x".into(), values(1, 24, 1.0));
        feed.inputs.insert("r".into(), values(2, 48, 1.0));
        let got = on_both(&c, &params, &feed).remove(0);
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
