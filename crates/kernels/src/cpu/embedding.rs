//! Reference embedding lookup and backward.

use crate::embedding::Embedding;

/// Each id's row of `weight` [vocab, dim], into `out` [tokens, dim].
pub fn embedding(e: &Embedding, ids: &[u32], weight: &[f32], out: &mut [f32]) {
    for (t, &id) in ids[..e.tokens].iter().enumerate() {
        for d in 0..e.dim {
            out[t * e.dim + d] = if (id as usize) < e.vocab { weight[id as usize * e.dim + d] } else { 0.0 };
        }
    }
}

/// dweight = sum of dy rows per token, added in position order like the GPU.
pub fn embedding_backward(e: &Embedding, ids: &[u32], dy: &[f32], dweight: &mut [f32]) {
    dweight[..e.vocab * e.dim].fill(0.0);
    for (t, &id) in ids[..e.tokens].iter().enumerate() {
        if (id as usize) < e.vocab {
            for d in 0..e.dim {
                dweight[id as usize * e.dim + d] += dy[t * e.dim + d];
            }
        }
    }
}
