use std::path::PathBuf;

/// Errors of the catalog. Each names the database file it concerns.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("catalog {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("catalog {path}: cannot create its directory: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("catalog {path} was written by a newer Cairn (schema {found}, this build reads up to {supported})")]
    Schema {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("catalog {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    /// A write that does not match the collection: a vector of another
    /// length than the collection's embedding dimension.
    #[error("catalog {path}: document {doc}: {message}")]
    BadOp {
        path: PathBuf,
        doc: String,
        message: String,
    },
    /// A local write into a replica's collection (whose sequence is its
    /// log's), or a log entry into a local collection.
    #[error("catalog {path}: its sequence is {kept}; it does not take {tried} writes{hint}")]
    Origin {
        path: PathBuf,
        kept: &'static str,
        tried: &'static str,
        hint: &'static str,
    },
    /// A log entry that does not follow the last applied one: the entries
    /// between were never received. The replica waits for them.
    #[error("catalog {path}: the log entry at sequence {got} does not follow the last applied one ({last}); the entries in between are missing")]
    SeqGap { path: PathBuf, last: u64, got: u64 },
    #[error("collection `{collection}` was embedded with `{stored}`, not `{requested}`: use the same embedding model, or ingest into a new collection")]
    ModelMismatch {
        collection: String,
        stored: String,
        requested: String,
    },
}
