//! The self-attention layer against torch.nn.MultiheadAttention (causal, and with a
//! key-padding mask) on both executors: output and the gradients of the input and every
//! parameter (fixture from scripts/torch_attention.py); nn.TransformerEncoderLayer likewise
//! (scripts/torch_encoder.py) and nn.TransformerDecoderLayer (scripts/torch_decoder.py); and
//! causality on both executors.

mod common;

use std::collections::HashMap;

use common::{assert_close, gpu, values};
use graph::{Executor, Feed, GpuExecutor, Mode, Model, TensorId, backward};
use kernels::Binary;

fn numbers(v: &serde_json::Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

/// Self-attention on x [B, T, E] with loss = sum(y * r): the model, y, and what a test reads.
fn layer(
    batch: usize,
    steps: usize,
    embed: usize,
    heads: usize,
    causal: bool,
    masked: bool,
) -> (Model, TensorId, Vec<(String, TensorId)>) {
    let mut m = Model::new(0);
    let x = m.graph.input("x", &[batch, steps, embed]);
    let mask = masked.then(|| m.graph.indices("key_mask", &[batch, steps], 2));
    let y = m.self_attention("attn", x, heads, causal, mask).unwrap();
    let r = m.graph.input("r", &[batch, steps, embed]);
    let weighted = m.graph.binary(Binary::Mul, y, r).unwrap();
    let loss = m.graph.sum(weighted).unwrap();
    let grads = backward(&mut m.graph, loss).unwrap();
    let mut reads = vec![("y".to_string(), y), ("dx".to_string(), grads.of(x).unwrap())];
    for name in m.init.names().map(str::to_string).collect::<Vec<_>>() {
        reads.push((name.clone(), grads.of(m.graph.find_param(&name).unwrap()).unwrap()));
    }
    (m, y, reads)
}

fn run_both(
    m: &Model,
    reads: &[(String, TensorId)],
    params: &HashMap<String, Vec<f32>>,
    feed: &Feed,
) -> Vec<HashMap<String, Vec<f32>>> {
    let ids: Vec<TensorId> = reads.iter().map(|r| r.1).collect();
    let cpu = graph::evaluate(&m.graph, Mode::Train, params, feed, &ids).unwrap();
    let mut out = vec![reads.iter().map(|(n, id)| (n.clone(), cpu.get(*id).to_vec())).collect()];
    if let Some(gpu) = gpu() {
        let mut exec = GpuExecutor::new(gpu);
        params.iter().for_each(|(name, value)| exec.write_named(name, value).unwrap());
        let run = exec.prepare(&m.graph, Mode::Train, &ids).unwrap();
        exec.run(run, feed, 0).unwrap();
        out.push(reads.iter().map(|(n, id)| (n.clone(), exec.read(run, *id).unwrap())).collect());
    }
    out
}

#[test]
fn self_attention_matches_pytorch_on_both_executors() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/attention.json")).unwrap();
    let fixture: serde_json::Value = serde_json::from_str(&text).unwrap();
    let n = |k: &str| fixture[k].as_u64().unwrap() as usize;
    for golden in fixture["cases"].as_array().unwrap() {
        let causal = golden["causal"].as_bool().unwrap();
        let masked = !golden["key_mask"].is_null();
        let (m, _, reads) = layer(n("batch"), n("steps"), n("embed"), n("heads"), causal, masked);
        let params: HashMap<String, Vec<f32>> =
            golden["params"].as_object().unwrap().iter().map(|(k, v)| (format!("attn.{k}"), numbers(v))).collect();
        let mut feed = Feed::default();
        feed.inputs.insert("x".into(), numbers(&golden["x"]));
        feed.inputs.insert("r".into(), numbers(&golden["r"]));
        if masked {
            let mask = golden["key_mask"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
            feed.labels.insert("key_mask".into(), mask);
        }
        let what = if causal { "causal" } else { "key-padded" };
        for (device, got) in ["cpu", "gpu"].iter().zip(run_both(&m, &reads, &params, &feed)) {
            assert_close(&format!("{what} {device} y"), &got["y"], &numbers(&golden["y"]));
            assert_close(&format!("{what} {device} dx"), &got["dx"], &numbers(&golden["dx"]));
            for (name, grad) in golden["grads"].as_object().unwrap() {
                assert_close(&format!("{what} {device} d{name}"), &got[&format!("attn.{name}")], &numbers(grad));
            }
        }
    }
}

/// Changing the input at step t + 1 leaves a causal layer's outputs at steps <= t as they were.
#[test]
fn causal_attention_does_not_look_ahead_on_either_executor() {
    let (batch, steps, embed) = (2, 7, 12);
    let (m, y, _) = layer(batch, steps, embed, 3, true, false);
    let params = m.init.values();
    let reads = [("y".to_string(), y)];
    let x = values(5, batch * steps * embed, 1.0);
    let feed_with = |x: &[f32]| {
        let mut feed = Feed::default();
        feed.inputs.insert("x".into(), x.to_vec());
        feed.inputs.insert("r".into(), vec![0.0; x.len()]);
        feed
    };
    let before = run_both(&m, &reads, &params, &feed_with(&x));
    for t in 0..steps - 1 {
        let mut changed = x.clone();
        for b in 0..batch {
            changed[(b * steps + t + 1) * embed..][..embed].iter_mut().for_each(|v| *v += 1.0);
        }
        for (device, (after, before)) in
            run_both(&m, &reads, &params, &feed_with(&changed)).iter().zip(&before).enumerate()
        {
            for b in 0..batch {
                let upto = |v: &[f32]| v[b * steps * embed..][..(t + 1) * embed].to_vec();
                assert_eq!(
                    upto(&after["y"]),
                    upto(&before["y"]),
                    "device {device}: step {} changed an output at or before {t}",
                    t + 1
                );
                let next = |v: &[f32]| v[(b * steps + t + 1) * embed..][..embed].to_vec();
                assert_ne!(next(&after["y"]), next(&before["y"]), "the changed step's own output moved");
            }
        }
    }
}

/// nn.TransformerEncoderLayer, pre-norm with GELU (causal) and post-norm with ReLU, on both
/// executors (fixture from scripts/torch_encoder.py).
#[test]
fn encoder_layers_match_pytorch_on_both_executors() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/encoder.json")).unwrap();
    let fixture: serde_json::Value = serde_json::from_str(&text).unwrap();
    let n = |k: &str| fixture[k].as_u64().unwrap() as usize;
    for golden in fixture["cases"].as_array().unwrap() {
        let (norm_first, causal) = (golden["norm_first"].as_bool().unwrap(), golden["causal"].as_bool().unwrap());
        let activation = if golden["activation"] == "gelu" { kernels::Unary::GeluErf } else { kernels::Unary::Relu };
        let spec = graph::EncoderLayer {
            heads: n("heads"),
            feedforward: n("feedforward"),
            activation,
            dropout: 0.0,
            norm_first,
            eps: 1e-5,
        };
        let mut m = Model::new(0);
        let x = m.graph.input("x", &[n("batch"), n("steps"), n("d")]);
        let y = m.encoder_layer("enc", x, &spec, causal, None).unwrap();
        let r = m.graph.input("r", &[n("batch"), n("steps"), n("d")]);
        let weighted = m.graph.binary(Binary::Mul, y, r).unwrap();
        let loss = m.graph.sum(weighted).unwrap();
        let grads = backward(&mut m.graph, loss).unwrap();
        let mut reads = vec![("y".to_string(), y), ("dx".to_string(), grads.of(x).unwrap())];
        let mut names: Vec<String> = m.init.names().map(str::to_string).collect();
        for name in &names {
            reads.push((name.clone(), grads.of(m.graph.find_param(name).unwrap()).unwrap()));
        }
        let mut theirs: Vec<String> =
            golden["params"].as_object().unwrap().keys().map(|k| format!("enc.{k}")).collect();
        names.sort();
        theirs.sort();
        assert_eq!(names, theirs, "parameter names");
        let params: HashMap<String, Vec<f32>> =
            golden["params"].as_object().unwrap().iter().map(|(k, v)| (format!("enc.{k}"), numbers(v))).collect();
        let mut feed = Feed::default();
        feed.inputs.insert("x".into(), numbers(&golden["x"]));
        feed.inputs.insert("r".into(), numbers(&golden["r"]));
        let what = if norm_first { "pre-norm" } else { "post-norm" };
        for (device, got) in ["cpu", "gpu"].iter().zip(run_both(&m, &reads, &params, &feed)) {
            assert_close(&format!("{what} {device} y"), &got["y"], &numbers(&golden["y"]));
            assert_close(&format!("{what} {device} dx"), &got["dx"], &numbers(&golden["dx"]));
            for (name, grad) in golden["grads"].as_object().unwrap() {
                assert_close(&format!("{what} {device} d{name}"), &got[&format!("enc.{name}")], &numbers(grad));
            }
        }
    }
}

/// nn.TransformerDecoderLayer (causal self-attention, cross-attention to a memory, with and
/// without a memory key-padding mask; pre-norm GELU and post-norm ReLU) on both executors,
/// the memory's gradient included (fixture from scripts/torch_decoder.py).
#[test]
fn decoder_layers_match_pytorch_on_both_executors() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/decoder.json")).unwrap();
    let fixture: serde_json::Value = serde_json::from_str(&text).unwrap();
    let n = |k: &str| fixture[k].as_u64().unwrap() as usize;
    for golden in fixture["cases"].as_array().unwrap() {
        let norm_first = golden["norm_first"].as_bool().unwrap();
        let activation = if golden["activation"] == "gelu" { kernels::Unary::GeluErf } else { kernels::Unary::Relu };
        let spec = graph::EncoderLayer {
            heads: n("heads"),
            feedforward: n("feedforward"),
            activation,
            dropout: 0.0,
            norm_first,
            eps: 1e-5,
        };
        let masked = !golden["memory_mask"].is_null();
        let mut m = Model::new(0);
        let x = m.graph.input("x", &[n("batch"), n("steps"), n("d")]);
        let memory = m.graph.input("memory", &[n("batch"), n("memory"), n("d")]);
        let mask = masked.then(|| m.graph.indices("memory_mask", &[n("batch"), n("memory")], 2));
        let y = m.decoder_layer("dec", x, memory, &spec, true, mask).unwrap();
        let r = m.graph.input("r", &[n("batch"), n("steps"), n("d")]);
        let weighted = m.graph.binary(Binary::Mul, y, r).unwrap();
        let loss = m.graph.sum(weighted).unwrap();
        let grads = backward(&mut m.graph, loss).unwrap();
        let mut reads = vec![
            ("y".to_string(), y),
            ("dx".to_string(), grads.of(x).unwrap()),
            ("dmemory".to_string(), grads.of(memory).unwrap()),
        ];
        let names: Vec<String> = m.init.names().map(str::to_string).collect();
        for name in &names {
            reads.push((name.clone(), grads.of(m.graph.find_param(name).unwrap()).unwrap()));
        }
        assert_eq!(names.len(), golden["params"].as_object().unwrap().len(), "parameter count");
        let params: HashMap<String, Vec<f32>> =
            golden["params"].as_object().unwrap().iter().map(|(k, v)| (format!("dec.{k}"), numbers(v))).collect();
        let mut feed = Feed::default();
        for key in ["x", "memory", "r"] {
            feed.inputs.insert(key.into(), numbers(&golden[key]));
        }
        if masked {
            let mask = golden["memory_mask"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
            feed.labels.insert("memory_mask".into(), mask);
        }
        let what = if norm_first { "pre-norm" } else { "post-norm, masked memory" };
        for (device, got) in ["cpu", "gpu"].iter().zip(run_both(&m, &reads, &params, &feed)) {
            for key in ["y", "dx", "dmemory"] {
                assert_close(&format!("{what} {device} {key}"), &got[key], &numbers(&golden[key]));
            }
            for (name, grad) in golden["grads"].as_object().unwrap() {
                assert_close(&format!("{what} {device} d{name}"), &got[&format!("dec.{name}")], &numbers(grad));
            }
        }
    }
}

/// At T = 1024 a training step of self-attention (forward and every gradient) plans no T × T
/// tensor: its largest buffer is a [T, 3E] projection, and the plan grows linearly with T
/// (doubling T from 512 doubles it), not with T² as stored scores would.
#[test]
fn attention_at_t1024_plans_no_score_matrix() {
    let (embed, heads) = (64, 4);
    let planned = |steps: usize| {
        let (m, _, reads) = layer(1, steps, embed, heads, true, false);
        let outputs: Vec<TensorId> = reads.iter().map(|r| r.1).collect();
        let plan = graph::Plan::new(&m.graph, &outputs);
        (plan.planned_elements(), plan.buffers.iter().copied().max().unwrap())
    };
    let ((half, _), (full, largest)) = (planned(512), planned(1024));
    assert!(largest <= 3 * 1024 * embed, "largest buffer {largest} elements; one head's scores are {}", 1024 * 1024);
    assert!(full as f64 / half as f64 <= 2.01, "planned {half} elements at T = 512 and {full} at T = 1024");
    eprintln!(
        "T = 1024, E = {embed}, {heads} heads: {full} elements planned ({:.2} MiB; T = 512: {half}), largest buffer {largest}; the scores would be {}",
        full as f64 * 4.0 / (1 << 20) as f64,
        heads * 1024 * 1024
    );
}
