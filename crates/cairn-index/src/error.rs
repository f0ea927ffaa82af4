use std::path::PathBuf;

/// Errors of the derived indexes. `Corrupt` means "delete and rebuild from the catalog".
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index at {path} is corrupt or unreadable: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("vector index error: {0}")]
    Vector(String),
    #[error("BM25 index error: {0}")]
    Bm25(String),
    #[error("dimension mismatch: index has {expected}, got {got}")]
    Dim { expected: usize, got: usize },
    #[error("the indexes in {0} are open read-only (another process may be writing them)")]
    ReadOnly(PathBuf),
    #[error(transparent)]
    Store(#[from] cairn_store::StoreError),
}

pub type Result<T, E = IndexError> = std::result::Result<T, E>;
