//! `/mcp`: the Model Context Protocol over streamable HTTP, a transport
//! for [`cairn_mcp::McpServer`] (the same handler `cairn mcp` runs over
//! stdio), behind the same host/origin guard and API keys as every other
//! route; a key limited to some collections reaches only those.
//!
//! - `POST` one JSON-RPC message (or a batch). `initialize` opens a session
//!   and its reply carries `Mcp-Session-Id`; every later request must send
//!   it (400 without, 404 for an unknown or ended one, or one another key
//!   opened). Requests are answered with `application/json` (or one
//!   `text/event-stream` event when the client accepts only that);
//!   notifications and responses get 202 and no body.
//! - `DELETE` with the session id ends the session.
//! - `GET` (a stream of server-initiated messages) is 405: this server
//!   sends none.
//!
//! `ask` waits for the generator queue like `/api/ask` (503 + `Retry-After`
//! when it is full); `ingest` takes documents as `{name, text}`, stored
//! under server-chosen names like REST uploads: a client never names a
//! path on the server.

use crate::auth::Access;
use crate::error::ApiError;
use crate::state::{blocking, AppState};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use cairn_mcp::{DocumentStore, Inspect, McpServer, PROTOCOL_VERSIONS};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SESSION_HEADER: &str = "mcp-session-id";
const VERSION_HEADER: &str = "mcp-protocol-version";

/// Documents an MCP client sends, stored as uploads (server-chosen names).
pub struct Uploads {
    pub data_dir: PathBuf,
}

impl DocumentStore for Uploads {
    fn store(&self, collection: &str, name: &str, text: &str) -> Result<(PathBuf, String), String> {
        crate::uploads::store(&self.data_dir, collection, name, text.as_bytes())
            .map_err(|e| e.to_string())
    }
}

/// The handler and sessions of `/mcp`.
pub struct Mcp {
    pub server: Arc<McpServer>,
    pub sessions: cairn_mcp::Sessions,
}

impl Mcp {
    pub fn new(
        cfg: &cairn_core::config::Config,
        collections: Arc<dyn cairn_engine::Collections>,
    ) -> Mcp {
        let mut opts = cairn_mcp::Options::from_config(
            cfg,
            cairn_mcp::IngestFrom::Documents(Arc::new(Uploads {
                data_dir: cfg.data_dir(),
            })),
        );
        opts.ask_timeout = Some(Duration::from_secs(cfg.server.generate_timeout_secs));
        Mcp {
            server: Arc::new(McpServer::new(collections, opts)),
            sessions: cairn_mcp::Sessions::new(1024, Duration::from_secs(3600)),
        }
    }
}

/// An HTTP error with a JSON-RPC error body (id null).
fn rpc_error(status: StatusCode, code: i64, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({
            "jsonrpc": "2.0",
            "id": null,
            "error": { "code": code, "message": message.into() },
        })),
    )
        .into_response()
}

fn header_str(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// How to send the reply: JSON, or one server-sent event when the client
/// accepts only that; `None` when it accepts neither.
fn reply_as(headers: &HeaderMap) -> Option<bool> {
    let Some(accept) = header_str(headers, header::ACCEPT) else {
        return Some(false);
    };
    let accept = accept.to_ascii_lowercase();
    let has = |t: &str| accept.split(',').any(|p| p.trim().starts_with(t));
    if has("application/json") || has("*/*") || has("application/*") {
        Some(false)
    } else if has("text/event-stream") || has("text/*") {
        Some(true)
    } else {
        None
    }
}

fn reply(reply: Value, sse: bool) -> Response {
    if sse {
        let body = format!("event: message\ndata: {reply}\n\n");
        (
            [
                (header::CONTENT_TYPE, "text/event-stream"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            body,
        )
            .into_response()
    } else {
        axum::Json(reply).into_response()
    }
}

/// `POST /mcp`.
pub async fn post(
    State(state): State<Arc<AppState>>,
    Extension(access): Extension<Access>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let arrived = Instant::now();
    let ctype = header_str(&headers, header::CONTENT_TYPE).unwrap_or("");
    if !ctype.to_ascii_lowercase().starts_with("application/json") {
        return rpc_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            -32600,
            "send JSON-RPC messages as `Content-Type: application/json`",
        );
    }
    let Some(sse) = reply_as(&headers) else {
        return rpc_error(
            StatusCode::NOT_ACCEPTABLE,
            -32600,
            "the Accept header must allow application/json or text/event-stream",
        );
    };
    if let Some(v) = header_str(&headers, VERSION_HEADER) {
        if !PROTOCOL_VERSIONS.contains(&v) {
            return rpc_error(
                StatusCode::BAD_REQUEST,
                -32600,
                format!(
                    "MCP-Protocol-Version `{v}` is not supported (supported: {})",
                    PROTOCOL_VERSIONS.join(", ")
                ),
            );
        }
    }
    let message: Value = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => {
            return rpc_error(StatusCode::BAD_REQUEST, -32700, format!("parse error: {e}"));
        }
    };
    let inspect = Inspect::of(&message);
    let caller = access.clone();
    let mcp = state.mcp.clone();
    if inspect.initialize {
        let c = caller.clone();
        let server = mcp.server.clone();
        let out = blocking(move || Ok(server.handle(&message, &c))).await;
        let out = match out {
            Ok(Some(r)) => r,
            Ok(None) => return StatusCode::ACCEPTED.into_response(),
            Err(e) => return e.into_response(),
        };
        let Some(version) = out
            .pointer("/result/protocolVersion")
            .and_then(Value::as_str)
        else {
            return reply(out, sse);
        };
        let id = match mcp.sessions.create(version, caller) {
            Ok(id) => id,
            Err(e) => return ApiError::Internal(e.to_string()).into_response(),
        };
        tracing::info!(version, "MCP session opened");
        let mut resp = reply(out, sse);
        if let Ok(v) = HeaderValue::from_str(&id) {
            resp.headers_mut().insert(SESSION_HEADER, v);
        }
        return resp;
    }
    let Some(id) = header_str(&headers, SESSION_HEADER) else {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            -32600,
            "no Mcp-Session-Id header: send `initialize` first and the session id it returns with every request",
        );
    };
    if mcp.sessions.get(id, &caller).is_none() {
        return rpc_error(
            StatusCode::NOT_FOUND,
            -32600,
            "no such MCP session (it ended or expired): send `initialize` again",
        );
    }
    if !inspect.has_requests {
        // Notifications (initialized, cancelled) and responses: nothing to answer.
        return StatusCode::ACCEPTED.into_response();
    }
    if state.stopping.load(Ordering::SeqCst) {
        return ApiError::ShuttingDown.into_response();
    }
    // An answer waits for the generator like any other.
    let permit = if inspect.tool_calls.iter().any(|t| t == "ask") {
        let limit = Duration::from_secs(state.cfg.server.generate_timeout_secs);
        match state
            .queue
            .acquire_until(&state.metrics, arrived + limit)
            .await
        {
            Ok(p) => Some(p),
            Err(e) => return e.into_response(),
        }
    } else {
        None
    };
    let server = mcp.server.clone();
    let out = blocking(move || {
        let _permit = permit;
        Ok(server.handle(&message, &caller))
    })
    .await;
    match out {
        Ok(Some(r)) => reply(r, sse),
        Ok(None) => StatusCode::ACCEPTED.into_response(),
        Err(e) => e.into_response(),
    }
}

/// `DELETE /mcp`: end the session.
pub async fn delete(
    State(state): State<Arc<AppState>>,
    Extension(access): Extension<Access>,
    headers: HeaderMap,
) -> Response {
    let Some(id) = header_str(&headers, SESSION_HEADER) else {
        return rpc_error(
            StatusCode::BAD_REQUEST,
            -32600,
            "no Mcp-Session-Id header: name the session to end",
        );
    };
    if state.mcp.sessions.remove(id, &access) {
        tracing::info!("MCP session ended");
        StatusCode::NO_CONTENT.into_response()
    } else {
        rpc_error(StatusCode::NOT_FOUND, -32600, "no such MCP session")
    }
}

/// `GET /mcp`: this server sends no messages of its own.
pub async fn get() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "POST, DELETE")],
        "this MCP server sends no messages of its own: POST requests to /mcp",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers_pick_the_reply() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
            m
        };
        assert_eq!(reply_as(&HeaderMap::new()), Some(false));
        assert_eq!(
            reply_as(&h("application/json, text/event-stream")),
            Some(false)
        );
        assert_eq!(reply_as(&h("*/*")), Some(false));
        assert_eq!(reply_as(&h("text/event-stream")), Some(true));
        assert_eq!(reply_as(&h("text/html")), None);
    }
}
