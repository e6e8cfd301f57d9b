//! The embedding layer against torch.nn.Embedding (padding index included) on both executors,
//! and its initialisation against PyTorch's N(0, 1); the sinusoidal positional encoding.

mod common;

use std::collections::HashMap;

use common::{assert_close, fixture, numbers, on_both, weighted_sum};
use graph::{Feed, Mode, Model};

#[test]
fn embedding_matches_pytorch_on_both_executors() {
    let golden = fixture("embedding");
    let n = |k: &str| golden[k].as_u64().unwrap() as usize;
    let shape: Vec<usize> = golden["shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    let mut m = Model::new(0);
    let ids = m.graph.indices("ids", &shape, n("vocab"));
    let y = m.embedding("emb", ids, (n("vocab"), n("dim")), Some(n("padding")), 1.0).unwrap();
    let (_, reads) = weighted_sum(&mut m, y, &[]);
    let params = HashMap::from([("emb.weight".to_string(), numbers(&golden["weight"]))]);
    let mut feed = Feed::default();
    feed.labels
        .insert("ids".into(), golden["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect());
    feed.inputs.insert("r".into(), numbers(&golden["r"]));
    for (device, got) in on_both(&m.graph, &reads, &params, &feed) {
        assert_close(&format!("{device} y"), &got["y"], &numbers(&golden["y"]));
        let dweight = &got["emb.weight"];
        assert_close(&format!("{device} dweight"), dweight, &numbers(&golden["dweight"]));
        let padding_row = &dweight[n("padding") * n("dim")..][..n("dim")];
        assert!(padding_row.iter().all(|&g| g == 0.0), "{device}: the padding row takes no gradient: {padding_row:?}");
    }
}

/// nn.Embedding draws N(0, 1) with the padding row zero: so does ours, from the seed.
#[test]
fn embedding_tables_start_standard_normal_with_a_zero_padding_row() {
    let mut m = Model::new(7);
    let ids = m.graph.indices("ids", &[2], 1000);
    m.embedding("emb", ids, (1000, 64), Some(0), 1.0).unwrap();
    let table = &m.init.values()["emb.weight"];
    assert!(table[..64].iter().all(|&v| v == 0.0));
    let rest = &table[64..];
    let mean = rest.iter().map(|&v| v as f64).sum::<f64>() / rest.len() as f64;
    let var = rest.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / rest.len() as f64;
    // 63,936 draws: the mean's standard error is 0.004, the variance's 0.0056.
    assert!(mean.abs() < 0.02 && (var - 1.0).abs() < 0.03, "mean {mean}, variance {var}");
    let beyond_3 = rest.iter().filter(|v| v.abs() > 3.0).count() as f64 / rest.len() as f64;
    assert!((beyond_3 - 0.0027).abs() < 0.001, "share beyond 3 sigma: {beyond_3}");
}

/// The fixed positional encoding of Vaswani et al.: sin(t / 10000^(2i/d)) and cos at 2i + 1,
/// added to the input and kept as untrained state.
#[test]
fn sinusoidal_positions_are_the_papers_and_are_added() {
    let mut m = Model::new(0);
    let x = m.graph.input("x", &[2, 3, 4]);
    let y = m.position("pos", x, false).unwrap();
    let table = &m.init.values()["pos.pe"];
    let want = [(1, 0, 1f64.sin()), (1, 1, 1f64.cos()), (2, 2, 0.02f64.sin()), (2, 3, 0.02f64.cos()), (0, 1, 1.0)];
    for (t, c, v) in want {
        assert!((table[t * 4 + c] as f64 - v).abs() < 1e-7, "pe[{t}, {c}] = {}, want {v}", table[t * 4 + c]);
    }
    assert!(m.graph.find_param("pos.pe").is_none(), "the table is state, not a parameter");
    let mut feed = Feed::default();
    feed.inputs.insert("x".into(), vec![1.0; 24]);
    let params = m.init.values();
    let got = graph::evaluate(&m.graph, Mode::Eval, &params, &feed, &[y]).unwrap();
    let expected: Vec<f32> = (0..24).map(|e| 1.0 + table[e % 12]).collect();
    assert_eq!(got.get(y), &expected[..]);
}
