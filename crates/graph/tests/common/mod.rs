//! Shared by the graph tests: the one GPU, seeded data, and the comparison the GPU executor
//! is held to.
#![allow(dead_code)] // each test binary uses its own part of this module

use std::sync::OnceLock;

use graph::{Feed, Model, Supervised};
use kernels::{Gpu, Unary};

/// A test that runs every other test of the binary again on wgpu's GL backend, in parallel
/// (`kernels::rerun_on_gl`): each binary with GPU tests has one.
#[allow(unused_macros)] // the binaries without GPU tests
macro_rules! on_the_gl_backend_too {
    () => {
        #[test]
        fn every_test_here_passes_on_the_gl_backend_too() {
            kernels::rerun_on_gl("every_test_here_passes_on_the_gl_backend_too");
        }
    };
}

/// The GPU the tests use. With no adapter a test fails saying how to get one, unless
/// `DLCLI_SKIP_GPU=1`, which skips it, counted (`kernels::no_adapter`).
pub fn gpu() -> Option<&'static Gpu> {
    static GPU: OnceLock<Result<Gpu, String>> = OnceLock::new();
    match GPU.get_or_init(|| Gpu::open().map_err(|e| e.to_string())) {
        Ok(gpu) => Some(gpu),
        Err(e) => {
            let test = std::thread::current().name().unwrap_or("a graph test").to_string();
            kernels::no_adapter(&test, e);
            None
        }
    }
}

/// A small deterministic generator for test data, uniform in ±scale.
pub fn values(seed: u64, n: usize, scale: f32) -> Vec<f32> {
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

/// Every value within the kernels' [`kernels::Tolerance`] of its reference.
pub fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(&i) = kernels::Tolerance::KERNEL.outside(got, want).first() {
        panic!("{what}[{i}]: got {}, want {} ({:?})", got[i], want[i], kernels::Tolerance::KERNEL);
    }
}

/// Every tensor of `graph`: what a test asks of a run when it looks at everything.
pub fn every_tensor(graph: &graph::Graph) -> Vec<graph::TensorId> {
    graph.nodes().flat_map(|(id, n)| (0..n.outputs.len()).map(move |slot| id.out(slot))).collect()
}

/// Runs every node of a graph in one mode, as the tests of gradients look at a graph.
pub struct Everything<'g> {
    pub graph: &'g graph::Graph,
    pub mode: graph::Mode,
}

impl Everything<'_> {
    pub fn run(
        &self,
        params: &std::collections::HashMap<String, Vec<f32>>,
        feed: &graph::Feed,
    ) -> graph::Result<graph::Values> {
        graph::evaluate(self.graph, self.mode, params, feed, &every_tensor(self.graph))
    }
}

// ----- PyTorch golden fixtures (`tests/fixtures/*.json`, written by `scripts/torch_*.py`) -----

type Named = std::collections::HashMap<String, Vec<f32>>;

/// The fixture `tests/fixtures/NAME.json`.
pub fn fixture(name: &str) -> serde_json::Value {
    let path = format!("{}/tests/fixtures/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// A fixture's array of numbers.
pub fn numbers(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

/// Gives `model` the loss sum(y · r), r an input named "r" of y's shape (as the fixtures'
/// scripts do), and returns the loss and what a golden test reads: "y", "d<name>" for each of
/// `inputs`, and every parameter's gradient under the parameter's name.
pub fn weighted_sum(
    model: &mut graph::Model,
    y: graph::TensorId,
    inputs: &[(&str, graph::TensorId)],
) -> (graph::TensorId, Vec<(String, graph::TensorId)>) {
    let g = &mut model.graph;
    let shape = g.shape(y).to_vec();
    let r = g.input("r", &shape);
    let weighted = g.binary(kernels::Binary::Mul, y, r).unwrap();
    let loss = g.sum(weighted).unwrap();
    let grads = graph::backward(g, loss).unwrap();
    let mut reads = vec![("y".to_string(), y)];
    reads.extend(inputs.iter().map(|&(name, x)| (format!("d{name}"), grads.of(x).unwrap())));
    for name in model.init.names() {
        reads.push((name.to_string(), grads.of(model.graph.find_param(name).unwrap()).unwrap()));
    }
    (loss, reads)
}

/// What the CPU executor and, where there is a GPU, the GPU executor give for `reads`, each
/// with the executor's name.
pub fn on_both(
    graph: &graph::Graph,
    reads: &[(String, graph::TensorId)],
    params: &Named,
    feed: &graph::Feed,
) -> Vec<(&'static str, Named)> {
    use graph::Executor;
    let ids: Vec<graph::TensorId> = reads.iter().map(|r| r.1).collect();
    let cpu = graph::evaluate(graph, graph::Mode::Train, params, feed, &ids).unwrap();
    let mut out = vec![("cpu", reads.iter().map(|(n, id)| (n.clone(), cpu.get(*id).to_vec())).collect())];
    if let Some(gpu) = gpu() {
        let mut exec = graph::GpuExecutor::new(gpu);
        params.iter().for_each(|(name, value)| exec.write_named(name, value).unwrap());
        let run = exec.prepare(graph, graph::Mode::Train, &ids).unwrap();
        exec.run(run, feed, 0).unwrap();
        out.push(("gpu", reads.iter().map(|(n, id)| (n.clone(), exec.read(run, *id).unwrap())).collect()));
    }
    out
}

/// The golden case's parameters under `prefix.`, after checking that `model` declares exactly
/// those names (torch's `state_dict` keys).
pub fn golden_params(model: &graph::Model, golden: &serde_json::Value, prefix: &str) -> Named {
    let params: Named =
        golden["params"].as_object().unwrap().iter().map(|(k, v)| (format!("{prefix}.{k}"), numbers(v))).collect();
    let mut ours: Vec<&str> = model.init.names().collect();
    let mut theirs: Vec<&str> = params.keys().map(String::as_str).collect();
    ours.sort();
    theirs.sort();
    assert_eq!(ours, theirs, "parameter names");
    params
}

/// Every read of [`weighted_sum`] against the golden case: "y" and the input gradients by
/// their keys, each parameter's gradient from its "grads".
pub fn assert_golden(what: &str, got: &Named, golden: &serde_json::Value, prefix: &str) {
    for (name, value) in got {
        let want = match name.strip_prefix(&format!("{prefix}.")) {
            Some(param) => numbers(&golden["grads"][param]),
            None => numbers(&golden[name.as_str()]),
        };
        assert_close(&format!("{what} {name}"), value, &want);
    }
}

/// Rows of [`two_layers`]'s input.
pub const ROWS: usize = 4;

/// x [4, 3] -> layer "a" (linear 3 -> 5) -> relu -> layer "b" (linear 5 -> 1), regressed on y,
/// each layer claiming its nodes as a config's layers do.
pub fn two_layers() -> Supervised {
    let mut m = Model::new(7);
    let x = m.graph.input("x", &[ROWS, 3]);
    let first = m.graph.len();
    let h = m.linear("a", x, 3, 5, true).unwrap();
    let h = m.graph.unary(Unary::Relu, h).unwrap();
    m.graph.claim_for_layer(first, "a");
    let first = m.graph.len();
    let y = m.linear("b", h, 5, 1, true).unwrap();
    m.graph.claim_for_layer(first, "b");
    Supervised::regressor(m, x, y).unwrap()
}

/// A feed of [`two_layers`]: `x` and every target `y`.
pub fn feed(x: Vec<f32>, y: f32) -> Feed {
    let mut feed = Feed::default();
    feed.inputs.insert("x".into(), x);
    feed.inputs.insert("y".into(), vec![y; ROWS]);
    feed.inputs.insert("w".into(), vec![1.0; ROWS]);
    feed
}
