//! The handler: one JSON-RPC message in, the reply (if any) out.

use crate::protocol::{self, Message};
use crate::McpError;
use cairn_core::config::Config;
use cairn_core::SearchMode;
use cairn_engine::{AskOptions, Collection, Collections};
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where `ingest` takes documents from.
#[derive(Clone)]
pub enum IngestFrom {
    /// Files and directories on this machine, by path: for a client on the
    /// same machine as the server and the same user (stdio).
    Paths,
    /// Documents the client sends, `{name, text}`, stored by the transport
    /// under names it picks: a remote client never names a path here.
    Documents(Arc<dyn DocumentStore>),
}

/// Where documents sent by a client are kept before they are ingested.
pub trait DocumentStore: Send + Sync {
    /// Store `text` as the document called `name` (the client's name: the
    /// store sanitises it) for `collection`; returns the file to ingest and
    /// the name to show for it. An error message names what is wrong.
    fn store(&self, collection: &str, name: &str, text: &str) -> Result<(PathBuf, String), String>;
}

/// Who is calling: what an HTTP API key may touch (stdio: everything).
pub use cairn_engine::Scope;

/// Settings of the handler: defaults for the tools' optional arguments,
/// and limits.
#[derive(Clone)]
pub struct Options {
    /// The collection a call without `collection` uses.
    pub default_collection: String,
    pub search_k: usize,
    pub search_mode: SearchMode,
    /// How `ask` answers (`k` is overridden by the call's).
    pub ask: AskOptions,
    pub ingest: IngestFrom,
    /// An answer still generating after this long is stopped and the call
    /// fails (HTTP: `server.generate_timeout_secs`).
    pub ask_timeout: Option<Duration>,
    /// The most characters `get_document` returns for a whole document
    /// (a call may ask for fewer with `max_chars`).
    pub max_document_chars: usize,
    /// Resources per `resources/list` page.
    pub page_size: usize,
    /// The server's name and version in `initialize`.
    pub name: String,
    pub version: String,
}

impl Options {
    /// The defaults the configuration gives.
    pub fn from_config(cfg: &Config, ingest: IngestFrom) -> Options {
        Options {
            default_collection: cfg.collection.clone(),
            search_k: cfg.search.top_k,
            search_mode: cfg.search.mode,
            ask: AskOptions::from_config(cfg),
            ingest,
            ask_timeout: None,
            max_document_chars: 100_000,
            page_size: 100,
            name: "cairn".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

/// The MCP handler over a set of collections.
pub struct McpServer {
    pub(crate) collections: Arc<dyn Collections>,
    pub(crate) opts: Options,
    /// One answer generated at a time (the generator is one model).
    pub(crate) ask_lock: Mutex<()>,
}

const INSTRUCTIONS: &str = "Cairn answers from the user's own documents. Use `search` to find \
passages, `ask` for an answer with numbered citations, `get_document` to read a cited passage \
(pass the citation's doc, start and end) or a whole document, `list_collections` to see what \
is indexed, and `ingest` to add documents.";

impl McpServer {
    pub fn new(collections: Arc<dyn Collections>, opts: Options) -> McpServer {
        McpServer {
            collections,
            opts,
            ask_lock: Mutex::new(()),
        }
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Handle one line of text (a message, or a batch): the reply to send,
    /// if any. Unparsable text gets a parse error with a null id.
    pub fn handle_text(&self, text: &str, caller: &Scope) -> Option<String> {
        let reply = match serde_json::from_str::<Value>(text) {
            Ok(v) => self.handle(&v, caller),
            Err(e) => Some(protocol::error_response(
                &Value::Null,
                &McpError::Parse(e.to_string()),
            )),
        };
        reply.map(|r| r.to_string())
    }

    /// Handle a parsed message (one object or a batch): the reply, or
    /// `None` for notifications and responses.
    pub fn handle(&self, message: &Value, caller: &Scope) -> Option<Value> {
        match message {
            Value::Array(items) if items.is_empty() => Some(protocol::error_response(
                &Value::Null,
                &McpError::InvalidRequest("an empty batch".into()),
            )),
            Value::Array(items) => {
                let replies: Vec<Value> = items
                    .iter()
                    .filter_map(|m| self.handle_one(m, caller, true))
                    .collect();
                (!replies.is_empty()).then_some(Value::Array(replies))
            }
            m => self.handle_one(m, caller, false),
        }
    }

    fn handle_one(&self, m: &Value, caller: &Scope, in_batch: bool) -> Option<Value> {
        match protocol::parse_message(m) {
            Err((id, e)) => Some(protocol::error_response(&id, &e)),
            Ok(Message::Response) => None,
            Ok(Message::Notification { method }) => {
                tracing::debug!(method, "notification");
                None
            }
            Ok(Message::Request { id, method, params }) => {
                let started = std::time::Instant::now();
                let result = if in_batch && method == "initialize" {
                    Err(McpError::InvalidRequest(
                        "`initialize` may not be part of a batch".into(),
                    ))
                } else {
                    self.request(method, params, caller)
                };
                tracing::info!(
                    method,
                    ms = started.elapsed().as_millis() as u64,
                    ok = result.is_ok(),
                    "request"
                );
                Some(match result {
                    Ok(r) => protocol::response(id, r),
                    Err(e) => protocol::error_response(id, &e),
                })
            }
        }
    }

    fn request(
        &self,
        method: &str,
        params: Option<&Value>,
        caller: &Scope,
    ) -> Result<Value, McpError> {
        let empty = Map::new();
        let params = match params {
            None => &empty,
            Some(Value::Object(p)) => p,
            Some(_) => return Err(McpError::params("params", "must be an object")),
        };
        match method {
            "initialize" => self.initialize(params),
            "ping" => Ok(json!({})),
            "tools/list" => Ok(json!({ "tools": crate::tools::list(&self.opts.ingest) })),
            "tools/call" => self.call_tool(params, caller),
            "resources/list" => self.list_resources(params, caller),
            "resources/read" => self.read_resource(params, caller),
            "resources/templates/list" => Ok(json!({
                "resourceTemplates": [crate::resources::template()]
            })),
            other => Err(McpError::MethodNotFound(other.to_string())),
        }
    }

    fn initialize(&self, params: &Map<String, Value>) -> Result<Value, McpError> {
        let requested = match params.get("protocolVersion") {
            Some(Value::String(v)) => v.as_str(),
            Some(_) => return Err(McpError::params("protocolVersion", "must be a string")),
            None => return Err(McpError::params("protocolVersion", "is missing")),
        };
        let version = protocol::negotiate(requested);
        if let Some(c) = params.get("clientInfo") {
            tracing::info!(client = %c, requested, version, "initialize");
        }
        Ok(json!({
            "protocolVersion": version,
            "capabilities": {
                "tools": { "listChanged": false },
                "resources": { "subscribe": false, "listChanged": false },
            },
            "serverInfo": { "name": self.opts.name, "version": self.opts.version },
            "instructions": INSTRUCTIONS,
        }))
    }

    /// The collection a call names (or the default one), checked against
    /// the caller: an invalid or forbidden name is a bad parameter.
    pub(crate) fn collection_name(
        &self,
        given: Option<&str>,
        field: &str,
        caller: &Scope,
    ) -> Result<String, McpError> {
        let name = given.unwrap_or(&self.opts.default_collection);
        cairn_core::config::validate_collection_name(name)
            .map_err(|e| McpError::params(field, e.to_string()))?;
        if !caller.allows(name) {
            return Err(McpError::params(
                field,
                format!("this API key may not use collection `{name}`"),
            ));
        }
        Ok(name.to_string())
    }

    /// Open a collection (blocking).
    pub(crate) fn open(
        &self,
        name: &str,
        create: bool,
    ) -> Result<Arc<dyn Collection>, cairn_engine::EngineError> {
        self.collections.open(name, create)
    }
}
