//! The one error type of the kernels crate. Every message names the operation and, for shape
//! problems, every shape involved, so the caller can print it as is.

/// Errors from opening a device, preparing a kernel or running it.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// No adapter at all.
    #[error(
        "no GPU adapter found (backends tried: {backends}); install a Vulkan driver \
         (on Debian/Ubuntu: `apt-get install mesa-vulkan-drivers`) or use the CPU executor"
    )]
    NoAdapter {
        /// The wgpu backends that were asked.
        backends: String,
    },

    /// `DLCLI_ADAPTER` names no adapter there is.
    #[error("DLCLI_ADAPTER={wanted:?} matches no adapter; available: {available}")]
    AdapterNotFound {
        /// What `DLCLI_ADAPTER` says.
        wanted: String,
        /// The adapters there are.
        available: String,
    },

    /// The adapter refused a device.
    #[error("could not open a device on {adapter}: {error}")]
    RequestDevice {
        /// The adapter asked.
        adapter: String,
        /// What it answered.
        error: wgpu::RequestDeviceError,
    },

    /// The device ran out of memory.
    #[error(
        "GPU out of memory in {op}: {detail}; lower [train] batch_size (or --batch-size) or the layer sizes, \
         or run on the CPU with --device cpu"
    )]
    OutOfMemory {
        /// The operation that failed.
        op: String,
        /// What the driver or the check said.
        detail: String,
    },

    /// The device is gone (a driver reset, a removed card); every later call fails so.
    #[error(
        "the GPU device was lost in {op} ({detail}): its driver reset or removed it; run again (dlcli train \
         --resume RUN continues from the last checkpoint), and on the CPU with --device cpu if it happens again"
    )]
    DeviceLost {
        /// The operation that failed.
        op: String,
        /// What the driver or the check said.
        detail: String,
    },

    /// wgpu's validation refused a call: a bug of ours, with the driver's words.
    #[error("GPU validation error in {op}: {detail}")]
    Validation {
        /// The operation that failed.
        op: String,
        /// What the driver or the check said.
        detail: String,
    },

    /// The driver failed inside.
    #[error("GPU internal error in {op}: {detail}")]
    Internal {
        /// The operation that failed.
        op: String,
        /// What the driver or the check said.
        detail: String,
    },

    /// Arguments that do not fit together: the message names the kernel and the shapes.
    #[error("{op}: {detail}")]
    Shape {
        /// The operation that failed.
        op: &'static str,
        /// What the driver or the check said.
        detail: String,
    },

    /// A buffer or binding larger than the adapter allows.
    #[error("{op}: {bytes} bytes exceed the adapter's limit of {limit} bytes for one {what}")]
    TooLarge {
        /// The operation that failed.
        op: &'static str,
        /// Which limit: "buffer", "storage binding".
        what: &'static str,
        /// What was asked for.
        bytes: u64,
        /// What the adapter allows.
        limit: u64,
    },

    /// A shader loop longer than a CPU rasteriser runs.
    #[error(
        "{op}: {what} needs {iterations} loop iterations per shader invocation, but this CPU \
         rasteriser (llvmpipe/lavapipe) silently truncates loops past {budget}; use smaller \
         sizes, the CPU executor (--device cpu) or a GPU adapter"
    )]
    LoopBudget {
        /// The operation that failed.
        op: &'static str,
        /// The iterations the call needs.
        iterations: u64,
        /// The most the rasteriser runs.
        budget: u64,
        /// The loop, for people.
        what: String,
    },

    /// Reading a result back to the host failed.
    #[error("reading back {op}: {detail}")]
    Readback {
        /// The operation that failed.
        op: &'static str,
        /// What the driver or the check said.
        detail: String,
    },
}

/// A result whose error is a [`KernelError`].
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
