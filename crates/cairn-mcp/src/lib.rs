//! Cairn as a [Model Context Protocol](https://modelcontextprotocol.io)
//! server: JSON-RPC 2.0 messages in, JSON-RPC messages out, over any
//! transport. `cairn mcp` runs it over stdio ([`stdio::serve`]);
//! `cairn serve` answers it at `/mcp` (streamable HTTP, in `cairn-server`,
//! with [`Sessions`]).
//!
//! **A layer, not a fork.** Every tool and resource goes through the
//! collection boundary ([`cairn_engine::Collections`] /
//! [`cairn_engine::Collection`]) exactly as the CLI and the REST API do, so
//! it works on a local data directory and on a cluster alike (what a kind
//! of collection cannot do is a tool error naming it). Calls block: an
//! async transport runs [`McpServer::handle`] on a blocking thread.
//!
//! Tools: `search`, `ask` (with citations), `ingest` (paths on this machine
//! over stdio, `{name, text}` documents over HTTP: [`IngestFrom`]),
//! `list_collections`, `get_document` (a passage by its citation, or a
//! document's text, bounded). Resources: every document,
//! `cairn://<collection>/<percent-encoded document path>`.

pub mod protocol;
mod resources;
mod server;
mod session;
pub mod stdio;
mod tools;

pub use protocol::{negotiate, Inspect, LATEST_PROTOCOL_VERSION, PROTOCOL_VERSIONS};
pub use resources::{document_uri, parse_uri};
pub use server::{DocumentStore, IngestFrom, McpServer, Options, Scope};
pub use session::{Session, Sessions};

/// Errors of the MCP layer: each is a JSON-RPC error with its code
/// ([`McpError::code`]); a tool that fails is not one of them but a result
/// with `isError: true`.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    /// The message is not JSON.
    #[error("parse error: {0}")]
    Parse(String),
    /// JSON, but not a JSON-RPC 2.0 request or notification.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("method not found: `{0}`")]
    MethodNotFound(String),
    /// A parameter is missing or wrong; `field` names it (`arguments.k`,
    /// `uri`, `protocolVersion`).
    #[error("{field}: {message}")]
    InvalidParams { field: String, message: String },
    /// `resources/read` of a resource that does not exist.
    #[error("resource not found: {0}")]
    ResourceNotFound(String),
    #[error("{0}")]
    Internal(String),
    /// The transport failed (stdin closed mid-line, stdout gone).
    #[error("reading or writing the transport: {0}")]
    Io(#[from] std::io::Error),
}

impl McpError {
    pub(crate) fn params(field: impl Into<String>, message: impl Into<String>) -> McpError {
        McpError::InvalidParams {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The JSON-RPC error code.
    pub fn code(&self) -> i64 {
        use protocol::code;
        match self {
            McpError::Parse(_) => code::PARSE_ERROR,
            McpError::InvalidRequest(_) => code::INVALID_REQUEST,
            McpError::MethodNotFound(_) => code::METHOD_NOT_FOUND,
            McpError::InvalidParams { .. } => code::INVALID_PARAMS,
            McpError::ResourceNotFound(_) => code::RESOURCE_NOT_FOUND,
            McpError::Internal(_) | McpError::Io(_) => code::INTERNAL_ERROR,
        }
    }

    /// The JSON-RPC error object: `{code, message, data?}` (`data.field`
    /// names the parameter at fault).
    pub fn to_json(&self) -> serde_json::Value {
        let mut e = serde_json::json!({ "code": self.code(), "message": self.to_string() });
        match self {
            McpError::InvalidParams { field, .. } => {
                e["data"] = serde_json::json!({ "field": field });
            }
            McpError::ResourceNotFound(uri) => {
                e["data"] = serde_json::json!({ "uri": uri });
            }
            _ => {}
        }
        e
    }
}
