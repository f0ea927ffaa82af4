use std::path::PathBuf;

/// What can go wrong in the cluster layer.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot reach NATS at {url}: {reason} (is `nats-server -js` running there?)")]
    Connect { url: String, reason: String },
    #[error("NATS JetStream {what}: {reason}")]
    JetStream { what: String, reason: String },
    #[error("collection `{0}` does not exist in the cluster (create it with `cairn --cluster URL collection create {0}`, or ingest into it)")]
    NoCollection(String),
    #[error("collection `{name}` already exists with {shards} shards and {replicas} replicas")]
    CollectionExists {
        name: String,
        shards: u32,
        replicas: u32,
    },
    #[error("no Cairn node is alive in the cluster (start one with `cairn node --nats URL --name NAME`)")]
    NoNodes,
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("collection `{collection}` holds vectors of {have} ({have_dim}-dim); this client embeds with {want} ({want_dim}-dim)")]
    ModelMismatch {
        collection: String,
        have: String,
        have_dim: usize,
        want: String,
        want_dim: usize,
    },
    #[error("document {doc} encodes to {bytes} bytes, over the NATS server's max_payload of {max} bytes: raise `max_payload` in nats.conf (e.g. 8MB)")]
    TooLarge {
        doc: String,
        bytes: usize,
        max: usize,
    },
    /// Part of the cluster did not answer (try again when its nodes are back).
    #[error("{0}")]
    Unavailable(String),
    #[error("no generation replica answered: {0}")]
    NoGenerator(String),
    #[error("generation failed on {node}: {message}")]
    Generation { node: String, message: String },
    #[error("malformed message on {subject}: {reason}")]
    Wire { subject: String, reason: String },
    #[error("shard directory {path}: {reason}")]
    Shard { path: PathBuf, reason: String },
    #[error("this replica has applied the shard's log up to {applied}, not yet to {wanted}")]
    Behind { applied: u64, wanted: u64 },
    #[error(transparent)]
    Engine(#[from] cairn_engine::EngineError),
}

/// What a caller of the collection boundary acts on: a missing collection,
/// a wrong input, or a cluster that did not answer (try again).
impl From<ClusterError> for cairn_engine::EngineError {
    fn from(e: ClusterError) -> Self {
        use cairn_engine::EngineError as E;
        match e {
            ClusterError::Engine(e) => e,
            ClusterError::NoCollection(name) => E::NoCollection(name),
            e @ (ClusterError::Invalid { .. }
            | ClusterError::CollectionExists { .. }
            | ClusterError::ModelMismatch { .. }
            | ClusterError::TooLarge { .. }) => E::Invalid(e.to_string()),
            e => E::Unavailable(e.to_string()),
        }
    }
}

impl ClusterError {
    pub(crate) fn js(what: impl Into<String>, e: impl std::fmt::Display) -> ClusterError {
        ClusterError::JetStream {
            what: what.into(),
            reason: e.to_string(),
        }
    }
}
