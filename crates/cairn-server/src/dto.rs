//! The REST API's request and response bodies (their OpenAPI schemas come
//! from these types). Where the engine's own type is what a client sees —
//! a hit, a citation, a sentence's support, a feedback record — it is used
//! as it is.

use crate::jobs::Job;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub version: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionOut {
    pub name: String,
    pub documents: u64,
    pub chunks: u64,
    pub embed_model: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionsOut {
    pub collections: Vec<CollectionOut>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCollection {
    /// `[A-Za-z0-9_-]`, at most 64 characters.
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentOut {
    pub id: u64,
    /// Display name (the uploaded file's name, or the path under the ingest root).
    pub name: String,
    pub format: String,
    pub size: u64,
    pub chunks: u64,
    /// Catalog sequence of its last change.
    pub seq: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentsOut {
    pub documents: Vec<DocumentOut>,
}

/// A document sent as JSON text.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TextDocument {
    /// File name; its extension picks the format (`.md`, `.html`, `.txt`, …).
    pub name: String,
    pub text: String,
}

/// Files sent as multipart/form-data: one or more `file` parts, each with
/// a filename (the document's display name).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    #[schema(value_type = Vec<String>, format = Binary)]
    file: Vec<Vec<u8>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobResponse {
    pub job: Job,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobsOut {
    pub jobs: Vec<Job>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// The query.
    pub q: String,
    /// Collection (default: the configured one).
    pub collection: Option<String>,
    /// Number of hits, 1 to 100 (default: search.top_k).
    pub k: Option<usize>,
    /// hybrid, dense or bm25 (default: search.mode).
    pub mode: Option<String>,
}

/// A ranked passage (the engine's own type).
pub use cairn_core::Hit as HitOut;
/// One sentence of an answer and the sources that support it (the
/// critic's own type).
pub use cairn_critic::support::SentenceSupport as SentenceOut;
/// A cited source (the engine's own type).
pub use cairn_generate::citations::Citation as CitationOut;
/// A rating of an answer (the catalog's own type).
pub use cairn_store::Rating as RatingIn;
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchOut {
    pub collection: String,
    pub hits: Vec<HitOut>,
    pub took_ms: f64,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct MessageIn {
    /// user or assistant.
    pub role: String,
    pub content: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AskRequest {
    pub question: String,
    /// Collection (default: the configured one).
    pub collection: Option<String>,
    /// Passages to retrieve, 1 to 100.
    pub k: Option<usize>,
    /// hybrid, dense or bm25.
    pub mode: Option<String>,
    /// Answer as server-sent events (`token` events, then `done`).
    #[serde(default)]
    pub stream: bool,
    /// Earlier turns, oldest first.
    #[serde(default)]
    pub history: Vec<MessageIn>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TimingsOut {
    pub embed: f64,
    pub search: f64,
    /// The critic: grading, checking and extracting.
    pub critic: Option<f64>,
    pub first_token: Option<f64>,
    /// Generation, every attempt.
    pub generate: Option<f64>,
    pub total: f64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AnswerOut {
    /// Refer to this answer in `POST /api/feedback`.
    pub answer_id: String,
    pub collection: String,
    /// The answer, with `[n]` markers that point into `citations`.
    pub answer: String,
    /// False when no passage was relevant enough to answer from.
    pub answered: bool,
    pub citations: Vec<CitationOut>,
    pub retrieved: Vec<HitOut>,
    pub model: String,
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    /// stop, length or cancelled; null when nothing was generated.
    pub finish_reason: Option<String>,
    pub timings_ms: TimingsOut,
    /// How the answer was made: generated, regenerated (a second attempt
    /// after the check), extractive, fallback-extractive (nothing generated
    /// was supported), not-covered.
    pub strategy: String,
    /// The critic that checked the answer; null when nothing was checked.
    pub critic: Option<String>,
    /// The answer was written under the grammar that puts a source marker
    /// on every sentence (the embedded engine's strict second attempt).
    pub grammar: bool,
    /// Each sentence of the answer with the sources that support it; a
    /// sentence with `supported: false` states what no source supports.
    pub sentences: Vec<SentenceOut>,
    /// On a cluster: which shards were searched and which generation
    /// replica answered. Absent for a local collection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterOut>,
}

/// Where a cluster's answer came from.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClusterOut {
    pub shards_ok: u32,
    pub shards_total: u32,
    /// The generation replica that wrote the answer (null: none generated).
    pub node: Option<String>,
    /// Replicas that failed mid-answer before this one (the answer was
    /// started again, once).
    pub failed_replicas: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackIn {
    pub answer_id: String,
    pub rating: RatingIn,
    pub comment: Option<String>,
    /// Citation numbers the user found helpful.
    #[serde(default)]
    pub helpful_citations: Vec<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FeedbackCreated {
    pub id: i64,
    pub collection: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FeedbackParams {
    /// Collection (default: the configured one).
    pub collection: Option<String>,
    /// At most this many records, newest first (default 100, at most 1000).
    pub limit: Option<usize>,
}

/// A rating with the answer it is about (the feedback log's record) and
/// its collection.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeedbackOut {
    pub collection: String,
    #[serde(flatten)]
    pub record: cairn_engine::FeedbackRecord,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FeedbackList {
    pub feedback: Vec<FeedbackOut>,
}
