//! Saliency of sequence models against finite differences: per step and feature for a
//! series, and per token (the norm of its embedding's gradient) for a language model's
//! prediction at one position.

use std::collections::HashMap;

use explain::{Explainer, Method};
use graph::{CellKind, CpuExecutor, Feed, Mode, Model, Recurrent, SequenceOutput, TensorId, evaluate};

const GRU: Recurrent =
    Recurrent { hidden: 4, layers: 1, bidirectional: false, dropout: 0.0, r#return: SequenceOutput::Sequence };

/// `build`'s output at `at` for `params` with `feed`.
fn output(graph: &graph::Graph, out: TensorId, params: &HashMap<String, Vec<f32>>, feed: &Feed, at: usize) -> f64 {
    evaluate(graph, Mode::Eval, params, feed, &[out]).unwrap().get(out)[at] as f64
}

#[test]
fn series_saliency_is_the_gradient_per_step_and_feature() {
    let (steps, features) = (5, 2);
    let mut m = Model::new(4);
    let x = m.graph.input("x", &[1, steps, features]);
    let h = m.recurrent("gru", x, CellKind::Gru, &GRU).unwrap().sequence;
    let last = m.graph.step(h, steps - 1).unwrap();
    let y = m.linear("head", last, 4, 1, true).unwrap();
    let params = m.init.values();
    let series: Vec<f32> = (0..steps * features).map(|i| ((i * 7 % 11) as f32 - 5.0) / 4.0).collect();
    let mut explainer = Explainer::new(CpuExecutor::new(), m.graph.clone(), x, y, &params).unwrap();
    let map = explainer.explain(&series, &Method::Saliency, 0, Some(0)).unwrap();
    assert_eq!((map.height, map.width), (steps, features));
    let h = 1e-3;
    for i in 0..steps * features {
        let at = |delta: f32| {
            let mut shifted = series.clone();
            shifted[i] += delta;
            let mut feed = Feed::default();
            feed.inputs.insert("x".into(), shifted);
            output(&m.graph, y, &params, &feed, 0)
        };
        let fd = ((at(h) - at(-h)) / (2.0 * h as f64)).abs();
        assert!(
            (map.map[i] as f64 - fd).abs() < 2e-3 * (1.0 + fd),
            "step {} feature {}: {} vs {fd}",
            i / 2,
            i % 2,
            map.map[i]
        );
    }
}

#[test]
fn token_saliency_is_the_norm_of_the_embeddings_gradient() {
    let (steps, vocab, dim) = (4, 6, 3);
    let mut m = Model::new(5);
    let ids = m.graph.indices("x", &[1, steps], vocab);
    let e = m.embedding("embed", ids, (vocab, dim), None, 1.0).unwrap();
    let h = m.recurrent("gru", e, CellKind::Gru, &Recurrent { hidden: 4, ..GRU }).unwrap().sequence;
    let logits = m.linear("head", h, 4, vocab, true).unwrap();
    let logits = m.graph.reshape(logits, &[steps, vocab]).unwrap();
    let params = m.init.values();
    let tokens = [2u32, 5, 0, 3]; // distinct: a row of the table is one position's vector
    let sample: Vec<f32> = tokens.iter().map(|&t| t as f32).collect();
    let mut explainer = Explainer::new(CpuExecutor::new(), m.graph.clone(), ids, logits, &params).unwrap();
    // The prediction after the third token, for class 1.
    let (row, class) = (2, 1);
    let map = explainer.explain(&sample, &Method::Saliency, row, Some(class)).unwrap();
    assert_eq!((map.height, map.width, map.target.class), (steps, 1, class));
    let mut feed = Feed::default();
    feed.labels.insert("x".into(), tokens.to_vec());
    let delta = 1e-3;
    for (t, &token) in tokens.iter().enumerate() {
        let gradient: Vec<f64> = (0..dim)
            .map(|c| {
                let at = |d: f32| {
                    let mut p = params.clone();
                    p.get_mut("embed.weight").unwrap()[token as usize * dim + c] += d;
                    output(&m.graph, logits, &p, &feed, row * vocab + class)
                };
                (at(delta) - at(-delta)) / (2.0 * delta as f64)
            })
            .collect();
        let norm = gradient.iter().map(|g| g * g).sum::<f64>().sqrt();
        assert!((map.map[t] as f64 - norm).abs() < 2e-3 * (1.0 + norm), "token {t}: {} vs {norm}", map.map[t]);
    }
    assert_eq!(map.map[3], 0.0, "the fourth token comes after the explained prediction");
}
