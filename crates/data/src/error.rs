//! Errors of reading datasets: each names the file, and the line where one is at fault.

use std::path::PathBuf;

/// A dataset file that cannot be read, or is not what its format says.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file cannot be read. Its own error is part of the message, and not a source below
    /// it: a chain printed whole says it once.
    #[error("{path}: {error} (the shipped datasets are under datasets/; see datasets/SOURCES.md)")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why it cannot be read.
        error: std::io::Error,
    },

    /// The file's contents are not its format's.
    #[error("{path}:{line}: {detail}")]
    Format {
        /// The file.
        path: PathBuf,
        /// The line at fault (0: the file as a whole, or a binary header).
        line: usize,
        /// What is wrong there.
        detail: String,
    },
}

/// A result whose error is a [`DataError`].
pub type Result<T, E = DataError> = std::result::Result<T, E>;
