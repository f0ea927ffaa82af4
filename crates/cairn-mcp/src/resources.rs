//! Documents as resources: `cairn://<collection>/<document path>`, the
//! path percent-encoded (slashes too), listed a page at a time and read as
//! text.

use crate::server::{McpServer, Scope};
use crate::McpError;
use cairn_engine::{EngineError, ErrorKind};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::{json, Map, Value};

const SCHEME: &str = "cairn://";

/// Everything but RFC 3986's unreserved characters is encoded.
const ENCODED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A document's URI.
pub fn document_uri(collection: &str, doc: &str) -> String {
    format!("{SCHEME}{collection}/{}", utf8_percent_encode(doc, ENCODED))
}

/// A document URI's collection and document path.
pub fn parse_uri(uri: &str) -> Result<(String, String), McpError> {
    let bad = |why: &str| {
        McpError::params(
            "uri",
            format!(
                "`{uri}` {why} (expected cairn://<collection>/<percent-encoded document path>)"
            ),
        )
    };
    let rest = uri
        .strip_prefix(SCHEME)
        .ok_or_else(|| bad("is not a cairn:// URI"))?;
    let (collection, doc) = rest
        .split_once('/')
        .ok_or_else(|| bad("has no document path"))?;
    cairn_core::config::validate_collection_name(collection)
        .map_err(|e| bad(&format!("names no valid collection: {e}")))?;
    let doc = percent_decode_str(doc)
        .decode_utf8()
        .map_err(|_| bad("decodes to a path that is not UTF-8"))?;
    if doc.is_empty() {
        return Err(bad("has no document path"));
    }
    Ok((collection.to_string(), doc.into_owned()))
}

/// `resources/templates/list`'s one template.
pub(crate) fn template() -> Value {
    json!({
        "uriTemplate": "cairn://{collection}/{doc}",
        "name": "document",
        "title": "A document of a Cairn collection",
        "description": "The extracted text of one document; `doc` is its path as search hits and citations give it, percent-encoded.",
        "mimeType": "text/plain",
    })
}

impl McpServer {
    /// Every document of every collection the caller may use, a page at a
    /// time; the cursor is the offset of the next page.
    pub(crate) fn list_resources(
        &self,
        params: &Map<String, Value>,
        caller: &Scope,
    ) -> Result<Value, McpError> {
        let offset = match params.get("cursor") {
            None | Some(Value::Null) => 0,
            Some(Value::String(c)) => c.parse::<usize>().map_err(|_| {
                McpError::params("cursor", format!("`{c}` is not a cursor this server gave"))
            })?,
            Some(_) => return Err(McpError::params("cursor", "must be a string")),
        };
        let page = self.opts.page_size.max(1);
        let names = self
            .collections
            .names()
            .map_err(|e| McpError::Internal(e.to_string()))?;
        let mut seen = 0usize;
        let mut out = vec![];
        let mut more = false;
        'outer: for name in names.iter().filter(|n| caller.allows(n)) {
            let docs = match self.open(name, false).and_then(|c| c.documents()) {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(collection = %name, "not listed: {e}");
                    continue;
                }
            };
            // A display path shared by two documents (two roots) is
            // ambiguous: those are named by their full path.
            let mut count = std::collections::HashMap::new();
            for d in &docs {
                *count.entry(d.doc.as_str()).or_insert(0usize) += 1;
            }
            for d in &docs {
                if seen < offset {
                    seen += 1;
                    continue;
                }
                if out.len() == page {
                    more = true;
                    break 'outer;
                }
                seen += 1;
                let key = if count[d.doc.as_str()] > 1 {
                    &d.path
                } else {
                    &d.doc
                };
                out.push(json!({
                    "uri": document_uri(name, key),
                    "name": d.doc,
                    "title": format!("{} ({name})", d.doc),
                    "description": format!("{} document in collection `{name}`, {} passages", d.format, d.chunks),
                    "mimeType": "text/plain",
                }));
            }
        }
        let mut result = json!({ "resources": out });
        if more {
            result["nextCursor"] = json!(seen.to_string());
        }
        Ok(result)
    }

    /// One document's text.
    pub(crate) fn read_resource(
        &self,
        params: &Map<String, Value>,
        caller: &Scope,
    ) -> Result<Value, McpError> {
        let uri = match params.get("uri") {
            Some(Value::String(u)) => u.as_str(),
            Some(_) => return Err(McpError::params("uri", "must be a string")),
            None => return Err(McpError::params("uri", "is missing")),
        };
        let (collection, doc) = parse_uri(uri)?;
        if !caller.allows(&collection) {
            return Err(McpError::params(
                "uri",
                format!("this API key may not use collection `{collection}`"),
            ));
        }
        let not_found = |e: EngineError| match e.kind() {
            ErrorKind::NotFound => McpError::ResourceNotFound(format!("{uri} ({e})")),
            _ => McpError::Internal(e.to_string()),
        };
        let c = self.open(&collection, false).map_err(not_found)?;
        let d = c.document_text(&doc).map_err(not_found)?;
        Ok(json!({
            "contents": [{ "uri": uri, "mimeType": "text/plain", "text": d.text }]
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_round_trip() {
        for doc in [
            "notes.md",
            "tutorial/classes.html",
            "a b/ü?#%.txt",
            "/abs/path/x.pdf",
        ] {
            let uri = document_uri("docs", doc);
            assert!(!uri["cairn://docs/".len()..].contains('/'), "{uri}");
            assert!(!uri.contains(' ') && !uri.contains('#') && !uri.contains('?'));
            assert_eq!(
                parse_uri(&uri).unwrap(),
                ("docs".to_string(), doc.to_string())
            );
        }
        assert_eq!(
            document_uri("docs", "tutorial/classes.html"),
            "cairn://docs/tutorial%2Fclasses.html"
        );
        // Unencoded slashes are read as they are.
        assert_eq!(
            parse_uri("cairn://docs/tutorial/x.html").unwrap().1,
            "tutorial/x.html"
        );
    }

    #[test]
    fn bad_uris_name_the_field() {
        for bad in [
            "http://docs/x",
            "cairn://docs",
            "cairn://docs/",
            "cairn://../x",
            "cairn://bad name/x",
            "cairn://docs/%FF",
        ] {
            match parse_uri(bad) {
                Err(McpError::InvalidParams { field, message }) => {
                    assert_eq!(field, "uri");
                    assert!(message.contains(bad), "{message}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
