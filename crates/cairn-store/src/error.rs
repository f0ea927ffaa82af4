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
    #[error("collection `{collection}` was embedded with `{stored}`, not `{requested}`: use the same embedding model, or ingest into a new collection")]
    ModelMismatch {
        collection: String,
        stored: String,
        requested: String,
    },
}
