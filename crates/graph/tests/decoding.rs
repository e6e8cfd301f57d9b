//! Token-by-token decoding gives what the whole window gives: a GPT's KV cache and an LSTM's
//! carried state reproduce the full forward's logits at every position, on both executors,
//! and a GPT window that outgrows its context starts again from its second half.

use std::collections::HashMap;

use common::assert_close;
use graph::{
    CellKind, CpuExecutor, Decoder, Executor, Feed, GpuExecutor, Mode, Model, Recurrent, SequenceOutput, TensorId,
    Transformer, evaluate,
};
use kernels::Unary;

#[macro_use]
mod common;

const VOCAB: usize = 11;
const CONTEXT: usize = 6;

/// A small causal Transformer language model with its head tied to the embedding.
fn gpt(m: &mut Model, x: TensorId) -> TensorId {
    let spec = Transformer {
        layers: 2,
        causal: true,
        heads: 2,
        feedforward: 24,
        activation: Unary::GeluErf,
        dropout: 0.0,
        norm_first: true,
        eps: 1e-5,
    };
    let h = m.embedding("embed", x, (VOCAB, 8), None, 0.5).unwrap();
    let mut h = m.position("pos", h, true).unwrap();
    for i in 0..2 {
        h = m.encoder_layer(&format!("blocks.{i}"), h, &spec, None).unwrap();
    }
    let h = m.layer_norm("norm", h, 1e-5).unwrap();
    m.tied_linear("head", h, "embed.weight", true).unwrap()
}

/// A two-layer LSTM language model.
fn lstm(m: &mut Model, x: TensorId) -> TensorId {
    let h = m.embedding("embed", x, (VOCAB, 5), None, 1.0).unwrap();
    let spec =
        Recurrent { hidden: 7, layers: 2, bidirectional: false, dropout: 0.0, r#return: SequenceOutput::Sequence };
    let h = m.recurrent("lstm", h, CellKind::Lstm, &spec).unwrap().sequence;
    m.linear("head", h, 7, VOCAB, true).unwrap()
}

/// The logits [T, VOCAB] of `tokens` through `build` at once, and the parameters it drew.
fn whole(build: fn(&mut Model, TensorId) -> TensorId, tokens: &[u32]) -> (Vec<f32>, HashMap<String, Vec<f32>>) {
    let mut m = Model::new(3);
    let x = m.graph.indices("x", &[1, tokens.len()], VOCAB);
    let logits = build(&mut m, x);
    let params = m.init.values();
    let mut feed = Feed::default();
    feed.labels.insert("x".into(), tokens.to_vec());
    let values = evaluate(&m.graph, Mode::Eval, &params, &feed, &[logits]).unwrap();
    (values.get(logits).to_vec(), params)
}

/// The logits after each of `tokens`, pushed one at a time through `build` for decoding.
fn decoded(
    exec: impl Executor,
    build: fn(&mut Model, TensorId) -> TensorId,
    params: &HashMap<String, Vec<f32>>,
    tokens: &[u32],
) -> Vec<Vec<f32>> {
    let mut m = Model::for_decoding(3, CONTEXT);
    let x = m.graph.indices("x", &[1, 1], VOCAB);
    let logits = build(&mut m, x);
    let decoding = m.decoding.take().unwrap();
    let mut decoder = Decoder::new(exec, &m.graph, logits, decoding, params).unwrap();
    tokens.iter().map(|&t| decoder.push(t).unwrap()).collect()
}

/// Runs `check` with a maker of each executor: the CPU one, and the GPU one where there is an
/// adapter.
fn on_each_executor(check: impl Fn(&dyn Fn() -> Box<dyn Executor>)) {
    check(&|| Box::new(CpuExecutor::new()));
    if let Some(gpu) = common::gpu() {
        check(&|| Box::new(GpuExecutor::new(gpu)));
    }
}

#[test]
fn the_kv_cache_gives_the_whole_windows_logits() {
    let tokens = [3, 1, 4, 1, 5, 9, 2, 6, 5];
    let (full, params) = whole(gpt, &tokens[..CONTEXT]);
    on_each_executor(|exec| {
        let steps = decoded(exec(), gpt, &params, &tokens);
        for (t, step) in steps.iter().enumerate().take(CONTEXT) {
            assert_close(&format!("position {t}"), step, &full[t * VOCAB..(t + 1) * VOCAB]);
        }
        // The seventh token outgrows the context: the window starts again from its second half
        // (tokens 3..) at position 0, so the last logits are those of that window.
        let (restarted, _) = whole(gpt, &tokens[CONTEXT / 2..]);
        let last = tokens.len() - CONTEXT / 2 - 1;
        assert_close("after the restart", &steps[tokens.len() - 1], &restarted[last * VOCAB..(last + 1) * VOCAB]);
    });
}

#[test]
fn carried_lstm_state_gives_the_whole_sequences_logits() {
    // A recurrent model has no context limit: nine tokens carry on past CONTEXT.
    let tokens = [3, 1, 4, 1, 5, 9, 2, 6, 5];
    let (full, params) = whole(lstm, &tokens);
    on_each_executor(|exec| {
        for (t, step) in decoded(exec(), lstm, &params, &tokens).iter().enumerate() {
            assert_close(&format!("step {t}"), step, &full[t * VOCAB..(t + 1) * VOCAB]);
        }
    });
}

#[test]
fn what_cannot_decode_token_by_token_is_named() {
    let mut m = Model::for_decoding(0, CONTEXT);
    let x = m.graph.input("x", &[1, 1, 4]);
    let spec =
        Recurrent { hidden: 3, layers: 1, bidirectional: true, dropout: 0.0, r#return: SequenceOutput::Sequence };
    let err = m.recurrent("rnn", x, CellKind::Gru, &spec).unwrap_err().to_string();
    assert!(err.contains("rnn") && err.contains("bidirectional"), "{err}");
    let err = m.self_attention("attn", x, 2, false, None).unwrap_err().to_string();
    assert!(err.contains("only causal self-attention"), "{err}");
}

on_the_gl_backend_too!();
