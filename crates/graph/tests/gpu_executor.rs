//! The GPU executor against the CPU executor on whole graphs, forward and backward, and its
//! buffer plan.

#[macro_use]
mod common;

use std::collections::HashMap;

use common::{assert_close, gpu, values};
use graph::{
    ConvGeometry, CpuExecutor, CrossCheck, Executor, Feed, GpuExecutor, Graph, Mode, Model, PoolGeometry, Supervised,
    TensorId, Trainer, Training, backward,
};
use kernels::{Binary, Tolerance, Unary};

/// Runs `graph` in `mode` on both executors and compares every node in `outputs`.
fn compare(graph: &Graph, mode: Mode, outputs: &[(TensorId, &str)], params: &HashMap<String, Vec<f32>>, feed: &Feed) {
    let Some(gpu) = gpu() else { return };
    let ids: Vec<TensorId> = outputs.iter().map(|o| o.0).collect();
    let want = graph::evaluate(graph, mode, params, feed, &ids).unwrap();
    let mut exec = GpuExecutor::new(gpu);
    for (name, value) in params {
        exec.write_named(name, value).unwrap();
    }
    let run = exec.prepare(graph, mode, &ids).unwrap();
    exec.run(run, feed, 0).unwrap();
    for &(id, what) in outputs {
        assert_close(what, &exec.read(run, id).unwrap(), want.get(id));
    }
    let memory = exec.memory(run);
    // Node by node too: every tensor the run reads, on both executors.
    let mut both = CrossCheck::new(GpuExecutor::new(gpu), CpuExecutor::new(), Tolerance::KERNEL);
    for (name, value) in params {
        both.write_named(name, value).unwrap();
    }
    let run = both.prepare(graph, mode, &ids).unwrap();
    both.run(run, feed, 0).unwrap();
    assert!(memory.planned <= memory.unshared, "{memory:?}");
}

/// Every op the IR has on small odd shapes: matmul with each transpose, broadcasting binary
/// ops, activations, dropout, layer norm, softmax and log-softmax, concat, slice, MSE, BCE with
/// logits and cross-entropy with label smoothing, with the gradient of every parameter and of the input.
#[test]
fn dense_ops_and_their_gradients_match_the_cpu() {
    let mut g = Graph::new();
    let x = g.input("x", &[5, 7]);
    let labels = g.labels("y", 5, 3);
    let target = g.input("t", &[5, 6]);
    let w1 = g.param("w1", &[6, 7]);
    let b1 = g.param("b1", &[6]);
    let gamma = g.param("gamma", &[6]);
    let beta = g.param("beta", &[6]);
    let w2 = g.param("w2", &[6, 3]);
    let h = g.matmul(x, w1, false, true).unwrap();
    let h = g.binary(Binary::Add, h, b1).unwrap();
    let h = g.layer_norm(h, gamma, beta, 1e-5).unwrap();
    let h = g.dropout(h, 0.3, 11).unwrap();
    let a = g.unary(Unary::GeluErf, h).unwrap();
    let s = g.unary(Unary::Sigmoid, h).unwrap();
    let gated = g.binary(Binary::Mul, a, s).unwrap();
    let mse = g.mse(gated, target).unwrap();
    let left = g.slice(gated, 1, 0, 2).unwrap();
    let right = g.slice(gated, 1, 3, 3).unwrap();
    let right = g.softmax(right, false).unwrap();
    let joined = g.concat(&[left, right, left], 1).unwrap(); // [5, 7]
    let gram = g.matmul(joined, x, true, false).unwrap(); // [7, 7]
    let mixed = g.matmul(x, gram, false, true).unwrap(); // [5, 7]
    let mixed = g.unary(Unary::Tanh, mixed).unwrap();
    let logits = g.matmul(mixed, w1, false, true).unwrap(); // [5, 6]
    let logits = g.matmul(logits, w2, false, false).unwrap(); // [5, 3]
    let logits = g.softmax(logits, true).unwrap();
    let ce = g.cross_entropy(logits, labels, 0.1).unwrap();
    let ratio = g.binary(Binary::Div, ce, mse).unwrap();
    let probability = g.unary(Unary::Sigmoid, target).unwrap();
    let bce = g.bce_with_logits(gated, probability).unwrap();
    let loss = g.binary(Binary::Sub, ce, ratio).unwrap();
    let loss = g.binary(Binary::Add, loss, bce).unwrap();
    let grads = backward(&mut g, loss).unwrap();

    let shapes = [("w1", 42), ("b1", 6), ("gamma", 6), ("beta", 6), ("w2", 18)];
    let params =
        shapes.iter().enumerate().map(|(i, (n, len))| (n.to_string(), values(30 + i as u64, *len, 1.0))).collect();
    let mut feed = Feed::default();
    feed.inputs.insert("x".into(), values(1, 35, 1.0));
    feed.inputs.insert("t".into(), values(2, 30, 1.0));
    feed.labels.insert("y".into(), vec![0, 2, 1, 1, 2]);
    let mut outputs = vec![(loss, "loss"), (grads.of(x).unwrap(), "dx"), (grads.of(h).unwrap(), "dh")];
    outputs.push((grads.of(target).unwrap(), "dtarget"));
    for (id, name) in [(w1, "dw1"), (b1, "db1"), (gamma, "dgamma"), (beta, "dbeta"), (w2, "dw2")] {
        outputs.push((grads.of(id).unwrap(), name));
    }
    compare(&g, Mode::Train, &outputs, &params, &feed);
}

/// A residual CNN block with batch norm, conv variants (stride, dilation, padding), both
/// poolings, the gradient of every parameter and of the input image.
fn residual_cnn(seed: u64, batch: usize) -> (Model, TensorId, TensorId) {
    let mut m = Model::new(seed);
    let x = m.graph.input("x", &[batch, 2, 9, 9]);
    let same = ConvGeometry { stride: (1, 1), padding: (1, 1), dilation: (1, 1) };
    let h = m.conv2d("stem", x, 4, (3, 3), ConvGeometry { stride: (2, 2), ..same }, false).unwrap(); // [b, 4, 5, 5]
    let h = m.batch_norm("bn", h, 1e-5, 0.1).unwrap();
    let h = m.graph.unary(Unary::Relu, h).unwrap();
    let r = m.conv2d("block.conv1", h, 4, (3, 3), same, false).unwrap();
    let r = m.graph.unary(Unary::Silu, r).unwrap();
    let r = m.conv2d("block.conv2", r, 4, (3, 3), ConvGeometry { padding: (2, 2), dilation: (2, 2), ..same }, true);
    let h = m.graph.binary(Binary::Add, h, r.unwrap()).unwrap();
    let pool = PoolGeometry { kernel: (2, 2), stride: (2, 2), padding: (1, 1), count_include_pad: false };
    let h = m.graph.max_pool2d(h, pool).unwrap(); // [b, 4, 3, 3]
    let h = m.graph.avg_pool2d(h, PoolGeometry { kernel: (3, 3), stride: (3, 3), padding: (0, 0), ..pool }).unwrap();
    let h = m.graph.flatten(h).unwrap();
    let logits = m.linear("fc", h, 4, 3, true).unwrap();
    (m, x, logits)
}

#[test]
fn residual_cnn_forward_and_every_gradient_match_the_cpu() {
    let (m, x, logits) = residual_cnn(3, 3);
    let model = Supervised::classifier(m, x, logits, 0.0).unwrap();
    let mut g = model.graph.clone();
    let grads = backward(&mut g, model.loss).unwrap();
    let mut feed = Feed::default();
    feed.inputs.insert("x".into(), values(4, 3 * 2 * 81, 1.0));
    feed.labels.insert("y".into(), vec![2, 0, 1]);
    let mut outputs =
        vec![(model.output, "logits".to_string()), (model.loss, "loss".into()), (grads.of(x).unwrap(), "dx".into())];
    outputs.extend(model.params.iter().map(|p| (p.grad, format!("d {}", p.name))));
    let outputs: Vec<(TensorId, &str)> = outputs.iter().map(|(id, s)| (*id, s.as_str())).collect();
    for mode in [Mode::Train, Mode::Eval] {
        compare(&g, mode, &outputs, &model.init.values(), &feed);
    }
}

#[test]
fn three_adam_steps_match_the_cpu_and_rerun_bit_identically() {
    let Some(gpu) = gpu() else { return };
    let build = || {
        let (m, x, logits) = residual_cnn(5, 4);
        Supervised::classifier(m, x, logits, 0.0).unwrap()
    };
    let batches: Vec<Feed> = (0..3)
        .map(|i| {
            let mut feed = Feed::default();
            feed.inputs.insert("x".into(), values(40 + i, 4 * 2 * 81, 1.0));
            feed.labels.insert("y".into(), vec![0, 1, 2, (i % 3) as u32]);
            feed
        })
        .collect();
    let training = Training::adam(1e-2);
    let mut cpu = Trainer::new(CpuExecutor::new(), &build(), training).unwrap();
    let mut first = Trainer::new(GpuExecutor::new(gpu), &build(), training).unwrap();
    let mut second = Trainer::new(GpuExecutor::new(gpu), &build(), training).unwrap();
    let (mut losses, mut again) = (Vec::new(), Vec::new());
    for feed in &batches {
        let want = cpu.train_step(feed).unwrap();
        let got = first.train_step(feed).unwrap();
        assert_close("loss", &[got.loss], &[want.loss]);
        assert_eq!(got.metric("correct"), want.metric("correct"));
        losses.push(got.loss.to_bits());
        again.push(second.train_step(feed).unwrap().loss.to_bits());
    }
    assert_eq!(losses, again, "same seed, same device: bit-identical losses");
    let (want, got) = (cpu.params().unwrap(), first.params().unwrap());
    assert!(want.contains_key("bn.running_var"));
    for (name, w) in &want {
        assert_close(&format!("{name} after 3 Adam steps"), &got[name], w);
    }
    for feed in &batches {
        let (want, got) = (cpu.evaluate(feed).unwrap(), first.evaluate(feed).unwrap());
        assert_close("eval loss (running statistics)", &[got.loss], &[want.loss]);
    }
}

#[test]
fn steps_after_the_first_allocate_nothing_and_submit_once() {
    // A device of its own: the other tests allocate on the shared one meanwhile.
    if gpu().is_none() {
        return;
    }
    let own = kernels::Gpu::open().unwrap();
    let gpu = &own;
    let (m, x, logits) = residual_cnn(6, 2);
    let model = Supervised::classifier(m, x, logits, 0.0).unwrap();
    let mut trainer = Trainer::new(GpuExecutor::new(gpu), &model, Training::adam(1e-3)).unwrap();
    let mut feed = Feed::default();
    feed.inputs.insert("x".into(), values(7, 2 * 2 * 81, 1.0));
    feed.labels.insert("y".into(), vec![1, 2]);
    trainer.train_step(&feed).unwrap();
    trainer.evaluate(&feed).unwrap();
    let (before, submissions) = (gpu.pool_stats(), gpu.submissions());
    for _ in 0..3 {
        trainer.train_step(&feed).unwrap();
        trainer.evaluate(&feed).unwrap();
    }
    assert_eq!(gpu.pool_stats(), before, "buffers created after the first step");
    // Each step and each evaluation is one submission, its loss and metrics read back with it.
    assert_eq!(gpu.submissions() - submissions, 6, "submissions of 3 training steps and 3 evaluations");
    // A step writes its images (2·2·81 f32) and labels (2 u32) and reads back its loss, the
    // count of correct answers and the gradient norm.
    assert_eq!(trainer.executor().transfers(trainer.runs().0), (2 * 2 * 81 * 4 + 2 * 4, 3 * 4));
    let (train, eval) = trainer.runs();
    let (train, eval) = (trainer.executor().memory(train), trainer.executor().memory(eval));
    println!(
        "residual CNN step: planned {} B vs {} B unshared; eval planned {} B",
        train.planned, train.unshared, eval.planned
    );
    // Buffers shared by liveness take at most two thirds of one buffer per tensor. (The bound
    // was a half while the backward ops recomputed forwards: their scratch shared easily.)
    assert!(train.planned * 3 < train.unshared * 2, "{train:?}");
}

#[test]
fn bad_feeds_are_errors_on_the_gpu_too() {
    let Some(gpu) = gpu() else { return };
    let (m, x, logits) = residual_cnn(8, 2);
    let model = Supervised::classifier(m, x, logits, 0.0).unwrap();
    let mut trainer = Trainer::new(GpuExecutor::new(gpu), &model, Training::adam(1e-3)).unwrap();
    let mut feed = Feed::default();
    feed.inputs.insert("x".into(), values(7, 2 * 2 * 81, 1.0));
    feed.labels.insert("y".into(), vec![1, 3]);
    let err = trainer.train_step(&feed).unwrap_err().to_string();
    assert!(err.contains("target 3 is not a class index below 3"), "{err}");
    feed.inputs.insert("x".into(), values(7, 10, 1.0));
    let err = trainer.evaluate(&feed).unwrap_err().to_string();
    assert!(err.contains("fed 10 values"), "{err}");
    assert_eq!(trainer.steps(), 0);
}

/// A tensor no buffer of this adapter can hold (one more row than the limit allows) is
/// refused when the run is prepared, naming its layer, its size and the limit, with advice;
/// nothing is allocated for it.
#[test]
fn a_tensor_beyond_the_adapters_limits_is_refused_naming_its_layer() {
    let Some(gpu) = gpu() else { return };
    let limits = gpu.limits();
    let limit = limits.max_storage_buffer_binding_size.min(limits.max_buffer_size);
    let n = ((limit / 4) as f64).sqrt() as usize + 1;
    let mut g = Graph::new();
    let (column, row) = (g.input("column", &[n, 1]), g.input("row", &[1, n]));
    let outer = g.binary(Binary::Add, column, row).unwrap();
    g.claim_for_layer(2, "outer");
    let message = GpuExecutor::new(gpu).prepare(&g, Mode::Eval, &[outer]).expect_err("refused").to_string();
    let bytes = format!("{} bytes exceed the adapter's limit of {limit} bytes", n * n * 4);
    for part in [&format!("layer \"outer\" (binary#2 output 0 of shape [{n}, {n}])"), &bytes, "--device cpu"] {
        assert!(message.contains(part), "{message} lacks {part}");
    }
}

#[test]
fn the_cross_check_names_the_first_node_that_differs() {
    let mut g = Graph::new();
    let x = g.input("x", &[2, 3]);
    let w = g.param("w", &[4, 3]);
    let h = g.matmul(x, w, false, true).unwrap();
    g.set_label(h, "fc");
    let y = g.unary(Unary::Tanh, h).unwrap();
    let mut feed = Feed::default();
    feed.inputs.insert("x".into(), values(1, 6, 1.0));
    let mut both = CrossCheck::new(CpuExecutor::new(), CpuExecutor::new(), Tolerance::KERNEL);
    both.write_named("w", &values(2, 12, 1.0)).unwrap();
    let run = both.prepare(&g, Mode::Eval, &[y]).unwrap();
    both.run(run, &feed, 0).unwrap();
    // The same executor twice agrees; a weight changed on one side shows at the product.
    let mut skewed = CrossCheck::new(CpuExecutor::new(), CpuExecutor::new(), Tolerance::KERNEL);
    skewed.write_named("w", &values(2, 12, 1.0)).unwrap();
    let run = skewed.prepare(&g, Mode::Eval, &[y]).unwrap();
    skewed.reference_mut().write_named("w", &values(3, 12, 1.0)).unwrap();
    let err = skewed.run(run, &feed, 0).unwrap_err().to_string();
    assert!(err.starts_with("fc: output 0 element 0: cpu gives"), "{err}");
}

/// Every shipped architecture (the zoo's references of the shipped configs: the CNN, the LSTM
/// and GRU row classifiers, the ViT, the character LSTM and GPT, the last on windows of 16):
/// logits, loss and every parameter's gradient on the GPU as on the CPU, node by node.
#[test]
fn every_shipped_architecture_matches_the_cpu() {
    use graph::zoo;
    let (batch, context, vocab) = (2, 16, 78);
    let models = [
        ("cnn", zoo::mnist_cnn(1, batch)),
        ("lstm-mnist", zoo::mnist_rnn(graph::CellKind::Lstm, 1, batch)),
        ("gru-mnist", zoo::mnist_rnn(graph::CellKind::Gru, 1, batch)),
        ("vit-mnist", zoo::mnist_vit(1, batch)),
        ("char-lstm", zoo::char_lstm(1, batch, context, vocab)),
        ("gpt-char", zoo::char_gpt(1, batch, context, vocab)),
    ];
    for (name, built) in models {
        let built = built.unwrap();
        let text = name.starts_with("char") || name.starts_with("gpt");
        let model = Supervised::classifier(built.model, built.input, built.logits, 0.0).unwrap();
        let mut feed = Feed::default();
        let ids = |seed: u64, n: usize| values(seed, n, 1.0).iter().map(|v| ((v + 1.0) * 38.9) as u32 % 78).collect();
        if text {
            feed.labels.insert("x".into(), ids(7, batch * context));
            feed.labels.insert("y".into(), ids(8, batch * context));
        } else {
            feed.inputs.insert("x".into(), values(7, batch * 784, 1.0));
            feed.labels.insert("y".into(), vec![3, 8]);
        }
        let mut outputs = vec![(model.output, format!("{name} logits")), (model.loss, format!("{name} loss"))];
        outputs.extend(model.params.iter().map(|p| (p.grad, format!("{name}: d {}", p.name))));
        let outputs: Vec<(TensorId, &str)> = outputs.iter().map(|(id, s)| (*id, s.as_str())).collect();
        compare(&model.graph, Mode::Train, &outputs, &model.init.values(), &feed);
    }
}

on_the_gl_backend_too!();
