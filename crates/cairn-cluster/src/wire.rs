//! What travels over NATS: JSON bodies with vectors as base64 little-endian
//! f32 (exact, a third larger than raw bytes, far smaller than JSON floats),
//! and, on the search path, a compact binary protocol ([`ShardAsk`],
//! [`ShardAnswer`]) for the statistics round and the two-phase fetch.

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
    /// Memory available to new work (Linux's `MemAvailable`), in bytes,
    /// when known: `cairn improve` trains on the node with the most.
    #[serde(default)]
    pub free_memory: Option<u64>,
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
    /// The collection asked: the replica answers with the generator
    /// adapter the collection learned (`cairn improve`), if any.
    #[serde(default)]
    pub collection: Option<String>,
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

/// `cairn --cluster URL improve`: one round, run by the node it is sent
/// to on its copy of one shard of `collection`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImproveRequest {
    pub collection: String,
    /// The round's options, as the binary's trainer reads them.
    pub options: serde_json::Value,
}

/// What a training node streams back to the requester's inbox.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ImproveEvent {
    /// The round started on this node's copy of `shard`.
    Start {
        node: String,
        shard: u32,
    },
    /// Still training (every few seconds).
    Alive,
    /// The round's record; `version` is what the collection learned from
    /// it, published for every node, when it promoted something.
    Done {
        record: serde_json::Value,
        version: Option<u32>,
    },
    Error {
        node: String,
        message: String,
    },
}

// ---------------------------------------------------------------------------
// The search path's binary protocol (two-phase fetch).
//
// A shard's search subject takes two kinds of body: JSON (a
// [`SearchRequest`], whose first byte is `{`), and the binary one below,
// whose first byte is [`BINARY`] and the rest a [postcard] encoding of a
// [`ShardAsk`]; a binary ask gets a binary [`ShardAnswer`] back (the same
// first byte, then postcard). Scores and vectors travel as their exact
// little-endian f32 bytes, integers as varints.
//
// [postcard]: https://postcard.jamesmunns.com/wire-format

/// The first byte of a binary message on a shard's search subject (JSON
/// bodies start with `{`).
pub const BINARY: u8 = 0xCB;

/// Encode a binary message: [`BINARY`], then postcard.
pub fn encode_binary<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising these plain structs into a Vec cannot fail.
    postcard::to_extend(value, vec![BINARY]).unwrap_or_else(|_| vec![BINARY])
}

/// Decode a binary message from `subject`, naming what was expected.
pub fn decode_binary<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    subject: &str,
    what: &str,
) -> Result<T> {
    match bytes.split_first() {
        Some((&BINARY, rest)) => postcard::from_bytes(rest).map_err(|e| ClusterError::Wire {
            subject: subject.to_string(),
            reason: format!("{what}: {e}"),
        }),
        _ => Err(ClusterError::Wire {
            subject: subject.to_string(),
            reason: format!(
                "{what}: not a binary message (first byte {:?}, want {BINARY:#x})",
                bytes.first()
            ),
        }),
    }
}

/// A binary request to one shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardAsk {
    /// Answer only once the shard's indexes have applied this log sequence
    /// (read your writes, as [`SearchRequest::min_applied`]).
    pub min_applied: Option<Seq>,
    pub ask: Ask,
}

/// What a binary request asks a shard for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Ask {
    /// The first round of a BM25 or hybrid search: the shard's BM25 term
    /// statistics for the query.
    Stats { query: String },
    /// Phase 1: the dense and BM25 candidate lists as chunk ids and scores,
    /// without texts (BM25 scored with `bm25_stats`, the collection-wide
    /// statistics, when given).
    Candidates {
        query: String,
        /// The query embedding; needed unless the mode is BM25.
        vector: Option<Vec<f32>>,
        /// How many of each list.
        n: u32,
        mode: SearchMode,
        bm25_stats: Option<Bm25Stats>,
        /// Also each candidate's document (for the per-document cap).
        documents: bool,
    },
    /// Phase 2: the passages of these chunks (of the fused top k), with
    /// their cosine to `vector` (0 without one), read from a catalog that
    /// has applied exactly the log sequence `at` (phase 1's).
    Passages {
        chunks: Vec<u64>,
        vector: Option<Vec<f32>>,
        at: Seq,
    },
}

/// A candidate of phase 1: a chunk of the shard and its score in one list.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub chunk: u64,
    pub score: f32,
    /// The chunk's document (a shard's own id), when asked for and known.
    pub doc: Option<u64>,
}

/// A shard's two candidate lists, unfused.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Candidates {
    pub dense: Vec<Candidate>,
    pub bm25: Vec<Candidate>,
}

/// What phase 2 returns for one chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Passage {
    pub doc: String,
    pub heading: String,
    pub start: u64,
    pub end: u64,
    pub text: String,
    pub cosine: f32,
}

/// A shard's binary answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardAnswer {
    pub node: String,
    /// The log sequence the shard's catalog had applied (for
    /// [`Ask::Passages`]: after reading them).
    pub applied: Seq,
    /// Milliseconds the shard spent answering.
    pub took_ms: f64,
    pub body: Answer,
}

/// Several shards' asks of one collection, to one node that holds them all
/// ([`crate::node_subject`]), in one message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeAsk {
    pub collection: String,
    pub asks: Vec<(u32, ShardAsk)>,
    /// The asks are every shard's [`Ask::Candidates`] of one BM25 or
    /// hybrid search: the node sums the shards' BM25 statistics itself and
    /// scores each with the sum, so the statistics round is skipped. A node
    /// that does not serve every one of them answers `None` to all.
    pub pooled_stats: bool,
}

/// A node's answers to a [`NodeAsk`], one per ask in its order: `None`
/// for a shard the node does not serve (not assigned, or still catching
/// up), which the asker then asks through the shard's queue group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeAnswer {
    pub answers: Vec<Option<ShardAnswer>>,
}

/// The body of a [`ShardAnswer`], one kind per [`Ask`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Answer {
    Error(String),
    Stats(Bm25Stats),
    Candidates(Candidates),
    /// In the order asked; `None` for a chunk the catalog does not hold.
    Passages(Vec<Option<Passage>>),
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
    fn binary_asks_and_answers_round_trip_exactly() {
        let mut stats = Bm25Stats {
            docs: 9,
            tokens: [100, 20, 7],
            ..Default::default()
        };
        stats.terms.insert("path".into(), [3, 1, 0]);
        let asks = [
            Ask::Stats {
                query: "join paths".into(),
            },
            Ask::Candidates {
                query: "join paths".into(),
                vector: Some(vec![0.1, -2.5e-7, f32::MAX, 1.0 / 3.0]),
                n: 50,
                mode: SearchMode::Hybrid,
                bm25_stats: Some(stats.clone()),
                documents: true,
            },
            Ask::Passages {
                chunks: vec![0, 7, u64::MAX],
                vector: None,
                at: 42,
            },
        ];
        for ask in asks {
            let ask = ShardAsk {
                min_applied: Some(5),
                ask,
            };
            let bytes = encode_binary(&ask);
            assert_eq!(bytes[0], BINARY);
            assert_eq!(decode_binary::<ShardAsk>(&bytes, "s", "ask").unwrap(), ask);
        }
        let cand = |chunk, score: f32, doc| Candidate { chunk, score, doc };
        let bodies = [
            Answer::Error("no".into()),
            Answer::Stats(stats),
            Answer::Candidates(Candidates {
                dense: vec![cand(3, 0.8125, Some(1)), cand(1 << 40, -0.0, None)],
                bm25: vec![cand(9, 12.345_678, Some(2))],
            }),
            Answer::Passages(vec![
                Some(Passage {
                    doc: "a.md".into(),
                    heading: "A > B".into(),
                    start: 3,
                    end: 70_000,
                    text: "héllo\n".into(),
                    cosine: 0.123_456_79,
                }),
                None,
            ]),
        ];
        for body in bodies {
            let a = ShardAnswer {
                node: "n1".into(),
                applied: 12,
                took_ms: 0.25,
                body,
            };
            let back: ShardAnswer = decode_binary(&encode_binary(&a), "s", "answer").unwrap();
            assert_eq!(back, a);
        }
        // Scores travel as their bits (a JSON float would not keep -0.0).
        let a = Answer::Candidates(Candidates {
            dense: vec![cand(1, -0.0, None)],
            bm25: vec![],
        });
        let Answer::Candidates(c) = decode_binary(&encode_binary(&a), "s", "x").unwrap() else {
            panic!("not candidates")
        };
        assert!(c.dense[0].score.is_sign_negative());
    }

    #[test]
    fn a_bad_binary_message_names_the_subject_and_what_was_expected() {
        let e = decode_binary::<ShardAnswer>(b"{\"node\":1}", "cairn.search.c.3", "shard answer")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cairn.search.c.3") && e.contains("shard answer"),
            "{e}"
        );
        assert!(e.contains("not a binary message"), "{e}");
        let mut bytes = encode_binary(&ShardAsk {
            min_applied: None,
            ask: Ask::Stats {
                query: "a long enough query".into(),
            },
        });
        bytes.truncate(bytes.len() - 4);
        let e = decode_binary::<ShardAsk>(&bytes, "cairn.search.c.0", "shard request")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cairn.search.c.0: shard request"), "{e}");
        assert!(decode_binary::<ShardAsk>(&[], "x", "y").is_err());
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
