//! What travels over NATS: JSON bodies with vectors as base64 little-endian
//! f32 (exact, a third larger than raw bytes, far smaller than JSON floats).

use crate::{ClusterError, Result};
use base64::Engine as _;
use cairn_core::op::{DocumentRecord, NewChunk, Op};
use cairn_core::{Hit, SearchMode, Seq};
use cairn_generate::Sampling;
use cairn_index::bm25::Bm25Stats;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Encode a vector for the wire.
pub fn encode_vector(v: &[f32]) -> String {
    B64.encode(cairn_core::op::vector_to_blob(v))
}

/// Decode a vector from the wire.
pub fn decode_vector(s: &str, subject: &str) -> Result<Vec<f32>> {
    let bytes = B64.decode(s).map_err(|e| ClusterError::Wire {
        subject: subject.to_string(),
        reason: format!("vector is not base64: {e}"),
    })?;
    if bytes.len() % 4 != 0 {
        return Err(ClusterError::Wire {
            subject: subject.to_string(),
            reason: format!("vector has {} bytes, not a multiple of 4", bytes.len()),
        });
    }
    Ok(cairn_core::op::blob_to_vector(&bytes))
}

/// A chunk with its embedding, computed once by the ingesting client.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WireChunk {
    pub ord: u32,
    pub text: String,
    pub start: u64,
    pub end: u64,
    pub heading: String,
    pub vector: String,
}

/// One entry of a shard's log: the catalog's `Op`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum WireOp {
    Upsert {
        doc: DocumentRecord,
        chunks: Vec<WireChunk>,
    },
    Delete {
        path: String,
    },
    /// Never published by Cairn; a replica applies it as a no-op.
    Noop,
}

impl WireOp {
    pub fn from_op(op: &Op) -> WireOp {
        match op {
            Op::Upsert { doc, chunks } => WireOp::Upsert {
                doc: doc.clone(),
                chunks: chunks
                    .iter()
                    .map(|c| WireChunk {
                        ord: c.ord,
                        text: c.text.clone(),
                        start: c.start,
                        end: c.end,
                        heading: c.heading.clone(),
                        vector: encode_vector(&c.vector),
                    })
                    .collect(),
            },
            Op::Delete { path } => WireOp::Delete { path: path.clone() },
            Op::Noop => WireOp::Noop,
        }
    }

    pub fn into_op(self, subject: &str) -> Result<Op> {
        Ok(match self {
            WireOp::Upsert { doc, chunks } => Op::Upsert {
                doc,
                chunks: chunks
                    .into_iter()
                    .map(|c| {
                        Ok(NewChunk {
                            ord: c.ord,
                            vector: decode_vector(&c.vector, subject)?,
                            text: c.text,
                            start: c.start,
                            end: c.end,
                            heading: c.heading,
                        })
                    })
                    .collect::<Result<_>>()?,
            },
            WireOp::Delete { path } => Op::Delete { path },
            WireOp::Noop => Op::Noop,
        })
    }
}

/// A search sent to one shard's queue group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchRequest {
    pub query: String,
    /// The query embedding (the coordinator embeds once); needed unless the mode is bm25.
    pub vector: Option<String>,
    /// How many of each list (dense, BM25) the shard returns.
    pub n: usize,
    pub mode: SearchMode,
    /// What the shard replies with (hits by default).
    #[serde(default)]
    pub want: Want,
    /// The second round: score BM25 with these collection-wide statistics
    /// (every shard's, summed) instead of the shard's own.
    #[serde(default)]
    pub bm25_stats: Option<Bm25Stats>,
    /// Answer only once the shard has applied (and indexed) this log
    /// sequence: the coordinator's last write to the shard, so that a
    /// client reads its own writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_applied: Option<Seq>,
}

/// What a request on a shard's search subject asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Want {
    /// The dense and BM25 candidate lists.
    #[default]
    Hits,
    /// The first round of a BM25 or hybrid search: the shard's BM25 term
    /// statistics for the query, and no hits.
    Stats,
    /// Every document the shard holds (path, display path, hash, mtime,
    /// size): what an ingest compares files with, and what `--prune` and
    /// `remove` match.
    Documents,
    /// One document's text and passages; the request's `query` is its
    /// canonical path.
    DocumentText,
}

/// A hit from a shard, with the cosine similarity of its chunk to the query.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardHit {
    #[serde(flatten)]
    pub hit: Hit,
    pub cosine: f32,
}

/// A shard's answer: its dense and BM25 lists, unfused (fusion happens
/// after gathering, over every shard's lists).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShardReply {
    pub node: String,
    pub shard: u32,
    pub applied: Seq,
    #[serde(default)]
    pub dense: Vec<ShardHit>,
    #[serde(default)]
    pub bm25: Vec<ShardHit>,
    #[serde(default)]
    pub error: Option<String>,
    /// Milliseconds the shard spent searching (for the work split).
    #[serde(default)]
    pub took_ms: f64,
    /// The shard's BM25 term statistics, in reply to [`Want::Stats`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bm25_stats: Option<Bm25Stats>,
    /// The shard's documents, in reply to [`Want::Documents`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub documents: Option<Vec<cairn_engine::DocMeta>>,
    /// The document's text, in reply to [`Want::DocumentText`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document_text: Option<cairn_engine::DocumentText>,
}

/// A replica's state of one shard, as advertised in its heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ShardState {
    pub collection: String,
    pub shard: u32,
    /// The last stream sequence applied to the local catalog (the watermark).
    pub applied: Seq,
    pub documents: u64,
    pub chunks: u64,
    /// Answering searches (it has caught up once since it started).
    pub serving: bool,
    #[serde(default)]
    pub error: Option<String>,
}

/// A node's heartbeat: who it is, what it runs on, what it holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeInfo {
    pub name: String,
    pub version: String,
    pub pid: u32,
    pub started_ms: u64,
    pub heartbeat_ms: u64,
    /// Devices this node can place work on (compiled backends) and where
    /// each stage runs.
    pub devices: Vec<String>,
    pub placement: BTreeMap<String, String>,
    pub embed_model: String,
    pub embed_dim: usize,
    /// The generation model it serves, if any.
    pub llm: Option<String>,
    /// `collection/shard` → state.
    pub shards: BTreeMap<String, ShardState>,
}

/// A collection's shape and shard assignment (the `cairn-collections` bucket).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CollectionInfo {
    pub name: String,
    pub shards: u32,
    pub replicas: u32,
    pub embed_model: String,
    pub dim: usize,
    pub created_ms: u64,
    /// For each shard, the nodes that hold it.
    pub assignment: Vec<Vec<String>>,
}

/// A question with its gathered passages, for a generation replica.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GenerateRequest {
    pub question: String,
    /// Earlier turns of the conversation, oldest first.
    #[serde(default)]
    pub history: Vec<cairn_generate::ChatMessage>,
    pub hits: Vec<Hit>,
    pub relevance: Vec<f32>,
    pub embed_ms: f64,
    pub search_ms: f64,
    pub k: usize,
    pub mode: SearchMode,
    pub min_relevance: f32,
    pub sampling: Sampling,
    /// Check each sentence of the answer against the sources on the
    /// replica (with its critic), regenerating once when unsupported.
    #[serde(default = "default_check")]
    pub check: bool,
    /// The support probability at which a sentence is supported.
    #[serde(default = "default_support_threshold")]
    pub support_threshold: f32,
}

fn default_check() -> bool {
    true
}

fn default_support_threshold() -> f32 {
    cairn_core::config::CriticConfig::default().support_threshold
}

/// What a generation replica streams back to the coordinator's inbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum GenEvent {
    /// This replica took the request.
    Start {
        node: String,
        model: String,
    },
    /// This replica is generating another answer: ask another.
    Busy {
        node: String,
    },
    Token {
        text: String,
    },
    /// Still working (sent every second while generating).
    Alive,
    /// What was streamed is withdrawn (the check found it unsupported) and
    /// a stricter attempt follows.
    Restart {
        why: String,
    },
    /// The finished answer.
    Done {
        answer: Box<cairn_engine::Answer>,
    },
    Error {
        node: String,
        message: String,
    },
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_round_trip_exactly() {
        let op = Op::Upsert {
            doc: DocumentRecord {
                path: "/d/a.md".into(),
                doc: "a.md".into(),
                root: "/d".into(),
                hash: "h".into(),
                mtime_ns: 7,
                size: 5,
                format: "markdown".into(),
                text: "hello".into(),
            },
            chunks: vec![NewChunk {
                ord: 0,
                text: "hello".into(),
                start: 0,
                end: 5,
                heading: "A".into(),
                vector: vec![0.1, -2.5e-7, f32::MAX, 1.0 / 3.0],
            }],
        };
        let json = serde_json::to_vec(&WireOp::from_op(&op)).unwrap();
        let back: WireOp = serde_json::from_slice(&json).unwrap();
        assert_eq!(back.into_op("s").unwrap(), op);
        let del = Op::Delete {
            path: "/d/a.md".into(),
        };
        let json = serde_json::to_vec(&WireOp::from_op(&del)).unwrap();
        let back: WireOp = serde_json::from_slice(&json).unwrap();
        assert_eq!(back.into_op("s").unwrap(), del);
    }

    #[test]
    fn a_bad_vector_names_the_subject() {
        let e = decode_vector("!!", "cairn.ops.c.0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cairn.ops.c.0"), "{e}");
        let e = decode_vector(&B64.encode([1u8, 2, 3]), "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("multiple of 4"), "{e}");
    }
}
