//! The self-attention layer against torch.nn.MultiheadAttention (causal, and with a
//! key-padding mask) on both executors: output and the gradients of the input and every
//! parameter (fixture from scripts/torch_attention.py); nn.TransformerTransformer likewise
//! (scripts/torch_encoder.py) and nn.TransformerDecoderLayer (scripts/torch_decoder.py); and
//! causality on both executors.

mod common;

use common::{assert_golden, fixture, golden_params, numbers, on_both, values, weighted_sum};
use graph::{Feed, Model, TensorId, Transformer};
use kernels::Unary;

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
    let (_, reads) = weighted_sum(&mut m, y, &[("x", x)]);
    (m, y, reads)
}

/// A golden case's f32 inputs and, under `mask`, its u32 mask when it has one.
fn golden_feed(golden: &serde_json::Value, inputs: &[&str], mask: &str) -> Feed {
    let mut feed = Feed::default();
    for &key in inputs.iter().chain(&["r"]) {
        feed.inputs.insert(key.into(), numbers(&golden[key]));
    }
    if let Some(m) = golden[mask].as_array() {
        feed.labels.insert(mask.into(), m.iter().map(|v| v.as_u64().unwrap() as u32).collect());
    }
    feed
}

/// The layer spec of an encoder or decoder fixture case.
fn golden_layer(fixture: &serde_json::Value, golden: &serde_json::Value) -> Transformer {
    let n = |k: &str| fixture[k].as_u64().unwrap() as usize;
    Transformer {
        layers: 1,
        causal: golden["causal"].as_bool().unwrap_or(true),
        heads: n("heads"),
        feedforward: n("feedforward"),
        activation: if golden["activation"] == "gelu" { Unary::GeluErf } else { Unary::Relu },
        dropout: 0.0,
        norm_first: golden["norm_first"].as_bool().unwrap(),
        eps: 1e-5,
    }
}

#[test]
fn self_attention_matches_pytorch_on_both_executors() {
    let fixture = fixture("attention");
    let n = |k: &str| fixture[k].as_u64().unwrap() as usize;
    for golden in fixture["cases"].as_array().unwrap() {
        let causal = golden["causal"].as_bool().unwrap();
        let masked = !golden["key_mask"].is_null();
        let (m, _, reads) = layer(n("batch"), n("steps"), n("embed"), n("heads"), causal, masked);
        let params = golden_params(&m, golden, "attn");
        let feed = golden_feed(golden, &["x"], "key_mask");
        let what = if causal { "causal" } else { "key-padded" };
        for (device, got) in on_both(&m.graph, &reads, &params, &feed) {
            assert_golden(&format!("{what} {device}"), &got, golden, "attn");
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
    let before = on_both(&m.graph, &reads, &params, &feed_with(&x));
    for t in 0..steps - 1 {
        let mut changed = x.clone();
        for b in 0..batch {
            changed[(b * steps + t + 1) * embed..][..embed].iter_mut().for_each(|v| *v += 1.0);
        }
        for ((device, after), (_, before)) in
            on_both(&m.graph, &reads, &params, &feed_with(&changed)).iter().zip(&before)
        {
            for b in 0..batch {
                let upto = |v: &[f32]| v[b * steps * embed..][..(t + 1) * embed].to_vec();
                assert_eq!(
                    upto(&after["y"]),
                    upto(&before["y"]),
                    "{device}: step {} changed an output at or before {t}",
                    t + 1
                );
                let next = |v: &[f32]| v[(b * steps + t + 1) * embed..][..embed].to_vec();
                assert_ne!(next(&after["y"]), next(&before["y"]), "the changed step's own output moved");
            }
        }
    }
}

/// nn.TransformerTransformer, pre-norm with GELU (causal) and post-norm with ReLU, on both
/// executors (fixture from scripts/torch_encoder.py).
#[test]
fn encoder_layers_match_pytorch_on_both_executors() {
    let fixture = fixture("encoder");
    let n = |k: &str| fixture[k].as_u64().unwrap() as usize;
    for golden in fixture["cases"].as_array().unwrap() {
        let spec = golden_layer(&fixture, golden);
        let mut m = Model::new(0);
        let x = m.graph.input("x", &[n("batch"), n("steps"), n("d")]);
        let y = m.encoder_layer("enc", x, &spec, None).unwrap();
        let (_, reads) = weighted_sum(&mut m, y, &[("x", x)]);
        let params = golden_params(&m, golden, "enc");
        let feed = golden_feed(golden, &["x"], "key_mask");
        let what = if spec.norm_first { "pre-norm" } else { "post-norm" };
        for (device, got) in on_both(&m.graph, &reads, &params, &feed) {
            assert_golden(&format!("{what} {device}"), &got, golden, "enc");
        }
    }
}

/// nn.TransformerDecoderLayer (causal self-attention, cross-attention to a memory, with and
/// without a memory key-padding mask; pre-norm GELU and post-norm ReLU) on both executors,
/// the memory's gradient included (fixture from scripts/torch_decoder.py).
#[test]
fn decoder_layers_match_pytorch_on_both_executors() {
    let fixture = fixture("decoder");
    let n = |k: &str| fixture[k].as_u64().unwrap() as usize;
    for golden in fixture["cases"].as_array().unwrap() {
        let spec = golden_layer(&fixture, golden);
        let masked = !golden["memory_mask"].is_null();
        let mut m = Model::new(0);
        let x = m.graph.input("x", &[n("batch"), n("steps"), n("d")]);
        let memory = m.graph.input("memory", &[n("batch"), n("memory"), n("d")]);
        let mask = masked.then(|| m.graph.indices("memory_mask", &[n("batch"), n("memory")], 2));
        let y = m.decoder_layer("dec", x, memory, &spec, mask).unwrap();
        let (_, reads) = weighted_sum(&mut m, y, &[("x", x), ("memory", memory)]);
        let params = golden_params(&m, golden, "dec");
        let feed = golden_feed(golden, &["x", "memory"], "memory_mask");
        let what = if spec.norm_first { "pre-norm" } else { "post-norm, masked memory" };
        for (device, got) in on_both(&m.graph, &reads, &params, &feed) {
            assert_golden(&format!("{what} {device}"), &got, golden, "dec");
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
