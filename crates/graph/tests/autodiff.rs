//! Reverse-mode autodiff on the CPU executor against finite differences, and the errors a bad
//! graph or feed gives.

mod common;

use std::collections::HashMap;

use common::values;

use graph::{ConvGeometry, Feed, Graph, GraphError, Mode, PoolGeometry, TensorId, backward};
use kernels::{Binary, Unary};

struct Net {
    graph: Graph,
    loss: TensorId,
    x: TensorId,
    hidden: TensorId,
    params: Vec<(TensorId, &'static str, Vec<usize>)>,
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
    let hidden = g.unary(Unary::Tanh, a).unwrap();
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
fn check(what: &str, analytic: &[f32], loss_at: impl FnMut(usize, f32) -> f64) {
    check_with_step(what, analytic, 1e-2, loss_at);
}

fn check_with_step(what: &str, analytic: &[f32], h: f32, mut loss_at: impl FnMut(usize, f32) -> f64) {
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
    let exec = common::Everything { graph: &net.graph, mode: Mode::Train };
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
    let exec = common::Everything { graph: &net.graph, mode: Mode::Train };
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

/// x [2, 1, 7, 7] -> conv 3x3 pad 1 + bias -> tanh -> max pool 2
/// -> conv 2x2 dilation 2 -> avg pool 2 pad 1 -> reshape [2, 4] -> linear -> cross-entropy.
#[test]
fn cnn_gradients_match_finite_differences() {
    let mut g = Graph::new();
    let x = g.input("x", &[2, 1, 7, 7]);
    let labels = g.labels("y", 2, 3);
    let w1 = g.param("conv1.weight", &[3, 1, 3, 3]);
    let b1 = g.param("conv1.bias", &[3]);
    let w2 = g.param("conv2.weight", &[4, 3, 2, 2]);
    let w3 = g.param("fc.weight", &[3, 4]);
    let same = ConvGeometry { stride: (1, 1), padding: (1, 1), dilation: (1, 1) };
    let c1 = g.conv2d(x, w1, Some(b1), same).unwrap();
    let h = g.unary(Unary::Tanh, c1).unwrap();
    let halve = PoolGeometry { kernel: (2, 2), stride: (2, 2), padding: (0, 0), count_include_pad: true };
    let p1 = g.max_pool2d(h, halve).unwrap(); // [2, 3, 3, 3]
    let dilated = ConvGeometry { stride: (1, 1), padding: (1, 1), dilation: (2, 2) };
    let c2 = g.conv2d(p1, w2, None, dilated).unwrap(); // [2, 4, 3, 3]
    let p2 = g.avg_pool2d(c2, PoolGeometry { padding: (1, 1), count_include_pad: false, ..halve }).unwrap(); // [2, 4, 2, 2]
    let p2 = g.avg_pool2d(p2, halve).unwrap(); // [2, 4, 1, 1]
    let flat = g.reshape(p2, &[2, 4]).unwrap();
    let logits = g.matmul(flat, w3, false, true).unwrap();
    let loss = g.cross_entropy(logits, labels, 0.0).unwrap();
    let grads = backward(&mut g, loss).unwrap();

    let names = [("conv1.weight", w1, 27), ("conv1.bias", b1, 3), ("conv2.weight", w2, 48), ("fc.weight", w3, 12)];
    let params: HashMap<String, Vec<f32>> =
        names.iter().enumerate().map(|(i, (n, _, len))| (n.to_string(), values(20 + i as u64, *len, 1.0))).collect();
    let x_value = values(7, 98, 1.0);
    let feed_x = |x: &[f32]| {
        let mut feed = Feed::default();
        feed.inputs.insert("x".into(), x.to_vec());
        feed.labels.insert("y".into(), vec![2, 0]);
        feed
    };
    let exec = common::Everything { graph: &g, mode: Mode::Train };
    let run = exec.run(&params, &feed_x(&x_value)).unwrap();
    let loss_with = |p: &HashMap<String, Vec<f32>>, x: &[f32]| exec.run(p, &feed_x(x)).unwrap().scalar(loss) as f64;
    // A small step keeps max pooling's winners in place.
    for (name, id, _) in names {
        check_with_step(name, run.get(grads.of(id).unwrap()), 1e-3, |i, h| {
            let mut p = params.clone();
            p.get_mut(name).unwrap()[i] += h;
            loss_with(&p, &x_value)
        });
    }
    check_with_step("x", run.get(grads.of(x).unwrap()), 1e-3, |i, h| {
        let mut x = x_value.clone();
        x[i] += h;
        loss_with(&params, &x)
    });
    assert!(
        g.conv2d(x, w2, None, same).unwrap_err().to_string().contains("input [2, 1, 7, 7] and weight [4, 3, 2, 2]")
    );
    assert!(g.reshape(x, &[5, 20]).unwrap_err().to_string().contains("cannot reshape [2, 1, 7, 7] to [5, 20]"));
}

/// Softmax and log-softmax joined with concat, sliced, and a second branch that concatenates
/// rows of x with a slice of itself; the two cross-entropies are added.
#[test]
fn softmax_concat_and_slice_gradients_match_finite_differences() {
    let mut g = Graph::new();
    let x = g.input("x", &[3, 6]);
    let (y1, y2) = (g.labels("y1", 3, 2), g.labels("y2", 5, 2));
    let w = g.param("w", &[4, 6]);
    let w2 = g.param("w2", &[2, 5]);
    let w3 = g.param("w3", &[2, 6]);
    let a = g.matmul(x, w, false, true).unwrap(); // [3, 4]
    let s = g.softmax(a, false).unwrap();
    let l = g.softmax(a, true).unwrap();
    let joined = g.concat(&[s, l], 1).unwrap(); // [3, 8]
    let middle = g.slice(joined, 1, 2, 5).unwrap(); // [3, 5]
    let logits = g.matmul(middle, w2, false, true).unwrap();
    let first = g.cross_entropy(logits, y1, 0.0).unwrap();
    let rows = g.slice(x, 0, 1, 2).unwrap(); // [2, 6]
    let stacked = g.concat(&[x, rows], 0).unwrap(); // [5, 6]
    let logits2 = g.matmul(stacked, w3, false, true).unwrap();
    let second = g.cross_entropy(logits2, y2, 0.0).unwrap();
    let loss = g.binary(Binary::Add, first, second).unwrap();
    let grads = backward(&mut g, loss).unwrap();

    let params: HashMap<String, Vec<f32>> = [("w", 24), ("w2", 10), ("w3", 12)]
        .iter()
        .enumerate()
        .map(|(i, (n, len))| (n.to_string(), values(40 + i as u64, *len, 1.0)))
        .collect();
    let x_value = values(9, 18, 1.0);
    let feed_x = |x: &[f32]| {
        let mut feed = Feed::default();
        feed.inputs.insert("x".into(), x.to_vec());
        feed.labels.insert("y1".into(), vec![1, 0, 1]);
        feed.labels.insert("y2".into(), vec![0, 1, 1, 0, 1]);
        feed
    };
    let exec = common::Everything { graph: &g, mode: Mode::Train };
    let run = exec.run(&params, &feed_x(&x_value)).unwrap();
    let loss_with = |p: &HashMap<String, Vec<f32>>, x: &[f32]| exec.run(p, &feed_x(x)).unwrap().scalar(loss) as f64;
    for name in ["w", "w2", "w3"] {
        let id = match name {
            "w" => w,
            "w2" => w2,
            _ => w3,
        };
        check(name, run.get(grads.of(id).unwrap()), |i, h| {
            let mut p = params.clone();
            p.get_mut(name).unwrap()[i] += h;
            loss_with(&p, &x_value)
        });
    }
    check("x", run.get(grads.of(x).unwrap()), |i, h| {
        let mut x = x_value.clone();
        x[i] += h;
        loss_with(&params, &x)
    });
    let err = g.concat(&[x, w2], 1).unwrap_err().to_string();
    assert!(err.contains("differ off axis 1"), "{err}");
    assert!(g.slice(x, 1, 4, 3).unwrap_err().to_string().contains("4..7 of axis 1 of [3, 6]"));
}

/// layer_norm(x; gamma, beta) -> GELU -> linear -> MSE against a fed target.
#[test]
fn layer_norm_and_mse_gradients_match_finite_differences() {
    let mut g = Graph::new();
    let x = g.input("x", &[4, 6]);
    let target = g.input("target", &[4, 3]);
    let gamma = g.param("norm.weight", &[6]);
    let beta = g.param("norm.bias", &[6]);
    let w = g.param("fc.weight", &[3, 6]);
    let h = g.layer_norm(x, gamma, beta, 1e-5).unwrap();
    let h = g.unary(Unary::GeluErf, h).unwrap();
    let prediction = g.matmul(h, w, false, true).unwrap();
    let loss = g.mse(prediction, target).unwrap();
    let grads = backward(&mut g, loss).unwrap();

    let mut params: HashMap<String, Vec<f32>> = HashMap::new();
    params.insert("norm.weight".into(), values(50, 6, 1.0).iter().map(|v| v + 1.0).collect());
    params.insert("norm.bias".into(), values(51, 6, 0.5));
    params.insert("fc.weight".into(), values(52, 18, 1.0));
    let x_value = values(53, 24, 2.0);
    let feed_x = |x: &[f32]| {
        let mut feed = Feed::default();
        feed.inputs.insert("x".into(), x.to_vec());
        feed.inputs.insert("target".into(), values(54, 12, 1.0));
        feed
    };
    let exec = common::Everything { graph: &g, mode: Mode::Train };
    let run = exec.run(&params, &feed_x(&x_value)).unwrap();
    let loss_with = |p: &HashMap<String, Vec<f32>>, x: &[f32]| exec.run(p, &feed_x(x)).unwrap().scalar(loss) as f64;
    for (name, id) in [("norm.weight", gamma), ("norm.bias", beta), ("fc.weight", w)] {
        check(name, run.get(grads.of(id).unwrap()), |i, h| {
            let mut p = params.clone();
            p.get_mut(name).unwrap()[i] += h;
            loss_with(&p, &x_value)
        });
    }
    check("x", run.get(grads.of(x).unwrap()), |i, h| {
        let mut x = x_value.clone();
        x[i] += h;
        loss_with(&params, &x)
    });
    let err = g.layer_norm(x, w, beta, 1e-5).unwrap_err().to_string();
    assert!(err.contains("input [4, 6] needs gamma and beta of its last axis, got [3, 6] and [6]"), "{err}");
    let err = g.mse(prediction, x).unwrap_err().to_string();
    assert!(err.contains("prediction [4, 3] and target [4, 6] differ"), "{err}");
}

/// Batch norm (both modes) on a [N, C, H, W] map, dropout, global average pooling and
/// BatchNorm1d on the pooled features.
#[test]
fn batch_norm_dropout_and_global_pool_gradients_match_finite_differences() {
    for mode in [Mode::Train, Mode::Eval] {
        let mut g = Graph::new();
        let x = g.input("x", &[3, 2, 3, 3]);
        let labels = g.labels("y", 3, 2);
        let names = ["bn.weight", "bn.bias", "bn.running_mean", "bn.running_var", "bn1d.weight", "bn1d.bias"];
        let [gamma, beta] = [0, 1].map(|i| g.param(names[i], &[2]));
        let [mean, var] = [2, 3].map(|i| g.state(names[i], &[2]));
        let [gamma1, beta1] = [4, 5].map(|i| g.param(names[i], &[2]));
        let (mean1, var1) = (g.state("bn1d.running_mean", &[2]), g.state("bn1d.running_var", &[2]));
        let w = g.param("fc.weight", &[2, 2]);
        let h = g.batch_norm(x, [gamma, beta, mean, var], 1e-5, 0.1).unwrap();
        let h = g.unary(Unary::Tanh, h).unwrap();
        let h = g.dropout(h, 0.25, 5).unwrap();
        let pooled = g.global_avg_pool(h).unwrap(); // [3, 2]
        let h = g.batch_norm(pooled, [gamma1, beta1, mean1, var1], 1e-5, 0.1).unwrap();
        let logits = g.matmul(h, w, false, true).unwrap();
        let loss = g.cross_entropy(logits, labels, 0.0).unwrap();
        let grads = backward(&mut g, loss).unwrap();

        let mut params: HashMap<String, Vec<f32>> = HashMap::new();
        for (i, name) in names.iter().enumerate() {
            let v = values(60 + i as u64, 2, 0.5);
            let v =
                if name.ends_with("weight") || name.ends_with("var") { v.iter().map(|a| a + 1.0).collect() } else { v };
            params.insert(name.to_string(), v);
        }
        params.insert("bn1d.running_mean".into(), vec![0.1, -0.2]);
        params.insert("bn1d.running_var".into(), vec![0.8, 1.3]);
        params.insert("fc.weight".into(), values(70, 4, 1.0));
        let x_value = values(71, 54, 2.0);
        let feed_x = |x: &[f32]| {
            let mut feed = Feed::default();
            feed.inputs.insert("x".into(), x.to_vec());
            feed.labels.insert("y".into(), vec![1, 0, 1]);
            feed
        };
        let exec = common::Everything { graph: &g, mode };
        let run = exec.run(&params, &feed_x(&x_value)).unwrap();
        // Training mode folds the batch statistics into the running ones; evaluation does not.
        assert_eq!(run.updated_state.len(), if mode == Mode::Train { 4 } else { 0 });
        let loss_with = |p: &HashMap<String, Vec<f32>>, x: &[f32]| exec.run(p, &feed_x(x)).unwrap().scalar(loss) as f64;
        for (name, id) in [("bn.weight", gamma), ("bn.bias", beta), ("bn1d.weight", gamma1), ("bn1d.bias", beta1)] {
            check_with_step(&format!("{name} {mode:?}"), run.get(grads.of(id).unwrap()), 1e-3, |i, h| {
                let mut p = params.clone();
                p.get_mut(name).unwrap()[i] += h;
                loss_with(&p, &x_value)
            });
        }
        check_with_step(&format!("x {mode:?}"), run.get(grads.of(x).unwrap()), 1e-3, |i, h| {
            let mut x = x_value.clone();
            x[i] += h;
            loss_with(&params, &x)
        });
        assert!(grads.of(mean).is_none(), "running statistics are not trained");
    }
}

/// BCE with logits against soft targets: the gradient of the weights and of the targets.
#[test]
fn bce_with_logits_gradients_match_finite_differences() {
    let mut g = Graph::new();
    let x = g.input("x", &[3, 4]);
    let t = g.input("t", &[3, 2]);
    let w = g.param("w", &[2, 4]);
    let logits = g.matmul(x, w, false, true).unwrap();
    let loss = g.bce_with_logits(logits, t).unwrap();
    let grads = backward(&mut g, loss).unwrap();
    let params: HashMap<String, Vec<f32>> = [("w".to_string(), values(80, 8, 2.0))].into();
    let t_value: Vec<f32> = values(81, 6, 1.0).iter().map(|v| v.abs()).collect();
    let feed_t = |t: &[f32]| {
        let mut feed = Feed::default();
        feed.inputs.insert("x".into(), values(82, 12, 2.0));
        feed.inputs.insert("t".into(), t.to_vec());
        feed
    };
    let exec = common::Everything { graph: &g, mode: Mode::Train };
    let run = exec.run(&params, &feed_t(&t_value)).unwrap();
    let loss_with = |p: &HashMap<String, Vec<f32>>, t: &[f32]| exec.run(p, &feed_t(t)).unwrap().scalar(loss) as f64;
    check("w", run.get(grads.of(w).unwrap()), |i, h| {
        let mut p = params.clone();
        p.get_mut("w").unwrap()[i] += h;
        loss_with(&p, &t_value)
    });
    check("t", run.get(grads.of(t).unwrap()), |i, h| {
        let mut t = t_value.clone();
        t[i] += h;
        loss_with(&params, &t)
    });
    let err = g.bce_with_logits(logits, x).unwrap_err().to_string();
    assert!(err.contains("logits [3, 2] and targets [3, 4] differ"), "{err}");
}

/// A tensor used whole and sliced five ways: three disjoint row slices with a gap (joined into
/// one tensor by a single concat, no additions), one overlapping them (padded and added), one
/// along the other axis. The gradient matches finite differences, and the graph shows the join.
#[test]
fn gradients_of_disjoint_slices_are_joined_by_one_concat() {
    let mut g = Graph::new();
    let x = g.input("x", &[6, 4]);
    let (w, labels) = (g.param("w", &[6, 4]), g.labels("y", 1, 2));
    let mut loss = {
        let t = g.unary(Unary::Tanh, x).unwrap();
        let t = g.binary(Binary::Mul, t, w).unwrap();
        g.sum(t).unwrap()
    };
    for (axis, start, len) in [(0, 0, 2), (0, 2, 2), (0, 5, 1), (0, 1, 3), (1, 1, 2)] {
        let part = g.slice(x, axis, start, len).unwrap();
        let squared = g.binary(Binary::Mul, part, part).unwrap();
        let scaled = g.unary(Unary::Tanh, squared).unwrap();
        let term = g.sum(scaled).unwrap();
        loss = g.binary(Binary::Add, loss, term).unwrap();
    }
    // A cross-entropy term makes the loss the usual [] scalar of a training graph.
    let logits = g.reshape(loss, &[1, 1]).unwrap();
    let zero = g.fill(0.0, &[1, 1]);
    let logits = g.concat(&[logits, zero], 1).unwrap();
    let loss = g.cross_entropy(logits, labels, 0.0).unwrap();
    let before = g.len();
    let grads = backward(&mut g, loss).unwrap();
    let dx = grads.of(x).unwrap();
    // What computes dx: one join of the three disjoint row slices, a padding of the
    // overlapping one and one of the column slice (a concat each; padding every slice took
    // five), the three added to the whole contribution last.
    let ops: Vec<&str> =
        g.ancestors(&[dx]).into_iter().filter(|id| id.index() >= before).map(|id| g.node(id).op.name()).collect();
    assert_eq!(ops.iter().filter(|n| **n == "concat").count(), 3, "dx from {ops:?}");
    assert!(ops.ends_with(&["concat", "binary", "binary", "binary"]), "dx from {ops:?}");

    let params: HashMap<String, Vec<f32>> = [("w".to_string(), values(3, 24, 1.0))].into();
    let x_value = values(4, 24, 1.0);
    let feed_x = |x: &[f32]| {
        let mut feed = Feed::default();
        feed.inputs.insert("x".into(), x.to_vec());
        feed.labels.insert("y".into(), vec![1]);
        feed
    };
    let exec = common::Everything { graph: &g, mode: Mode::Train };
    let run = exec.run(&params, &feed_x(&x_value)).unwrap();
    check("x through its slices", run.get(dx), |i, h| {
        let mut x = x_value.clone();
        x[i] += h;
        exec.run(&params, &feed_x(&x)).unwrap().scalar(loss) as f64
    });
}
