//! Attention maps and attention rollout. Training never forms a layer's probabilities (the
//! fused kernel keeps only its output); an explanation recomputes them from the layer's
//! queries and keys, with the masks the layer applied, in f64.

/// One attention layer's probabilities for one sample.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionMap {
    /// Heads of the layer.
    pub heads: usize,
    /// Query positions.
    pub queries: usize,
    /// Key positions.
    pub keys: usize,
    /// [heads, queries, keys], each row summing to 1.
    pub probabilities: Vec<f32>,
}

impl AttentionMap {
    /// Head `h`'s [queries, keys] matrix.
    pub fn head(&self, h: usize) -> &[f32] {
        let n = self.queries * self.keys;
        &self.probabilities[h * n..(h + 1) * n]
    }

    /// softmax(q kᵀ / √D) of q [heads, queries, D] and k [heads, keys, D], key j hidden from
    /// query i where `causal` and j > i, or where `key_mask` [keys] is 0 (a row with every key
    /// hidden is all zeros, as the fused kernel's output is).
    pub fn from_queries_and_keys(
        q: &[f32],
        k: &[f32],
        (heads, queries, keys, d): (usize, usize, usize, usize),
        causal: bool,
        key_mask: Option<&[u32]>,
    ) -> AttentionMap {
        assert_eq!((q.len(), k.len()), (heads * queries * d, heads * keys * d), "q and k of the given shape");
        let scale = 1.0 / (d as f64).sqrt();
        let mut probabilities = vec![0.0f32; heads * queries * keys];
        let mut scores = vec![0.0f64; keys];
        for h in 0..heads {
            for i in 0..queries {
                let qi = &q[(h * queries + i) * d..][..d];
                let mut top = f64::NEG_INFINITY;
                for (j, s) in scores.iter_mut().enumerate() {
                    let hidden = (causal && j > i) || key_mask.is_some_and(|m| m[j] == 0);
                    *s = if hidden {
                        f64::NEG_INFINITY
                    } else {
                        let kj = &k[(h * keys + j) * d..][..d];
                        qi.iter().zip(kj).map(|(&a, &b)| a as f64 * b as f64).sum::<f64>() * scale
                    };
                    top = top.max(*s);
                }
                if top == f64::NEG_INFINITY {
                    continue;
                }
                let total: f64 = scores.iter().map(|s| (s - top).exp()).sum();
                let row = &mut probabilities[(h * queries + i) * keys..][..keys];
                for (p, s) in row.iter_mut().zip(&scores) {
                    *p = ((s - top).exp() / total) as f32;
                }
            }
        }
        AttentionMap { heads, queries, keys, probabilities }
    }
}

/// Attention rollout (Abnar & Zuidema 2020): each layer's heads averaged, the identity added
/// for the residual connection and the rows renormalised, A = 0.5·mean_h(P) + 0.5·I, then
/// multiplied through the layers from the first: R = A_L ··· A_1, [T, T]. Row i says how much
/// each input token flows into position i's output. Every layer must be square and of one T.
pub fn rollout(layers: &[AttentionMap]) -> Vec<f64> {
    let t = layers.first().map_or(0, |m| m.queries);
    let mut flow = identity(t);
    for map in layers {
        assert!(map.queries == t && map.keys == t, "rollout needs square maps of one size");
        let mut a = identity(t);
        for (i, a_row) in a.chunks_mut(t).enumerate() {
            for (j, a_ij) in a_row.iter_mut().enumerate() {
                let mean = (0..map.heads).map(|h| map.head(h)[i * t + j] as f64).sum::<f64>() / map.heads as f64;
                *a_ij = 0.5 * mean + 0.5 * *a_ij;
            }
            let total: f64 = a_row.iter().sum();
            a_row.iter_mut().for_each(|x| *x /= total);
        }
        flow = product(&a, &flow, t);
    }
    flow
}

fn identity(t: usize) -> Vec<f64> {
    (0..t * t).map(|i| if i / t == i % t { 1.0 } else { 0.0 }).collect()
}

/// a · b for [t, t] matrices.
fn product(a: &[f64], b: &[f64], t: usize) -> Vec<f64> {
    let mut out = vec![0.0; t * t];
    for i in 0..t {
        for k in 0..t {
            let aik = a[i * t + k];
            for j in 0..t {
                out[i * t + j] += aik * b[k * t + j];
            }
        }
    }
    out
}
