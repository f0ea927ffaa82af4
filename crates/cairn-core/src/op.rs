//! The replication contract: what every write to a catalog is (`Op`), and
//! how vectors are encoded, in one place that both the store (which applies
//! ops) and the cluster (which carries them in its logs) see, without the
//! cluster depending on the store.

/// A document as the ingest path hands it to the catalog (and as a
/// cluster's log carries it).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DocumentRecord {
    /// Canonical absolute path: the document's key.
    pub path: String,
    /// Display path, relative to the ingest root.
    pub doc: String,
    /// Canonical ingest root.
    pub root: String,
    /// Content hash (blake3 hex) of the file's bytes.
    pub hash: String,
    pub mtime_ns: i64,
    pub size: u64,
    pub format: String,
    /// The extracted text; chunk spans index into it.
    pub text: String,
}

/// A chunk to store, with its vector.
#[derive(Debug, Clone, PartialEq)]
pub struct NewChunk {
    pub ord: u32,
    pub text: String,
    pub start: u64,
    pub end: u64,
    pub heading: String,
    pub vector: Vec<f32>,
}

/// A change to the catalog. Both single-node ingest and cluster replication
/// express every write as an `Op`.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Insert a document or replace all of its chunks.
    Upsert {
        doc: DocumentRecord,
        chunks: Vec<NewChunk>,
    },
    /// Delete a document (by canonical path) and its chunks.
    Delete { path: String },
    /// Take a sequence number and change nothing: a log entry that could
    /// not be read (or was refused) keeps its place in the sequence, so a
    /// replica does not stall on it.
    Noop,
}

/// Encode a vector as little-endian f32 bytes.
pub fn vector_to_blob(v: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * 4);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    out
}

/// Decode little-endian f32 bytes.
pub fn blob_to_vector(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
