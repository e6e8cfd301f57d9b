//! The CPU reference of every kernel, with the same call shapes as the GPU wrappers: shapes
//! in, slices in and out. The kernel tests hold the GPU to these, and the graph's CPU executor
//! runs on them, so each op has exactly one CPU implementation. Clear before clever; f64
//! accumulation where sums are long.

pub mod activation;
pub mod attention;
pub mod conv;
pub mod dropout;
pub mod elementwise;
pub mod embedding;
pub mod layout;
pub mod matmul;
pub mod norm;
pub mod optimizer;
pub mod packed;
pub mod pool;
pub mod recurrent;
pub mod softmax;
pub mod vector;

pub use attention::{attention, attention_backward};
pub use conv::{backward_partials, conv2d_backward, conv2d_forward};
pub use dropout::dropout;
pub use elementwise::{binary, unary, unary_backward};
pub use embedding::{embedding, embedding_backward};
pub use layout::{argmax, reduce, strided_copy};
pub use matmul::matmul;
pub use norm::{batch_norm, batch_norm_backward, layer_norm, layer_norm_backward};
pub use optimizer::{adam, clip_grad_norm, grad_norm, sgd};
pub use pool::{avg_pool, avg_pool_backward, max_pool, max_pool_backward};
pub use recurrent::{gru_cell, gru_cell_backward, lstm_cell, lstm_cell_backward};
pub use softmax::{
    bce_with_logits_terms, cross_entropy, cross_entropy_backward, softmax, softmax_backward, top_k_hits,
};
