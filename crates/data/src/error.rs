//! Errors of reading datasets: each names the file, and the line where one is at fault.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file's own error is part of the message, and not a source below it: a chain
    /// printed whole says it once.
    #[error("{path}: {error} (the shipped datasets are under datasets/; see datasets/SOURCES.md)")]
    Io { path: PathBuf, error: std::io::Error },

    #[error("{path}:{line}: {detail}")]
    Format { path: PathBuf, line: usize, detail: String },
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;
