//! JSON-RPC 2.0 as MCP uses it: message shapes, error codes, protocol
//! version negotiation.

use crate::McpError;
use serde_json::{json, Value};

/// The protocol versions this server speaks, newest first.
pub const PROTOCOL_VERSIONS: &[&str] = &["2025-06-18", "2025-03-26", "2024-11-05"];

/// The newest of [`PROTOCOL_VERSIONS`]: the answer to a client that asks
/// for one this server does not speak.
pub const LATEST_PROTOCOL_VERSION: &str = PROTOCOL_VERSIONS[0];

/// JSON-RPC error codes.
pub mod code {
    pub const PARSE_ERROR: i64 = -32700;
    pub const INVALID_REQUEST: i64 = -32600;
    pub const METHOD_NOT_FOUND: i64 = -32601;
    pub const INVALID_PARAMS: i64 = -32602;
    pub const INTERNAL_ERROR: i64 = -32603;
    /// MCP's "resource not found".
    pub const RESOURCE_NOT_FOUND: i64 = -32002;
}

/// The version to answer `initialize` with: the client's when this server
/// speaks it, else the newest this server speaks (the client then decides
/// whether it can go on).
pub fn negotiate(requested: &str) -> &'static str {
    PROTOCOL_VERSIONS
        .iter()
        .find(|v| **v == requested)
        .copied()
        .unwrap_or(LATEST_PROTOCOL_VERSION)
}

/// A success response.
pub fn response(id: &Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

/// An error response (`id` null when the request's id could not be read).
pub fn error_response(id: &Value, e: &McpError) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": e.to_json() })
}

/// What a transport needs to know about a message before handling it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inspect {
    /// It holds at least one request (something to answer); a message of
    /// notifications and responses only gets no reply.
    pub has_requests: bool,
    /// It is an `initialize` request.
    pub initialize: bool,
    /// The tools it calls, by name (`tools/call`).
    pub tool_calls: Vec<String>,
}

impl Inspect {
    /// Look at a parsed message (one object, or a batch).
    pub fn of(message: &Value) -> Inspect {
        let mut out = Inspect::default();
        let one = |m: &Value, out: &mut Inspect| {
            let Some(method) = m.get("method").and_then(Value::as_str) else {
                return;
            };
            if m.get("id").is_some() {
                out.has_requests = true;
                if method == "initialize" {
                    out.initialize = true;
                }
            }
            if method == "tools/call" {
                if let Some(name) = m.pointer("/params/name").and_then(Value::as_str) {
                    out.tool_calls.push(name.to_string());
                }
            }
        };
        match message {
            Value::Array(items) => {
                for m in items {
                    one(m, &mut out);
                }
                // An empty batch is answered with an error.
                if items.is_empty() {
                    out.has_requests = true;
                }
                // `initialize` must be alone.
                if items.len() > 1 {
                    out.initialize = false;
                }
            }
            m => one(m, &mut out),
        }
        out
    }
}

/// A JSON-RPC message, checked: a request (with its id), a notification,
/// or a response from the client (which this server never asked for and
/// ignores).
pub(crate) enum Message<'a> {
    Request {
        id: &'a Value,
        method: &'a str,
        params: Option<&'a Value>,
    },
    Notification {
        method: &'a str,
    },
    Response,
}

/// Check one message's envelope. An invalid one gives the id to answer
/// with (null when unreadable) and why.
pub(crate) fn parse_message(m: &Value) -> Result<Message<'_>, (Value, McpError)> {
    let id = m.get("id");
    let id_or_null = || match id {
        Some(v @ (Value::String(_) | Value::Number(_))) => v.clone(),
        _ => Value::Null,
    };
    let Some(obj) = m.as_object() else {
        return Err((
            Value::Null,
            McpError::InvalidRequest("a message must be a JSON object".into()),
        ));
    };
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err((
            id_or_null(),
            McpError::InvalidRequest("`jsonrpc` must be \"2.0\"".into()),
        ));
    }
    if let Some(id) = id {
        if !matches!(id, Value::String(_) | Value::Number(_)) {
            return Err((
                Value::Null,
                McpError::InvalidRequest("`id` must be a string or a number".into()),
            ));
        }
    }
    let params = obj.get("params");
    if let Some(p) = params {
        if !p.is_object() && !p.is_array() {
            return Err((
                id_or_null(),
                McpError::InvalidRequest("`params` must be an object".into()),
            ));
        }
    }
    match (obj.get("method"), id) {
        (Some(Value::String(method)), Some(id)) => Ok(Message::Request { id, method, params }),
        (Some(Value::String(method)), None) => Ok(Message::Notification { method }),
        (Some(_), _) => Err((
            id_or_null(),
            McpError::InvalidRequest("`method` must be a string".into()),
        )),
        (None, Some(_)) if obj.contains_key("result") || obj.contains_key("error") => {
            Ok(Message::Response)
        }
        (None, _) => Err((id_or_null(), McpError::InvalidRequest("no `method`".into()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_negotiated() {
        assert_eq!(negotiate("2025-06-18"), "2025-06-18");
        assert_eq!(negotiate("2025-03-26"), "2025-03-26");
        assert_eq!(negotiate("2024-11-05"), "2024-11-05");
        assert_eq!(negotiate("2099-01-01"), LATEST_PROTOCOL_VERSION);
        assert_eq!(negotiate(""), LATEST_PROTOCOL_VERSION);
    }

    #[test]
    fn envelopes_are_checked() {
        let ok = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
        assert!(matches!(
            parse_message(&ok),
            Ok(Message::Request { method: "ping", .. })
        ));
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        assert!(matches!(
            parse_message(&note),
            Ok(Message::Notification { .. })
        ));
        let resp = json!({"jsonrpc": "2.0", "id": 3, "result": {}});
        assert!(matches!(parse_message(&resp), Ok(Message::Response)));
        for (bad, id) in [
            (json!({"id": 1, "method": "ping"}), json!(1)),
            (
                json!({"jsonrpc": "1.0", "id": "a", "method": "ping"}),
                json!("a"),
            ),
            (
                json!({"jsonrpc": "2.0", "id": null, "method": "ping"}),
                Value::Null,
            ),
            (
                json!({"jsonrpc": "2.0", "id": {}, "method": "ping"}),
                Value::Null,
            ),
            (json!({"jsonrpc": "2.0", "id": 2, "method": 7}), json!(2)),
            (json!({"jsonrpc": "2.0", "id": 2}), json!(2)),
            (
                json!({"jsonrpc": "2.0", "id": 2, "method": "x", "params": 5}),
                json!(2),
            ),
            (json!([1]), Value::Null),
        ] {
            match parse_message(&bad) {
                Err((got, e)) => {
                    assert_eq!(got, id, "{bad}");
                    assert_eq!(e.code(), code::INVALID_REQUEST, "{bad}");
                }
                Ok(_) => panic!("accepted {bad}"),
            }
        }
    }

    #[test]
    fn inspection_finds_requests_and_tool_calls() {
        let i = Inspect::of(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize"}));
        assert!(i.has_requests && i.initialize);
        let i = Inspect::of(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        assert!(!i.has_requests && !i.initialize);
        let i = Inspect::of(&json!([
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "ask"}}
        ]));
        assert!(i.has_requests && !i.initialize);
        assert_eq!(i.tool_calls, vec!["ask".to_string()]);
        assert!(Inspect::of(&json!([])).has_requests);
    }
}
