//! Errors of building and running graphs, by what went wrong; every message names the node
//! (a layer's nodes carry its name) and the shapes involved, so the caller prints it as is.

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// Tensors whose shapes do not fit an op's or a layer's rule.
    #[error("{node}: {detail}")]
    Shape { node: String, detail: String },

    /// A name that is no tensor, parameter or input here (`what` says which was looked for).
    #[error("{name}: no {what} of this name")]
    UnknownName { name: String, what: &'static str },

    /// A gradient that cannot be formed.
    #[error("{node}: {detail}")]
    NotDifferentiable { node: String, detail: String },

    /// Two executors running the same graph disagree (`CrossCheck`).
    #[error("{node}: {detail}")]
    ExecutorMismatch { node: String, detail: String },

    /// A call that does not fit the graph, run or trainer it is made on.
    #[error("{node}: {detail}")]
    Usage { node: String, detail: String },

    /// What this model's structure cannot do (take one token at a time, be explained by a
    /// method).
    #[error("{node}: {detail}")]
    Unsupported { node: String, detail: String },

    /// A tensor that needs a buffer beyond the device's limits, named (`limit` says which).
    #[error("{tensor}: {limit}; lower the batch size or the layer sizes, or run on the CPU with --device cpu")]
    TooLarge { tensor: String, limit: kernels::KernelError },

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
