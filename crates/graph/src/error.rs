//! Errors of building and running graphs; every message names the node and the shapes.

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("{node}: {detail}")]
    Shape { node: String, detail: String },

    #[error("{node}: no value was fed for input {name:?} of shape {shape:?}")]
    MissingInput { node: String, name: String, shape: Vec<usize> },

    #[error("{node}: fed {got} values, the shape {shape:?} holds {want}")]
    FeedLength { node: String, shape: Vec<usize>, got: usize, want: usize },

    #[error("{node}: target {target} is not a class index below {classes}")]
    Target { node: String, target: u32, classes: usize },

    #[error("checkpoint {path}: {detail}")]
    Checkpoint { path: std::path::PathBuf, detail: String },

    #[error(transparent)]
    Kernel(#[from] kernels::KernelError),
}

pub type Result<T, E = GraphError> = std::result::Result<T, E>;
