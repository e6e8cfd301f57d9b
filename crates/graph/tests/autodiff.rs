//! Reverse-mode autodiff on the CPU executor against finite differences, and the errors a bad
//! graph or feed gives.

use std::collections::HashMap;

use graph::{CpuExecutor, Feed, Graph, GraphError, NodeId, backward};
use kernels::{Binary, Unary};

/// A small deterministic generator for test data.
fn values(seed: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

struct Net {
    graph: Graph,
    loss: NodeId,
    x: NodeId,
    hidden: NodeId,
    params: Vec<(NodeId, &'static str, Vec<usize>)>,
}

/// x [4, 5] -> tanh(x W1ᵀ + b1) = h [4, 3] -> t = h²/(h² + c) - h -> (t (hᵀh)) W2ᵀ + b2 -> CE.
/// Every op and both transpose flags of matmul appear, and every binary op broadcasts.
fn net() -> Net {
    let mut g = Graph::new();
    let x = g.input("x", &[4, 5]);
    let labels = g.labels("y", 4, 2);
    let w1 = g.param("fc1.weight", &[3, 5]);
    let b1 = g.param("fc1.bias", &[3]);
    let c = g.param("c", &[1, 3]);
    let w2 = g.param("fc2.weight", &[2, 3]);
    let b2 = g.param("fc2.bias", &[2]);
    let a = g.matmul(x, w1, false, true).unwrap();
    let a = g.binary(Binary::Add, a, b1).unwrap();
    let hidden = g.unary(Unary::Tanh, a);
    let square = g.binary(Binary::Mul, hidden, hidden).unwrap();
    let denominator = g.binary(Binary::Add, square, c).unwrap();
    let ratio = g.binary(Binary::Div, square, denominator).unwrap();
    let t = g.binary(Binary::Sub, ratio, hidden).unwrap();
    let gram = g.matmul(hidden, hidden, true, false).unwrap();
    let p = g.matmul(t, gram, false, false).unwrap();
    let logits = g.matmul(p, w2, false, true).unwrap();
    let logits = g.binary(Binary::Add, logits, b2).unwrap();
    let loss = g.cross_entropy(logits, labels, 0.1).unwrap();
    let params = vec![
        (w1, "fc1.weight", vec![3, 5]),
        (b1, "fc1.bias", vec![3]),
        (c, "c", vec![1, 3]),
        (w2, "fc2.weight", vec![2, 3]),
        (b2, "fc2.bias", vec![2]),
    ];
    Net { graph: g, loss, x, hidden, params }
}

fn feed(x: Vec<f32>) -> Feed {
    let mut feed = Feed::default();
    feed.inputs.insert("x".into(), x);
    feed.labels.insert("y".into(), vec![1, 0, 1, 1]);
    feed
}

fn initial_params(net: &Net) -> HashMap<String, Vec<f32>> {
    net.params
        .iter()
        .enumerate()
        .map(|(i, (_, name, shape))| {
            let mut v = values(10 + i as u64, shape.iter().product(), 1.0);
            if *name == "c" {
                v.iter_mut().for_each(|x| *x = x.abs() + 0.5); // keep h² + c away from 0
            }
            (name.to_string(), v)
        })
        .collect()
}

/// Central differences of the loss in f64, against the analytic gradient.
fn check(what: &str, analytic: &[f32], mut loss_at: impl FnMut(usize, f32) -> f64) {
    let h = 1e-2f32;
    for (i, &g) in analytic.iter().enumerate() {
        let fd = (loss_at(i, h) - loss_at(i, -h)) / (2.0 * h as f64);
        let g = g as f64;
        assert!((fd - g).abs() <= 1e-2 * g.abs() + 2e-4, "{what}[{i}]: analytic {g}, finite difference {fd}");
    }
}

#[test]
fn every_gradient_matches_finite_differences() {
    let mut net = net();
    let grads = backward(&mut net.graph, net.loss).unwrap();
    let x = values(1, 20, 1.0);
    let params = initial_params(&net);
    let exec = CpuExecutor::new(&net.graph);
    let values = exec.run(&params, &feed(x.clone())).unwrap();
    let loss_with = |params: &HashMap<String, Vec<f32>>, x: &[f32]| {
        exec.run(params, &feed(x.to_vec())).unwrap().scalar(net.loss) as f64
    };
    for (id, name, _) in &net.params {
        let analytic = values.get(grads.of(*id).unwrap()).to_vec();
        check(name, &analytic, |i, h| {
            let mut p = params.clone();
            p.get_mut(*name).unwrap()[i] += h;
            loss_with(&p, &x)
        });
    }
    let dx = values.get(grads.of(net.x).unwrap()).to_vec();
    check("x", &dx, |i, h| {
        let mut x = x.clone();
        x[i] += h;
        loss_with(&params, &x)
    });
    // An intermediate feature map has a gradient too, with its own shape.
    let dh = grads.of(net.hidden).expect("gradient of the hidden layer");
    assert_eq!(net.graph.shape(dh), &[4, 3]);
}

#[test]
fn a_shape_mismatch_names_the_node_and_both_shapes() {
    let mut g = Graph::new();
    let a = g.input("a", &[4, 5]);
    let b = g.input("b", &[4, 5]);
    let err = g.matmul(a, b, false, false).unwrap_err().to_string();
    assert!(err.contains("matmul#2") && err.contains("[4, 5]"), "{err}");
    let c = g.input("c", &[3]);
    let err = g.binary(Binary::Add, a, c).unwrap_err().to_string();
    assert!(err.contains("[4, 5] and [3] do not broadcast"), "{err}");
    let err = g.cross_entropy(a, c, 0.0).unwrap_err().to_string();
    assert!(err.contains("logits [4, 5] and labels [3]"), "{err}");
}

#[test]
fn missing_feeds_and_bad_labels_are_errors() {
    let net = net();
    let exec = CpuExecutor::new(&net.graph);
    let params = initial_params(&net);
    let err = exec.run(&params, &Feed::default()).unwrap_err();
    assert!(matches!(err, GraphError::MissingInput { ref name, .. } if name == "x"), "{err}");
    let mut bad = feed(values(1, 20, 1.0));
    bad.labels.insert("y".into(), vec![1, 0, 2, 1]);
    let err = exec.run(&params, &bad).unwrap_err().to_string();
    assert!(err.contains("target 2 is not a class index below 2"), "{err}");
    let mut short = feed(values(1, 19, 1.0));
    short.labels.insert("y".into(), vec![1, 0, 1, 1]);
    let err = exec.run(&params, &short).unwrap_err().to_string();
    assert!(err.contains("fed 19 values"), "{err}");
}
