//! The one error type of the kernels crate. Every message names the operation and, for shape
//! problems, every shape involved, so the caller can print it as is.

/// Errors from opening a device, preparing a kernel or running it.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error(
        "no GPU adapter found (backends tried: {backends}); install a Vulkan driver \
         (on Debian/Ubuntu: `apt-get install mesa-vulkan-drivers`) or use the CPU executor"
    )]
    NoAdapter { backends: String },

    #[error("DLCLI_ADAPTER={wanted:?} matches no adapter; available: {available}")]
    AdapterNotFound { wanted: String, available: String },

    #[error("could not open a device on {adapter}: {error}")]
    RequestDevice { adapter: String, error: wgpu::RequestDeviceError },

    #[error(
        "GPU out of memory in {op}: {detail}; lower [train] batch_size (or --batch-size) or the layer sizes, \
         or run on the CPU with --device cpu"
    )]
    OutOfMemory { op: String, detail: String },

    #[error(
        "the GPU device was lost in {op} ({detail}): its driver reset or removed it; run again (dlcli train \
         --resume RUN continues from the last checkpoint), and on the CPU with --device cpu if it happens again"
    )]
    DeviceLost { op: String, detail: String },

    #[error("GPU validation error in {op}: {detail}")]
    Validation { op: String, detail: String },

    #[error("GPU internal error in {op}: {detail}")]
    Internal { op: String, detail: String },

    /// Arguments that do not fit together: the message names the kernel and the shapes.
    #[error("{op}: {detail}")]
    Shape { op: &'static str, detail: String },

    #[error("{op}: {bytes} bytes exceed the adapter's limit of {limit} bytes for one {what}")]
    TooLarge { op: &'static str, what: &'static str, bytes: u64, limit: u64 },

    #[error(
        "{op}: {what} needs {iterations} loop iterations per shader invocation, but this CPU \
         rasteriser (llvmpipe/lavapipe) silently truncates loops past {budget}; use smaller \
         sizes, the CPU executor (--device cpu) or a GPU adapter"
    )]
    LoopBudget { op: &'static str, iterations: u64, budget: u64, what: String },

    #[error("reading back {op}: {detail}")]
    Readback { op: &'static str, detail: String },
}

pub type Result<T, E = KernelError> = std::result::Result<T, E>;

/// Shorthand for a [`KernelError::Shape`] error.
pub(crate) fn shape_error(op: &'static str, detail: impl Into<String>) -> KernelError {
    KernelError::Shape { op, detail: detail.into() }
}

/// Fails with a shape error naming `what` when a tensor holds fewer elements than needed.
pub(crate) fn check_len(op: &'static str, what: &str, have: usize, need: usize) -> Result<()> {
    if have < need {
        return Err(shape_error(op, format!("{what} holds {have} elements but the shape needs {need}")));
    }
    Ok(())
}
