//! Errors of building and running graphs, by what went wrong; every message names the node
//! (a layer's nodes carry its name) and the shapes involved, so the caller prints it as is.

/// What went wrong building or running a graph. `node` is the node's label (a config
/// layer's output node carries the layer's name) and `detail` says what, with the shapes.
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    /// Tensors whose shapes do not fit an op's or a layer's rule.
    #[error("{node}: {detail}")]
    Shape {
        /// The node.
        node: String,
        /// What does not fit, with the shapes.
        detail: String,
    },

    /// A name that is no tensor, parameter or input here.
    #[error("{name}: no {what} of this name")]
    UnknownName {
        /// The name asked for.
        name: String,
        /// What was looked for ("tensor", "parameter of this model").
        what: &'static str,
    },

    /// A gradient that cannot be formed.
    #[error("{node}: {detail}")]
    NotDifferentiable {
        /// The node.
        node: String,
        /// Why.
        detail: String,
    },

    /// Two executors running the same graph disagree (`CrossCheck`).
    #[error("{node}: {detail}")]
    ExecutorMismatch {
        /// The first node whose outputs differ.
        node: String,
        /// Where and by how much.
        detail: String,
    },

    /// A call that does not fit the graph, run or trainer it is made on.
    #[error("{node}: {detail}")]
    Usage {
        /// The node or object called on.
        node: String,
        /// What does not fit, and what to do.
        detail: String,
    },

    /// What this model's structure cannot do (take one token at a time, be explained by a
    /// method).
    #[error("{node}: {detail}")]
    Unsupported {
        /// The node or layer.
        node: String,
        /// What it cannot do.
        detail: String,
    },

    /// A tensor that needs a buffer beyond the device's limits, named.
    #[error("{tensor}: {limit}; lower the batch size or the layer sizes, or run on the CPU with --device cpu")]
    TooLarge {
        /// The tensor, its layer and shape.
        tensor: String,
        /// The kernels' error, which says which limit.
        limit: kernels::KernelError,
    },

    /// An input the run reads was not fed.
    #[error("{node}: no value was fed for input {name:?} of shape {shape:?}")]
    MissingInput {
        /// The input's node.
        node: String,
        /// The feed's name for it.
        name: String,
        /// Its shape.
        shape: Vec<usize>,
    },

    /// An input fed with the wrong number of values.
    #[error("{node}: fed {got} values, the shape {shape:?} holds {want}")]
    FeedLength {
        /// The input's node.
        node: String,
        /// Its shape.
        shape: Vec<usize>,
        /// The values fed.
        got: usize,
        /// The values the shape holds.
        want: usize,
    },

    /// A label that is no class of the model.
    #[error("{node}: target {target} is not a class index below {classes}")]
    Target {
        /// The labels' node.
        node: String,
        /// The label.
        target: u32,
        /// The classes there are.
        classes: usize,
    },

    /// A checkpoint that cannot be read, or does not fit the model.
    #[error("checkpoint {path}: {detail}")]
    Checkpoint {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong with it.
        detail: String,
    },

    /// A kernel's own error.
    #[error(transparent)]
    Kernel(#[from] kernels::KernelError),
}

/// A result whose error is a [`GraphError`].
pub type Result<T, E = GraphError> = std::result::Result<T, E>;
