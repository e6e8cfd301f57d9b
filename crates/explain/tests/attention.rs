//! Attention maps and rollout: recomputed probabilities give the fused kernel's output, and
//! rollout holds to hand-made matrices.

use explain::{AttentionMap, rollout};
use graph::{Feed, Graph, Mode, evaluate};

fn map(heads: usize, t: usize, probabilities: &[f32]) -> AttentionMap {
    AttentionMap { heads, queries: t, keys: t, probabilities: probabilities.to_vec() }
}

fn assert_matrix(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() < 1e-12, "[{i}]: {g} vs {w} in {got:?}");
    }
}

#[test]
fn identity_attention_rolls_out_to_the_identity() {
    let eye = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
    let layers: Vec<AttentionMap> = (0..3).map(|_| map(2, 3, &[eye, eye].concat())).collect();
    assert_matrix(&rollout(&layers), &eye.map(f64::from));
}

#[test]
fn rollout_matches_hand_computed_products() {
    // One layer: A = 0.5 P + 0.5 I.
    let p1 = [1.0, 0.0, 0.5, 0.5];
    assert_matrix(&rollout(&[map(1, 2, &p1)]), &[1.0, 0.0, 0.25, 0.75]);
    // Two layers: A2 A1 = [[.75, .25], [0, 1]] [[1, 0], [.25, .75]].
    let p2 = [0.5, 0.5, 0.0, 1.0];
    assert_matrix(&rollout(&[map(1, 2, &p1), map(1, 2, &p2)]), &[0.8125, 0.1875, 0.25, 0.75]);
    // Heads are averaged first: I and the swap average to all 0.5.
    let heads = [1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0];
    assert_matrix(&rollout(&[map(2, 2, &heads)]), &[0.75, 0.25, 0.25, 0.75]);
}

#[test]
fn rollout_rows_sum_to_one() {
    let mut state = 7u64;
    let mut next = || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) as f32 / (1u64 << 31) as f32) + 0.01
    };
    let (t, heads) = (5, 3);
    let layers: Vec<AttentionMap> = (0..4)
        .map(|_| {
            let mut p: Vec<f32> = (0..heads * t * t).map(|_| next()).collect();
            p.chunks_mut(t).for_each(|row| {
                let s: f32 = row.iter().sum();
                row.iter_mut().for_each(|x| *x /= s);
            });
            map(heads, t, &p)
        })
        .collect();
    let r = rollout(&layers);
    for row in r.chunks(t) {
        assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-6, "{row:?}");
    }
}

/// P V from the recomputed probabilities is what the fused attention node outputs, causal and
/// with keys hidden by a padding mask, at sizes that fit no tile.
#[test]
fn recomputed_probabilities_give_the_fused_kernels_output() {
    let (heads, t, d) = (3, 7, 5);
    let mut g = Graph::new();
    let (q, k, v) = (g.input("q", &[heads, t, d]), g.input("k", &[heads, t, d]), g.input("v", &[heads, t, d]));
    let mask = g.indices("mask", &[1, t], 2);
    for causal in [false, true] {
        let o = g.attention(q, k, v, Some(mask), heads, causal).unwrap();
        let mut feed = Feed::default();
        let values = |seed: u32| {
            (0..heads * t * d)
                .map(move |i| ((i as u32).wrapping_mul(2654435761) ^ seed) % 1000)
                .map(|x| x as f32 / 250.0 - 2.0)
        };
        for (name, seed) in [("q", 1), ("k", 2), ("v", 3)] {
            feed.inputs.insert(name.into(), values(seed).collect());
        }
        let hidden = [1, 1, 0, 1, 1, 1, 0];
        feed.labels.insert("mask".into(), hidden.to_vec());
        let out = evaluate(&g, Mode::Eval, &Default::default(), &feed, &[o]).unwrap();
        let map = AttentionMap::from_queries_and_keys(
            &feed.inputs["q"],
            &feed.inputs["k"],
            (heads, t, t, d),
            causal,
            Some(&hidden),
        );
        let vv = &feed.inputs["v"];
        for h in 0..heads {
            for i in 0..t {
                let row = &map.head(h)[i * t..(i + 1) * t];
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
                assert!(row[2] == 0.0 && row[6] == 0.0 && (!causal || row[i + 1..].iter().all(|&p| p == 0.0)));
                for c in 0..d {
                    let want: f32 = (0..t).map(|j| row[j] * vv[(h * t + j) * d + c]).sum();
                    let got = out.get(o)[(h * t + i) * d + c];
                    assert!((got - want).abs() < 1e-5, "causal {causal} head {h} query {i}: {got} vs {want}");
                }
            }
        }
    }
}
