//! Cairn's cluster layer, on NATS JetStream.
//!
//! A collection has S shards (a document goes to shard `hash(path) mod S`),
//! each held by R nodes. Each shard's writes go through its own JetStream
//! stream — the replicated, durable log, with `min(3, NATS servers)` stream
//! replicas — and every node holding the shard consumes it with a durable
//! consumer and applies each entry through the same `Catalog::apply` path as
//! single-node ingest, with the stream sequence as the catalog sequence (its
//! watermark: replay is a no-op). Embeddings are computed once, by the
//! ingesting client, and carried in the log.
//!
//! Membership and assignment live in two JetStream key-value buckets:
//! `cairn-nodes` (heartbeats that expire) and `cairn-collections` (shape and
//! assignment, changed only by compare-and-set). Searches scatter to one
//! queue group per shard (one live replica answers), gather with a
//! per-shard deadline, and fuse after gathering. Generation goes to the
//! `cairn.generate` queue group; tokens stream back over an inbox.
//!
//! Nothing here is a consensus protocol of its own: ordering, durability,
//! replication and compare-and-set are JetStream's.

mod client;
mod collection;
mod error;
pub mod learned;
pub mod merge;
mod node;
pub mod placement;
pub mod snapshot;
pub mod wire;

#[cfg(test)]
mod search_tests;

pub use client::{
    Cluster, ClusterStatus, CollectionStatus, KnownDocuments, ReplicaStatus, SearchResult,
    ShardStatus,
};
pub use collection::{ClusterCollection, ClusterCollections, FEEDBACK_BUCKET};
pub use error::ClusterError;
pub use node::{run_node, NodeOptions, Trainer};

pub type Result<T, E = ClusterError> = std::result::Result<T, E>;

use std::time::Duration;

/// Heartbeat period of a node.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A node whose heartbeat is older than this is gone from `cairn-nodes`.
pub const NODE_TTL: Duration = Duration::from_secs(5);
/// KV bucket of node heartbeats.
pub const NODES_BUCKET: &str = "cairn-nodes";
/// KV bucket of collection shapes and shard assignments.
pub const COLLECTIONS_BUCKET: &str = "cairn-collections";
/// Queue group and subject of generation replicas.
pub const GENERATE_SUBJECT: &str = "cairn.generate";

/// Collection names in subjects and stream names: `.` separates subject
/// tokens and is not allowed in stream names.
fn token(collection: &str) -> String {
    collection.replace('.', "~")
}

/// The JetStream stream holding one shard's log.
pub fn stream_name(collection: &str, shard: u32) -> String {
    format!("CAIRN_{}_{shard}", token(collection))
}

/// The subject a shard's ops are published on.
pub fn ops_subject(collection: &str, shard: u32) -> String {
    format!("cairn.ops.{}.{shard}", token(collection))
}

/// The subject (and queue group) a shard's replicas answer searches on.
pub fn search_subject(collection: &str, shard: u32) -> String {
    format!("cairn.search.{}.{shard}", token(collection))
}

/// The subject one node answers on for several of its shards at once
/// ([`wire::NodeAsk`]): a search round costs one request per node instead
/// of one per shard. Node names are subject-safe ([`validate_node_name`]).
pub fn node_subject(node: &str) -> String {
    format!("cairn.node.{node}.ask")
}

/// The local collection a node keeps one shard in.
pub fn shard_collection(collection: &str, shard: u32) -> String {
    format!("{collection}.shard{shard}")
}

/// The shard of a document: the first 8 bytes of BLAKE3 of its key, mod S.
pub fn shard_of(doc_key: &str, shards: u32) -> u32 {
    let h = blake3::hash(doc_key.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.as_bytes()[..8]);
    (u64::from_le_bytes(b) % shards.max(1) as u64) as u32
}

/// Node names become consumer names and KV keys.
pub fn validate_node_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 48
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ClusterError::Invalid {
            field: "name",
            reason: format!("`{name}`: use 1-48 characters from [A-Za-z0-9_-]"),
        })
    }
}

/// Cluster collection names: a local collection name short enough to take a
/// `.shardN` suffix.
pub fn validate_cluster_collection(name: &str) -> Result<()> {
    cairn_core::config::validate_collection_name(name).map_err(|e| ClusterError::Invalid {
        field: "collection",
        reason: e.to_string(),
    })?;
    if name.len() > 48 {
        return Err(ClusterError::Invalid {
            field: "collection",
            reason: format!("`{name}`: cluster collection names have at most 48 characters"),
        });
    }
    Ok(())
}

/// The initial assignment: shard `i` on nodes `i, i+1, …, i+R-1` (mod N) of
/// the sorted live nodes, so shards and their copies spread evenly.
pub fn initial_assignment(nodes: &[String], shards: u32, replicas: u32) -> Vec<Vec<String>> {
    let mut nodes = nodes.to_vec();
    nodes.sort();
    let n = nodes.len();
    (0..shards as usize)
        .map(|i| {
            (0..(replicas as usize).min(n))
                .map(|j| nodes[(i + j) % n].clone())
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_nats_tokens() {
        assert_eq!(stream_name("py.docs", 3), "CAIRN_py~docs_3");
        assert_eq!(ops_subject("py.docs", 3), "cairn.ops.py~docs.3");
        assert!(validate_node_name("mini-1").is_ok());
        assert!(validate_node_name("a.b").is_err());
        assert!(validate_cluster_collection(&"x".repeat(49)).is_err());
    }

    #[test]
    fn shards_spread_documents() {
        let mut counts = [0u32; 4];
        for i in 0..4000 {
            counts[shard_of(&format!("/docs/{i}.md"), 4) as usize] += 1;
        }
        for c in counts {
            assert!((800..1200).contains(&c), "{counts:?}");
        }
        assert_eq!(shard_of("/a", 4), shard_of("/a", 4));
    }

    #[test]
    fn initial_assignment_balances_copies() {
        let nodes: Vec<String> = ["c", "a", "b"].iter().map(|s| s.to_string()).collect();
        let a = initial_assignment(&nodes, 4, 2);
        assert_eq!(a.len(), 4);
        for s in &a {
            assert_eq!(s.len(), 2);
            assert_ne!(s[0], s[1]);
        }
        let mut per_node = std::collections::HashMap::new();
        for n in a.iter().flatten() {
            *per_node.entry(n.clone()).or_insert(0) += 1;
        }
        assert!(
            per_node.values().all(|&c| (2..=3).contains(&c)),
            "{per_node:?}"
        );
        // More replicas than nodes: every node, once.
        assert_eq!(
            initial_assignment(&nodes[..1], 2, 2),
            vec![vec!["c".to_string()]; 2]
        );
    }
}
