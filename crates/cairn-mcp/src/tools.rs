//! The tools: their schemas (`tools/list`) and their calls (`tools/call`).
//!
//! A bad argument is a JSON-RPC error (-32602) naming it
//! (`arguments.k: …`); a call that fails (a missing collection, a
//! document that is not there, an engine error) is a result with
//! `isError: true` and the reason as its text, so a model can read it.

use crate::server::{IngestFrom, McpServer, Scope};
use crate::McpError;
use cairn_core::{NoProgress, SearchMode};
use cairn_engine::{EngineError, IngestOptions, IngestReport};
use cairn_generate::{Flow, TokenSink};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::time::Instant;

/// Longest query or question, in bytes.
const MAX_TEXT: usize = 16_384;
/// Most documents or paths in one `ingest`.
const MAX_INGEST: usize = 1_000;

/// Why a call did not give a result.
enum Fail {
    /// A bad argument: a JSON-RPC error.
    Params(McpError),
    /// The call ran and failed: `isError: true`.
    Tool(String),
}

impl From<McpError> for Fail {
    fn from(e: McpError) -> Fail {
        Fail::Params(e)
    }
}

impl From<EngineError> for Fail {
    fn from(e: EngineError) -> Fail {
        Fail::Tool(e.to_string())
    }
}

type Call = Result<Value, Fail>;

fn hit_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "rank": { "type": "integer", "description": "1 for the best" },
            "score": { "type": "number" },
            "doc": { "type": "string", "description": "The document's path (pass it to get_document)" },
            "chunk": { "type": "integer", "description": "The passage's chunk id in its catalog" },
            "heading": { "type": "string", "description": "Heading path of the passage (Title > Section)" },
            "start": { "type": "integer", "description": "Character offset of the passage in the document's text" },
            "end": { "type": "integer" },
            "text": { "type": "string" },
            "page": { "type": "integer", "description": "The PDF page the passage is on (PDF documents only)" }
        },
        "required": ["rank", "score", "doc", "chunk", "heading", "start", "end", "text"]
    })
}

fn collection_arg() -> Value {
    json!({ "type": "string", "description": "The collection (default: the server's configured collection)" })
}

/// Every tool with its schemas; `ingest`'s input depends on where it may
/// take documents from.
pub(crate) fn list(ingest: &IngestFrom) -> Vec<Value> {
    let ingest_input = match ingest {
        IngestFrom::Paths => json!({
            "type": "object",
            "properties": {
                "paths": {
                    "type": "array", "items": { "type": "string" }, "minItems": 1, "maxItems": MAX_INGEST,
                    "description": "Files or directories on the machine running Cairn (absolute, or relative to its working directory)"
                },
                "collection": collection_arg(),
                "prune": { "type": "boolean", "description": "Also remove documents under these paths that no longer exist" }
            },
            "required": ["paths"],
            "additionalProperties": false
        }),
        IngestFrom::Documents(_) => json!({
            "type": "object",
            "properties": {
                "documents": {
                    "type": "array", "minItems": 1, "maxItems": MAX_INGEST,
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": { "type": "string", "description": "File name; its extension picks the format (notes.md, page.html)" },
                            "text": { "type": "string", "description": "The document's content" }
                        },
                        "required": ["name", "text"]
                    }
                },
                "collection": collection_arg()
            },
            "required": ["documents"],
            "additionalProperties": false
        }),
    };
    vec![
        json!({
            "name": "search",
            "title": "Search documents",
            "description": "Rank passages of the user's documents for a query (hybrid dense + BM25 by default). Each hit gives the document, heading, character span and text.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "query": { "type": "string", "description": "What to look for" },
                    "collection": collection_arg(),
                    "k": { "type": "integer", "minimum": 1, "maximum": 100, "description": "Number of passages (default: the configured search.top_k)" },
                    "mode": { "type": "string", "enum": ["hybrid", "dense", "bm25"], "description": "Ranking (default: the configured search.mode)" }
                },
                "required": ["query"],
                "additionalProperties": false
            },
            "outputSchema": {
                "type": "object",
                "properties": {
                    "collection": { "type": "string" },
                    "hits": { "type": "array", "items": hit_schema() }
                },
                "required": ["collection", "hits"]
            },
            "annotations": { "readOnlyHint": true, "openWorldHint": false }
        }),
        json!({
            "name": "ask",
            "title": "Answer from documents",
            "description": "Answer a question from the user's documents with numbered citations [n]; each citation gives the document, heading, character span and the cited text. Says so when the documents do not cover the question.",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "question": { "type": "string" },
                    "collection": collection_arg(),
                    "k": { "type": "integer", "minimum": 1, "maximum": 100, "description": "Passages to retrieve (default: the configured generate.top_k)" }
                },
                "required": ["question"],
                "additionalProperties": false
            },
            "outputSchema": {
                "type": "object",
                "properties": {
                    "collection": { "type": "string" },
                    "answer": { "type": "string" },
                    "answered": { "type": "boolean", "description": "False when the documents do not cover the question" },
                    "citations": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "number": { "type": "integer", "description": "The [n] marker in the answer" },
                                "doc": { "type": "string" },
                                "heading": { "type": "string" },
                                "start": { "type": "integer" },
                                "end": { "type": "integer" },
                                "text": { "type": "string" },
                                "page": { "type": "integer", "description": "The PDF page the cited passage starts on (PDF documents only)" }
                            },
                            "required": ["number", "doc", "heading", "start", "end", "text"]
                        }
                    },
                    "model": { "type": "string" },
                    "strategy": { "type": "string" }
                },
                "required": ["collection", "answer", "answered", "citations", "model", "strategy"]
            },
            "annotations": { "readOnlyHint": true, "openWorldHint": false }
        }),
        json!({
            "name": "ingest",
            "title": "Add documents",
            "description": match ingest {
                IngestFrom::Paths => "Add files and directories on this machine to a collection (created if missing); unchanged files are skipped.",
                IngestFrom::Documents(_) => "Add documents, given as name and text, to a collection (created if missing); a document with the same name replaces the earlier one.",
            },
            "inputSchema": ingest_input,
            "outputSchema": {
                "type": "object",
                "properties": {
                    "collection": { "type": "string" },
                    "files_seen": { "type": "integer" },
                    "added": { "type": "integer" },
                    "updated": { "type": "integer" },
                    "unchanged": { "type": "integer" },
                    "removed": { "type": "integer" },
                    "chunks_added": { "type": "integer" },
                    "skipped": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": { "path": { "type": "string" }, "reason": { "type": "string" } },
                            "required": ["path", "reason"]
                        }
                    },
                    "seconds": { "type": "number" }
                },
                "required": ["collection", "files_seen", "added", "updated", "unchanged", "removed", "chunks_added", "skipped", "seconds"]
            },
            "annotations": { "readOnlyHint": false, "destructiveHint": false, "idempotentHint": true, "openWorldHint": false }
        }),
        json!({
            "name": "list_collections",
            "title": "List collections",
            "description": "The collections that can be searched, with their sizes and embedding model.",
            "inputSchema": { "type": "object", "properties": {}, "additionalProperties": false },
            "outputSchema": {
                "type": "object",
                "properties": {
                    "default": { "type": "string", "description": "The collection used when a call names none" },
                    "collections": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "name": { "type": "string" },
                                "documents": { "type": "integer" },
                                "chunks": { "type": "integer" },
                                "embed_model": { "type": "string" },
                                "error": { "type": "string", "description": "Why its size could not be read" }
                            },
                            "required": ["name"]
                        }
                    }
                },
                "required": ["default", "collections"]
            },
            "annotations": { "readOnlyHint": true, "openWorldHint": false }
        }),
        json!({
            "name": "get_document",
            "title": "Read a passage or document",
            "description": "Read a passage by its citation: the doc with start and end from a search hit or an ask citation (or the hit's chunk id); with only doc, the document's text from the start (at most max_chars characters; use start/end to read further).",
            "inputSchema": {
                "type": "object",
                "properties": {
                    "doc": { "type": "string", "description": "The document's path, as hits and citations give it" },
                    "collection": collection_arg(),
                    "start": { "type": "integer", "minimum": 0, "description": "Character offset where the passage starts (with end)" },
                    "end": { "type": "integer", "minimum": 0, "description": "Character offset where it ends (exclusive; with start)" },
                    "chunk": { "type": "integer", "minimum": 0, "description": "A search hit's chunk id (instead of start and end)" },
                    "max_chars": { "type": "integer", "minimum": 1, "description": "The most characters to return" }
                },
                "required": ["doc"],
                "additionalProperties": false
            },
            "outputSchema": {
                "type": "object",
                "properties": {
                    "collection": { "type": "string" },
                    "doc": { "type": "string" },
                    "heading": { "type": "string", "description": "Heading path of the passage (of the document's first passage for a whole document)" },
                    "page": { "type": ["integer", "null"], "description": "The page of the passage, for a PDF or multi-page TIFF (null otherwise)" },
                    "start": { "type": "integer" },
                    "end": { "type": "integer" },
                    "text": { "type": "string" },
                    "document_chars": { "type": "integer", "description": "Length of the whole document's text" },
                    "truncated": { "type": "boolean", "description": "The text was cut at max_chars" },
                    "format": { "type": "string" },
                    "uri": { "type": "string", "description": "The document as a resource" }
                },
                "required": ["collection", "doc", "heading", "start", "end", "text", "document_chars", "truncated", "format", "uri"]
            },
            "annotations": { "readOnlyHint": true, "openWorldHint": false }
        }),
    ]
}

/// A call's arguments, read with errors that name each one.
struct Args<'a> {
    map: &'a Map<String, Value>,
}

impl<'a> Args<'a> {
    fn new(map: &'a Map<String, Value>, allowed: &[&str]) -> Result<Args<'a>, McpError> {
        if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(McpError::params(
                format!("arguments.{k}"),
                format!("unknown argument (expected {})", allowed.join(", ")),
            ));
        }
        Ok(Args { map })
    }

    fn field(name: &str) -> String {
        format!("arguments.{name}")
    }

    fn string(&self, name: &str) -> Result<Option<&'a str>, McpError> {
        match self.map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(McpError::params(Self::field(name), "must be a string")),
        }
    }

    /// A required, non-blank text of at most `MAX_TEXT` bytes.
    fn text(&self, name: &str) -> Result<&'a str, McpError> {
        let s = self
            .string(name)?
            .ok_or_else(|| McpError::params(Self::field(name), "is missing"))?;
        if s.trim().is_empty() {
            return Err(McpError::params(Self::field(name), "is empty"));
        }
        if s.len() > MAX_TEXT {
            return Err(McpError::params(
                Self::field(name),
                format!("is longer than {MAX_TEXT} bytes"),
            ));
        }
        Ok(s)
    }

    fn uint(&self, name: &str, min: u64, max: u64) -> Result<Option<u64>, McpError> {
        match self.map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => {
                let n = v
                    .as_u64()
                    .or_else(|| {
                        v.as_f64()
                            .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                            .map(|f| f as u64)
                    })
                    .ok_or_else(|| {
                        McpError::params(
                            Self::field(name),
                            format!("must be a whole number, not {v}"),
                        )
                    })?;
                if n < min || n > max {
                    let range = if max == u64::MAX {
                        format!("at least {min}")
                    } else {
                        format!("{min} to {max}")
                    };
                    return Err(McpError::params(
                        Self::field(name),
                        format!("{n} (expected {range})"),
                    ));
                }
                Ok(Some(n))
            }
        }
    }

    fn boolean(&self, name: &str) -> Result<Option<bool>, McpError> {
        match self.map.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(McpError::params(Self::field(name), "must be true or false")),
        }
    }

    fn array(&self, name: &str) -> Result<&'a Vec<Value>, McpError> {
        match self.map.get(name) {
            None | Some(Value::Null) => Err(McpError::params(Self::field(name), "is missing")),
            Some(Value::Array(a)) if a.is_empty() => {
                Err(McpError::params(Self::field(name), "is empty"))
            }
            Some(Value::Array(a)) if a.len() > MAX_INGEST => Err(McpError::params(
                Self::field(name),
                format!("has {} items (at most {MAX_INGEST})", a.len()),
            )),
            Some(Value::Array(a)) => Ok(a),
            Some(_) => Err(McpError::params(Self::field(name), "must be an array")),
        }
    }
}

/// The result of a call that worked: readable text for the model, and the
/// same as structured content.
fn success(text: String, structured: Value) -> Value {
    json!({
        "content": [{ "type": "text", "text": text }],
        "structuredContent": structured,
        "isError": false,
    })
}

fn failure(message: &str) -> Value {
    json!({
        "content": [{ "type": "text", "text": message }],
        "isError": true,
    })
}

/// An answer's sink: stops generating at the deadline.
struct Deadline {
    until: Option<Instant>,
    passed: bool,
}

impl TokenSink for Deadline {
    fn piece(&mut self, _text: &str) -> Flow {
        if self.until.is_some_and(|u| Instant::now() > u) {
            self.passed = true;
            return Flow::Stop;
        }
        Flow::Continue
    }
}

/// `[start, end)` in characters of `text`, as a byte range (`None` past its end).
fn char_range(text: &str, start: u64, end: u64) -> Option<(usize, usize)> {
    let mut bytes = text.char_indices().map(|(b, _)| b).chain([text.len()]);
    let s = bytes.nth(start as usize)?;
    let e = if end == start {
        s
    } else {
        bytes.nth((end - start - 1) as usize)?
    };
    Some((s, e))
}

impl McpServer {
    pub(crate) fn call_tool(
        &self,
        params: &Map<String, Value>,
        caller: &Scope,
    ) -> Result<Value, McpError> {
        let name = match params.get("name") {
            Some(Value::String(n)) => n.as_str(),
            Some(_) => return Err(McpError::params("name", "must be a string")),
            None => return Err(McpError::params("name", "is missing")),
        };
        let empty = Map::new();
        let args = match params.get("arguments") {
            None | Some(Value::Null) => &empty,
            Some(Value::Object(a)) => a,
            Some(_) => return Err(McpError::params("arguments", "must be an object")),
        };
        let result = match name {
            "search" => self.search(args, caller),
            "ask" => self.ask(args, caller),
            "ingest" => self.ingest(args, caller),
            "list_collections" => self.list_collections(args, caller),
            "get_document" => self.get_document(args, caller),
            other => {
                return Err(McpError::params(
                    "name",
                    format!(
                        "unknown tool `{other}` (expected search, ask, ingest, list_collections or get_document)"
                    ),
                ))
            }
        };
        match result {
            Ok(v) => Ok(v),
            Err(Fail::Params(e)) => Err(e),
            Err(Fail::Tool(message)) => {
                tracing::warn!(tool = name, "{message}");
                Ok(failure(&message))
            }
        }
    }

    fn search(&self, args: &Map<String, Value>, caller: &Scope) -> Call {
        let a = Args::new(args, &["query", "collection", "k", "mode"])?;
        let query = a.text("query")?;
        let name = self.collection_name(a.string("collection")?, "arguments.collection", caller)?;
        let k = a
            .uint("k", 1, 100)?
            .map_or(self.opts.search_k, |k| k as usize);
        let mode = match a.string("mode")? {
            None => self.opts.search_mode,
            Some(m) => match m {
                "hybrid" => SearchMode::Hybrid,
                "dense" => SearchMode::Dense,
                "bm25" => SearchMode::Bm25,
                other => {
                    return Err(Fail::Params(McpError::params(
                        "arguments.mode",
                        format!("`{other}` (expected hybrid, dense or bm25)"),
                    )))
                }
            },
        };
        let c = self.open(&name, false)?;
        let hits = c.search(query, k, mode)?;
        let mut text = if hits.is_empty() {
            format!("No passages in collection `{name}` match.")
        } else {
            format!("{} passages from collection `{name}`:\n", hits.len())
        };
        for h in &hits {
            text.push_str(&format!(
                "\n[{}] {} (characters {}–{}, chunk {}, score {:.3})\n{}\n",
                h.rank,
                cairn_core::passage_label(&h.doc, &h.heading, h.page),
                h.start,
                h.end,
                h.chunk,
                h.score,
                h.text
            ));
        }
        Ok(success(text, json!({ "collection": name, "hits": hits })))
    }

    fn ask(&self, args: &Map<String, Value>, caller: &Scope) -> Call {
        let a = Args::new(args, &["question", "collection", "k"])?;
        let question = a.text("question")?;
        let name = self.collection_name(a.string("collection")?, "arguments.collection", caller)?;
        let mut opts = self.opts.ask.clone();
        if let Some(k) = a.uint("k", 1, 100)? {
            opts.k = k as usize;
        }
        let c = self.open(&name, false)?;
        let mut sink = Deadline {
            until: None,
            passed: false,
        };
        let answer = {
            let _one = self.ask_lock.lock().unwrap_or_else(|p| p.into_inner());
            sink.until = self.opts.ask_timeout.map(|t| Instant::now() + t);
            c.ask(question, &[], &opts, &mut sink)?
        };
        if sink.passed {
            return Err(Fail::Tool(format!(
                "the answer took longer than its time limit ({} s)",
                self.opts.ask_timeout.map_or(0, |t| t.as_secs())
            )));
        }
        let citations: Vec<Value> = answer
            .citations
            .iter()
            .map(|c| {
                let mut v = json!({
                    "number": c.n, "doc": c.doc, "heading": c.heading,
                    "start": c.start, "end": c.end, "text": c.text,
                });
                if let Some(page) = c.page {
                    v["page"] = json!(page);
                }
                v
            })
            .collect();
        let strategy = serde_json::to_value(answer.strategy)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let mut text = answer.answer.clone();
        if !answer.citations.is_empty() {
            text.push_str("\n\nSources:");
            for c in &answer.citations {
                text.push_str(&format!(
                    "\n[{}] {} (characters {}–{})",
                    c.n,
                    cairn_core::passage_label(&c.doc, &c.heading, c.page),
                    c.start,
                    c.end
                ));
            }
        }
        let unsupported = answer.sentences.iter().filter(|s| !s.supported).count();
        if unsupported > 0 {
            text.push_str(&format!(
                "\n\n({unsupported} sentence(s) of this answer are not supported by any source.)"
            ));
        }
        Ok(success(
            text,
            json!({
                "collection": name,
                "answer": answer.answer,
                "answered": answer.answered,
                "citations": citations,
                "model": answer.model,
                "strategy": strategy,
            }),
        ))
    }

    fn ingest(&self, args: &Map<String, Value>, caller: &Scope) -> Call {
        let (name, paths, opts) = match &self.opts.ingest {
            IngestFrom::Paths => {
                let a = Args::new(args, &["paths", "collection", "prune"])?;
                let name =
                    self.collection_name(a.string("collection")?, "arguments.collection", caller)?;
                let mut paths = vec![];
                for (i, p) in a.array("paths")?.iter().enumerate() {
                    let field = format!("arguments.paths[{i}]");
                    let p = p
                        .as_str()
                        .filter(|p| !p.trim().is_empty())
                        .ok_or_else(|| McpError::params(&field, "must be a non-empty string"))?;
                    let path = std::fs::canonicalize(p)
                        .map_err(|e| McpError::params(&field, format!("`{p}`: {e}")))?;
                    paths.push(path);
                }
                let opts = IngestOptions {
                    prune: a.boolean("prune")?.unwrap_or(false),
                    ..IngestOptions::default()
                };
                (name, paths, opts)
            }
            IngestFrom::Documents(store) => {
                let a = Args::new(args, &["documents", "collection"])?;
                let name =
                    self.collection_name(a.string("collection")?, "arguments.collection", caller)?;
                let docs = a.array("documents")?;
                let mut given = vec![];
                for (i, d) in docs.iter().enumerate() {
                    let field = |f: &str| format!("arguments.documents[{i}].{f}");
                    let obj = d.as_object().ok_or_else(|| {
                        McpError::params(
                            format!("arguments.documents[{i}]"),
                            "must be an object with name and text",
                        )
                    })?;
                    if let Some(k) = obj.keys().find(|k| *k != "name" && *k != "text") {
                        return Err(Fail::Params(McpError::params(
                            field(k),
                            "unknown field (expected name and text)",
                        )));
                    }
                    let doc_name = obj
                        .get("name")
                        .and_then(Value::as_str)
                        .filter(|n| !n.trim().is_empty())
                        .ok_or_else(|| {
                            McpError::params(field("name"), "must be a non-empty string")
                        })?;
                    let text = obj
                        .get("text")
                        .and_then(Value::as_str)
                        .ok_or_else(|| McpError::params(field("text"), "must be a string"))?;
                    if text.trim().is_empty() {
                        return Err(Fail::Params(McpError::params(field("text"), "is empty")));
                    }
                    given.push((field("name"), doc_name, text));
                }
                let mut paths = vec![];
                let mut names = HashMap::new();
                for (field, doc_name, text) in given {
                    let (path, shown) = store
                        .store(&name, doc_name, text)
                        .map_err(|e| McpError::params(field, e))?;
                    names.insert(path.clone(), shown);
                    paths.push(path);
                }
                let opts = IngestOptions {
                    display_names: names,
                    ..IngestOptions::default()
                };
                (name, paths, opts)
            }
        };
        let c = self.open(&name, true)?;
        let report: IngestReport = c.ingest(&paths, &opts, &NoProgress)?;
        let mut text = format!(
            "Collection `{name}`: {} files seen, {} added, {} updated, {} unchanged, {} removed; {} passages added in {:.1} s.",
            report.files_seen, report.added, report.updated, report.unchanged, report.removed,
            report.chunks_added, report.seconds
        );
        for s in &report.skipped {
            text.push_str(&format!("\nskipped {}: {}", s.path, s.reason));
        }
        if report.nothing_ingested() {
            return Err(Fail::Tool(format!("nothing could be ingested. {text}")));
        }
        Ok(success(
            text,
            json!({
                "collection": name,
                "files_seen": report.files_seen,
                "added": report.added,
                "updated": report.updated,
                "unchanged": report.unchanged,
                "removed": report.removed,
                "chunks_added": report.chunks_added,
                "skipped": report.skipped.iter().map(|s| json!({"path": s.path, "reason": s.reason})).collect::<Vec<_>>(),
                "seconds": report.seconds,
            }),
        ))
    }

    fn list_collections(&self, args: &Map<String, Value>, caller: &Scope) -> Call {
        Args::new(args, &[])?;
        let mut out = vec![];
        let mut text = String::new();
        for name in self.collections.names()? {
            if !caller.allows(&name) {
                continue;
            }
            match self.open(&name, false).and_then(|c| c.summary()) {
                Ok(s) => {
                    text.push_str(&format!(
                        "{name}: {} documents, {} passages ({})\n",
                        s.documents, s.chunks, s.embed_model
                    ));
                    out.push(json!({
                        "name": name, "documents": s.documents, "chunks": s.chunks,
                        "embed_model": s.embed_model,
                    }));
                }
                Err(e) => {
                    text.push_str(&format!("{name}: {e}\n"));
                    out.push(json!({ "name": name, "error": e.to_string() }));
                }
            }
        }
        if out.is_empty() {
            text.push_str("No collections yet (ingest documents first).\n");
        }
        let default = &self.opts.default_collection;
        text.push_str(&format!("Default collection: {default}"));
        Ok(success(
            text,
            json!({ "default": default, "collections": out }),
        ))
    }

    fn get_document(&self, args: &Map<String, Value>, caller: &Scope) -> Call {
        let a = Args::new(
            args,
            &["doc", "collection", "start", "end", "chunk", "max_chars"],
        )?;
        let doc = a.text("doc")?;
        let name = self.collection_name(a.string("collection")?, "arguments.collection", caller)?;
        let start = a.uint("start", 0, u64::MAX)?;
        let end = a.uint("end", 0, u64::MAX)?;
        let chunk = a.uint("chunk", 0, u64::MAX)?;
        let cap = self.opts.max_document_chars as u64;
        let max_chars = a.uint("max_chars", 1, cap)?.unwrap_or(cap);
        match (start, end, chunk) {
            (Some(_), None, _) => {
                return Err(Fail::Params(McpError::params(
                    "arguments.end",
                    "is missing (give start and end together)",
                )))
            }
            (None, Some(_), _) => {
                return Err(Fail::Params(McpError::params(
                    "arguments.start",
                    "is missing (give start and end together)",
                )))
            }
            (Some(s), Some(e), _) if e < s => {
                return Err(Fail::Params(McpError::params(
                    "arguments.end",
                    format!("{e} is before start {s}"),
                )))
            }
            (Some(_), Some(_), Some(_)) => {
                return Err(Fail::Params(McpError::params(
                    "arguments.chunk",
                    "give either chunk or start and end, not both",
                )))
            }
            _ => {}
        }
        let c = self.open(&name, false)?;
        let d = c.document_text(doc)?;
        let total = d.text.chars().count() as u64;
        let (s, e) = match (start, end, chunk) {
            (Some(s), Some(e), _) => {
                if e > total {
                    return Err(Fail::Params(McpError::params(
                        "arguments.end",
                        format!("{e} is past the end of `{}` ({total} characters)", d.doc),
                    )));
                }
                (s, e)
            }
            (_, _, Some(id)) => match d.passages.iter().find(|p| p.chunk == id) {
                Some(p) => (p.start, p.end),
                None => {
                    return Err(Fail::Tool(format!(
                        "`{}` has no passage with chunk id {id} (it may have been re-ingested since: search again, or pass start and end)",
                        d.doc
                    )))
                }
            },
            _ => (0, total),
        };
        let truncated = e - s > max_chars;
        let e = if truncated { s + max_chars } else { e };
        let (bs, be) = char_range(&d.text, s, e)
            .ok_or_else(|| Fail::Tool(format!("span {s}–{e} is outside `{}`", d.doc)))?;
        let passage = &d.text[bs..be];
        // The heading of the passage that overlaps the span most (the first
        // passage's for a whole document).
        let whole = start.is_none() && chunk.is_none();
        let heading = d
            .passages
            .iter()
            .take(if whole { 1 } else { usize::MAX })
            .map(|p| {
                let overlap = p.end.min(e).saturating_sub(p.start.max(s));
                (overlap, p)
            })
            .filter(|(o, p)| *o > 0 || (s == e && p.start <= s && s < p.end))
            .max_by_key(|(o, p)| (*o, std::cmp::Reverse(p.start)))
            .map(|(_, p)| p.heading.clone())
            .unwrap_or_default();
        let uri = crate::resources::document_uri(&name, &d.doc);
        let page = cairn_core::page_of(&d.doc, &heading);
        let mut text = format!(
            "{} — characters {s}–{e} of {total}",
            cairn_core::passage_label(&d.doc, "", page)
        );
        if !heading.is_empty() {
            text.push_str(&format!("\n{heading}"));
        }
        text.push_str("\n\n");
        text.push_str(passage);
        if truncated {
            text.push_str(&format!(
                "\n\n[cut at {max_chars} characters: pass start {e} and an end to read on]"
            ));
        }
        Ok(success(
            text,
            json!({
                "collection": name,
                "doc": d.doc,
                "heading": heading,
                "start": s,
                "end": e,
                "text": passage,
                "document_chars": total,
                "truncated": truncated,
                "format": d.format,
                "uri": uri,
                "page": page,
            }),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn character_ranges() {
        let t = "aé€b";
        assert_eq!(char_range(t, 0, 4), Some((0, t.len())));
        assert_eq!(char_range(t, 1, 3), Some((1, 6)));
        assert_eq!(&t[1..6], "é€");
        assert_eq!(char_range(t, 2, 2), Some((3, 3)));
        assert_eq!(char_range(t, 4, 4), Some((t.len(), t.len())));
        assert_eq!(char_range(t, 3, 5), None);
        assert_eq!(char_range(t, 5, 5), None);
    }

    #[test]
    fn schemas_are_objects_that_require_what_the_calls_require() {
        for ingest in [IngestFrom::Paths] {
            let tools = list(&ingest);
            let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
            assert_eq!(
                names,
                [
                    "search",
                    "ask",
                    "ingest",
                    "list_collections",
                    "get_document"
                ]
            );
            for t in &tools {
                assert_eq!(t["inputSchema"]["type"], "object", "{}", t["name"]);
                assert_eq!(t["outputSchema"]["type"], "object", "{}", t["name"]);
                assert_eq!(t["inputSchema"]["additionalProperties"], false);
                // Every required property is described.
                for r in t["outputSchema"]["required"].as_array().unwrap() {
                    let r = r.as_str().unwrap();
                    assert!(
                        t["outputSchema"]["properties"].get(r).is_some(),
                        "{}: {r}",
                        t["name"]
                    );
                }
                for r in t["inputSchema"]["required"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    assert!(t["inputSchema"]["properties"]
                        .get(r.as_str().unwrap())
                        .is_some());
                }
            }
        }
    }
}
