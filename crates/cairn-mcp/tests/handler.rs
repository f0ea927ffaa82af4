//! The MCP handler over real local collections (the real MiniLM model,
//! documents ingested through the tools): the protocol, every tool and its
//! errors, resources with pagination, callers limited to some collections,
//! and the stdio transport.

use cairn_core::config::Config;
use cairn_engine::LocalCollections;
use cairn_mcp::{stdio, DocumentStore, IngestFrom, McpServer, Options, Scope};
use cairn_models::{Device, SentenceEncoder};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

fn embedder() -> Arc<dyn SentenceEncoder> {
    static MODEL: OnceLock<Arc<cairn_models::OnnxEmbedder>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir = cairn_testkit::minilm_dir();
            let opts = cairn_models::OnnxOptions {
                onnx_file: Some(cairn_models::onnx_export::ensure_graph(&dir).unwrap()),
                dylib: Some(cairn_testkit::onnxruntime_lib()),
                threads: 0,
                batch_size: 32,
            };
            Arc::new(cairn_models::OnnxEmbedder::load(&dir, Device::Cpu, &opts).unwrap())
        })
        .clone()
}

const BRIDGE: &str = "# Kestrel Bridge\n\n## History\n\nThe Kestrel Bridge over the Varne estuary opened to traffic in 1987. It is 412 metres long and carries the coastal railway between Harrow Point and Selby.\n\n## Maintenance\n\nThe bridge is repainted every nine years by the Varne Harbour Trust. Its steel is inspected each spring by divers from the trust.\n";
const LIGHTHOUSE: &str = "# Selby Lighthouse\n\nThe Selby lighthouse was built in 1862 from granite quarried at Harrow Point. Its lamp is visible for 19 nautical miles.\n\n## Keepers\n\nThe last keeper left in 1991, when the light was automated.\n";
const CAFE: &str = "# Café Ünter\n\nThe café on the quay serves crab sandwiches — «the best in Varne» — from April to October.\n";

struct Fixture {
    _dir: tempfile::TempDir,
    docs: PathBuf,
    data: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(docs.join("town")).unwrap();
    std::fs::write(docs.join("bridge.md"), BRIDGE).unwrap();
    std::fs::write(docs.join("town/lighthouse.md"), LIGHTHOUSE).unwrap();
    std::fs::write(docs.join("town/café ünter.md"), CAFE).unwrap();
    let data = dir.path().join("data");
    Fixture {
        docs,
        data,
        _dir: dir,
    }
}

fn config(data: &Path) -> Config {
    Config {
        data_dir: Some(data.to_path_buf()),
        collection: "notes".into(),
        models_dir: Some(cairn_testkit::models_dir()),
        ..Config::default()
    }
}

/// A handler over the data directory; answers are extractive (no
/// generator is loaded here: `cairn mcp`'s tests ask the real one).
fn server(data: &Path, ingest: IngestFrom, tweak: impl FnOnce(&mut Options)) -> McpServer {
    let cfg = config(data);
    let collections = LocalCollections::new(cfg.clone(), embedder(), None);
    let mut opts = Options::from_config(&cfg, ingest);
    opts.ask.extractive = true;
    tweak(&mut opts);
    McpServer::new(Arc::new(collections), opts)
}

fn request(s: &McpServer, caller: &Scope, method: &str, params: Value) -> Value {
    let m = json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params});
    let reply = s.handle(&m, caller).expect("a reply");
    assert_eq!(reply["jsonrpc"], "2.0");
    assert_eq!(reply["id"], 7);
    reply
}

fn result(s: &McpServer, method: &str, params: Value) -> Value {
    let r = request(s, &Scope::All, method, params);
    assert!(r.get("error").is_none(), "{method}: {r}");
    r["result"].clone()
}

fn error(s: &McpServer, method: &str, params: Value) -> (i64, String, Value) {
    let r = request(s, &Scope::All, method, params);
    let e = &r["error"];
    assert!(e.is_object(), "{method} did not fail: {r}");
    (
        e["code"].as_i64().unwrap(),
        e["message"].as_str().unwrap().to_string(),
        e["data"]["field"].clone(),
    )
}

fn call(s: &McpServer, tool: &str, args: Value) -> Value {
    let r = result(s, "tools/call", json!({"name": tool, "arguments": args}));
    assert_eq!(r["isError"], false, "{tool}: {r}");
    assert!(r["content"][0]["text"]
        .as_str()
        .is_some_and(|t| !t.is_empty()));
    r["structuredContent"].clone()
}

fn call_fails(s: &McpServer, tool: &str, args: Value) -> String {
    let r = result(s, "tools/call", json!({"name": tool, "arguments": args}));
    assert_eq!(r["isError"], true, "{tool} succeeded: {r}");
    r["content"][0]["text"].as_str().unwrap().to_string()
}

fn bad_argument(s: &McpServer, tool: &str, args: Value, field: &str) -> String {
    let (code, message, f) = error(s, "tools/call", json!({"name": tool, "arguments": args}));
    assert_eq!(code, -32602, "{message}");
    assert_eq!(f, field, "{message}");
    assert!(message.starts_with(field), "{message}");
    message
}

#[test]
fn protocol_messages_and_errors() {
    let f = fixture();
    let s = server(&f.data, IngestFrom::Paths, |_| {});
    for (asked, got) in [
        ("2025-06-18", "2025-06-18"),
        ("2025-03-26", "2025-03-26"),
        ("2024-11-05", "2024-11-05"),
        ("2030-01-01", "2025-06-18"),
    ] {
        let r = result(
            &s,
            "initialize",
            json!({"protocolVersion": asked, "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}),
        );
        assert_eq!(r["protocolVersion"], got);
        assert!(r["capabilities"]["tools"].is_object());
        assert!(r["capabilities"]["resources"].is_object());
        assert_eq!(r["serverInfo"]["name"], "cairn");
    }
    let (code, _, field) = error(&s, "initialize", json!({"capabilities": {}}));
    assert_eq!((code, field), (-32602, json!("protocolVersion")));
    let (code, _, field) = error(&s, "initialize", json!({"protocolVersion": 2025}));
    assert_eq!((code, field), (-32602, json!("protocolVersion")));
    assert_eq!(result(&s, "ping", json!({})), json!({}));
    let (code, message, _) = error(&s, "tools/frobnicate", json!({}));
    assert_eq!(code, -32601);
    assert!(message.contains("tools/frobnicate"));

    // Notifications and responses get no reply.
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert!(s.handle(&note, &Scope::All).is_none());
    let resp = json!({"jsonrpc": "2.0", "id": 1, "result": {}});
    assert!(s.handle(&resp, &Scope::All).is_none());

    // Text that is not JSON; JSON that is not JSON-RPC.
    let r: Value =
        serde_json::from_str(&s.handle_text("{\"jsonrpc\": ", &Scope::All).unwrap()).unwrap();
    assert_eq!(r["error"]["code"], -32700);
    assert_eq!(r["id"], Value::Null);
    let r: Value = serde_json::from_str(
        &s.handle_text(r#"{"jsonrpc":"2.0","id":"x","method":5}"#, &Scope::All)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(r["error"]["code"], -32600);
    assert_eq!(r["id"], "x");

    // A batch: replies to its requests only, in order.
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "ping"},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "nope"},
        {"jsonrpc": "2.0", "id": 3, "method": "initialize", "params": {"protocolVersion": "2025-03-26"}}
    ]);
    let r = s.handle(&batch, &Scope::All).unwrap();
    let r = r.as_array().unwrap();
    assert_eq!(r.len(), 3);
    assert_eq!(r[0]["result"], json!({}));
    assert_eq!(r[1]["error"]["code"], -32601);
    assert_eq!(r[2]["error"]["code"], -32600, "initialize alone");
    assert_eq!(
        s.handle(&json!([]), &Scope::All).unwrap()["error"]["code"],
        -32600
    );

    // Tools: five, each with schemas; ingest's input depends on the transport.
    let tools = result(&s, "tools/list", json!({}))["tools"].clone();
    let names: Vec<&str> = tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
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
    assert_eq!(tools[2]["inputSchema"]["required"], json!(["paths"]));
    let remote = server(
        &f.data,
        IngestFrom::Documents(Arc::new(Store(f.data.join("up")))),
        |_| {},
    );
    let tools = result(&remote, "tools/list", json!({}))["tools"].clone();
    assert_eq!(tools[2]["inputSchema"]["required"], json!(["documents"]));
    assert!(tools[2]["inputSchema"]["properties"].get("paths").is_none());

    let (code, message, field) = error(&s, "tools/call", json!({"name": "rm", "arguments": {}}));
    assert_eq!((code, field), (-32602, json!("name")));
    assert!(message.contains("unknown tool `rm`"));
    let (_, _, field) = error(&s, "tools/call", json!({"arguments": {}}));
    assert_eq!(field, "name");
    let (_, _, field) = error(
        &s,
        "tools/call",
        json!({"name": "search", "arguments": [1]}),
    );
    assert_eq!(field, "arguments");

    let t = result(&s, "resources/templates/list", json!({}));
    assert_eq!(
        t["resourceTemplates"][0]["uriTemplate"],
        "cairn://{collection}/{doc}"
    );
}

#[test]
fn tools_search_ask_and_read_passages_back() {
    let f = fixture();
    let s = server(&f.data, IngestFrom::Paths, |o| o.max_document_chars = 1000);

    // Nothing yet.
    let l = call(&s, "list_collections", json!({}));
    assert_eq!(l["collections"], json!([]));
    assert_eq!(l["default"], "notes");
    let why = call_fails(&s, "search", json!({"query": "bridge"}));
    assert!(why.contains("`notes` does not exist"), "{why}");

    let r = call(&s, "ingest", json!({"paths": [f.docs.to_str().unwrap()]}));
    assert_eq!(r["collection"], "notes");
    assert_eq!(r["added"], 3);
    assert!(r["chunks_added"].as_u64().unwrap() >= 3);
    let again = call(&s, "ingest", json!({"paths": [f.docs.to_str().unwrap()]}));
    assert_eq!(
        (again["added"].clone(), again["unchanged"].clone()),
        (json!(0), json!(3))
    );

    let l = call(&s, "list_collections", json!({}));
    assert_eq!(l["collections"][0]["name"], "notes");
    assert_eq!(l["collections"][0]["documents"], 3);

    let hits = call(
        &s,
        "search",
        json!({"query": "When was the Kestrel Bridge opened?", "k": 2}),
    );
    let hits = hits["hits"].as_array().unwrap().clone();
    assert_eq!(hits.len(), 2);
    let top = &hits[0];
    assert_eq!(top["doc"], "bridge.md");
    assert!(top["text"].as_str().unwrap().contains("1987"), "{top}");
    for mode in ["bm25", "dense", "hybrid"] {
        let h = call(
            &s,
            "search",
            json!({"query": "granite lighthouse", "mode": mode, "k": 1}),
        );
        assert_eq!(h["hits"][0]["doc"], "town/lighthouse.md", "{mode}");
    }

    // A hit's citation fields give its passage back, exactly, with its heading.
    let p = call(
        &s,
        "get_document",
        json!({"doc": top["doc"], "start": top["start"], "end": top["end"]}),
    );
    assert_eq!(p["text"], top["text"]);
    assert_eq!(p["heading"], top["heading"]);
    assert_eq!(p["truncated"], false);
    let by_chunk = call(
        &s,
        "get_document",
        json!({"doc": "bridge.md", "chunk": top["chunk"]}),
    );
    assert_eq!(by_chunk["text"], top["text"]);
    assert_eq!(
        (by_chunk["start"].clone(), by_chunk["end"].clone()),
        (top["start"].clone(), top["end"].clone())
    );

    // Offsets are characters: the passage of a document with non-ASCII text.
    let cafe = call(
        &s,
        "search",
        json!({"query": "crab sandwiches on the quay", "k": 1}),
    );
    let c = &cafe["hits"][0];
    assert_eq!(c["doc"], "town/café ünter.md");
    let p = call(
        &s,
        "get_document",
        json!({"doc": c["doc"], "start": c["start"], "end": c["end"]}),
    );
    assert_eq!(p["text"], c["text"]);

    // A whole document, and its first 100 characters.
    let whole = call(&s, "get_document", json!({"doc": "bridge.md"}));
    assert_eq!(whole["truncated"], false);
    assert_eq!(whole["text"], BRIDGE);
    assert!(
        whole["heading"]
            .as_str()
            .unwrap()
            .starts_with("Kestrel Bridge"),
        "{whole}"
    );
    let whole = call(
        &s,
        "get_document",
        json!({"doc": "bridge.md", "max_chars": 100}),
    );
    assert_eq!(whole["truncated"], true);
    assert_eq!(whole["start"], 0);
    assert_eq!(whole["end"], 100);
    assert_eq!(whole["document_chars"], BRIDGE.chars().count());
    assert_eq!(whole["text"], BRIDGE.chars().take(100).collect::<String>());
    assert_eq!(whole["uri"], "cairn://notes/bridge.md");
    let at = LIGHTHOUSE.find("built in 1862").unwrap(); // ASCII: bytes are characters
    let short = call(
        &s,
        "get_document",
        json!({"doc": "town/lighthouse.md", "start": at, "end": at + 13}),
    );
    assert_eq!(short["text"], "built in 1862");
    assert_eq!(short["heading"], "Selby Lighthouse");
    let keepers = LIGHTHOUSE.find("The last keeper").unwrap();
    let short = call(
        &s,
        "get_document",
        json!({"doc": "town/lighthouse.md", "start": keepers, "end": keepers + 8}),
    );
    assert_eq!(short["heading"], "Selby Lighthouse > Keepers");

    // Extractive answers (no generator here) with citations that read back.
    let a = call(
        &s,
        "ask",
        json!({"question": "How long is the Kestrel Bridge?", "k": 3}),
    );
    assert_eq!(a["answered"], true, "{a}");
    assert!(a["answer"].as_str().unwrap().contains("412"), "{a}");
    let cites = a["citations"].as_array().unwrap();
    assert!(!cites.is_empty());
    for c in cites {
        assert!(c["number"].as_u64().unwrap() >= 1);
        let p = call(
            &s,
            "get_document",
            json!({"doc": c["doc"], "start": c["start"], "end": c["end"]}),
        );
        assert_eq!(p["text"], c["text"], "{c}");
    }

    // Bad arguments: JSON-RPC errors naming the argument.
    bad_argument(&s, "search", json!({}), "arguments.query");
    bad_argument(&s, "search", json!({"query": "  "}), "arguments.query");
    bad_argument(&s, "search", json!({"query": "x", "k": 0}), "arguments.k");
    bad_argument(&s, "search", json!({"query": "x", "k": 101}), "arguments.k");
    bad_argument(&s, "search", json!({"query": "x", "k": "5"}), "arguments.k");
    bad_argument(
        &s,
        "search",
        json!({"query": "x", "mode": "fuzzy"}),
        "arguments.mode",
    );
    bad_argument(
        &s,
        "search",
        json!({"query": "x", "collection": "../etc"}),
        "arguments.collection",
    );
    let m = bad_argument(
        &s,
        "search",
        json!({"query": "x", "top_k": 3}),
        "arguments.top_k",
    );
    assert!(m.contains("unknown argument"), "{m}");
    bad_argument(
        &s,
        "search",
        json!({"query": "x".repeat(20_000)}),
        "arguments.query",
    );
    bad_argument(&s, "ask", json!({"question": ""}), "arguments.question");
    bad_argument(
        &s,
        "get_document",
        json!({"start": 1, "end": 2}),
        "arguments.doc",
    );
    bad_argument(
        &s,
        "get_document",
        json!({"doc": "bridge.md", "start": 5}),
        "arguments.end",
    );
    bad_argument(
        &s,
        "get_document",
        json!({"doc": "bridge.md", "end": 5}),
        "arguments.start",
    );
    bad_argument(
        &s,
        "get_document",
        json!({"doc": "bridge.md", "start": 9, "end": 5}),
        "arguments.end",
    );
    bad_argument(
        &s,
        "get_document",
        json!({"doc": "bridge.md", "start": 0, "end": 5000}),
        "arguments.end",
    );
    bad_argument(
        &s,
        "get_document",
        json!({"doc": "bridge.md", "max_chars": 0}),
        "arguments.max_chars",
    );
    bad_argument(
        &s,
        "get_document",
        json!({"doc": "bridge.md", "max_chars": 1001}),
        "arguments.max_chars",
    );
    bad_argument(
        &s,
        "get_document",
        json!({"doc": "bridge.md", "start": 0, "end": 3, "chunk": 1}),
        "arguments.chunk",
    );
    bad_argument(&s, "ingest", json!({"paths": []}), "arguments.paths");
    bad_argument(
        &s,
        "ingest",
        json!({"paths": ["/no/such/file.md"]}),
        "arguments.paths[0]",
    );
    bad_argument(
        &s,
        "ingest",
        json!({"paths": [f.docs.to_str().unwrap(), 3]}),
        "arguments.paths[1]",
    );
    bad_argument(
        &s,
        "ingest",
        json!({"documents": [{"name": "a", "text": "b"}]}),
        "arguments.documents",
    );
    bad_argument(&s, "list_collections", json!({"x": 1}), "arguments.x");

    // Calls that run and fail: results with isError and the reason.
    let why = call_fails(&s, "get_document", json!({"doc": "nowhere.md"}));
    assert!(why.contains("nowhere.md"), "{why}");
    let why = call_fails(
        &s,
        "get_document",
        json!({"doc": "bridge.md", "chunk": 999_999}),
    );
    assert!(why.contains("chunk id 999999"), "{why}");
    let why = call_fails(
        &s,
        "ask",
        json!({"question": "x?", "collection": "missing"}),
    );
    assert!(why.contains("`missing` does not exist"), "{why}");
}

#[test]
fn resources_are_listed_a_page_at_a_time_and_read() {
    let f = fixture();
    let s = server(&f.data, IngestFrom::Paths, |o| o.page_size = 2);
    call(
        &s,
        "ingest",
        json!({"paths": [f.docs.join("bridge.md").to_str().unwrap(), f.docs.join("town").to_str().unwrap()]}),
    );
    call(
        &s,
        "ingest",
        json!({"paths": [f.docs.join("bridge.md").to_str().unwrap()], "collection": "other"}),
    );

    let mut uris = vec![];
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let params = match &cursor {
            Some(c) => json!({"cursor": c}),
            None => json!({}),
        };
        let page = result(&s, "resources/list", params);
        pages += 1;
        for r in page["resources"].as_array().unwrap() {
            assert_eq!(r["mimeType"], "text/plain");
            uris.push(r["uri"].as_str().unwrap().to_string());
        }
        match page.get("nextCursor").and_then(Value::as_str) {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 2);
    assert_eq!(
        uris,
        [
            "cairn://notes/bridge.md",
            "cairn://notes/caf%C3%A9%20%C3%BCnter.md",
            "cairn://notes/lighthouse.md",
            "cairn://other/bridge.md",
        ]
    );
    let read = result(&s, "resources/read", json!({"uri": uris[1]}));
    assert_eq!(read["contents"][0]["uri"], uris[1]);
    assert_eq!(read["contents"][0]["mimeType"], "text/plain");
    assert!(read["contents"][0]["text"]
        .as_str()
        .unwrap()
        .contains("crab sandwiches"));

    let (code, _, _) = error(
        &s,
        "resources/read",
        json!({"uri": "cairn://notes/gone.md"}),
    );
    assert_eq!(code, -32002);
    let (code, _, _) = error(
        &s,
        "resources/read",
        json!({"uri": "cairn://nothing/gone.md"}),
    );
    assert_eq!(code, -32002);
    let (code, _, field) = error(&s, "resources/read", json!({"uri": "file:///etc/passwd"}));
    assert_eq!((code, field), (-32602, json!("uri")));
    let (_, _, field) = error(&s, "resources/read", json!({}));
    assert_eq!(field, "uri");
    let (code, _, field) = error(&s, "resources/list", json!({"cursor": "zz"}));
    assert_eq!((code, field), (-32602, json!("cursor")));

    // A caller limited to one collection sees and reaches only that one.
    let only = Scope::Only(vec!["other".into()]);
    let page = request(&s, &only, "resources/list", json!({}));
    assert_eq!(page["result"]["resources"].as_array().unwrap().len(), 1);
    let r = request(
        &s,
        &only,
        "resources/read",
        json!({"uri": "cairn://notes/bridge.md"}),
    );
    assert_eq!(r["error"]["code"], -32602);
    let r = request(
        &s,
        &only,
        "tools/call",
        json!({"name": "search", "arguments": {"query": "bridge"}}),
    );
    assert_eq!(r["error"]["data"]["field"], "arguments.collection");
    assert!(r["error"]["message"]
        .as_str()
        .unwrap()
        .contains("may not use collection `notes`"));
    let r = request(
        &s,
        &only,
        "tools/call",
        json!({"name": "list_collections", "arguments": {}}),
    );
    let listed = r["result"]["structuredContent"]["collections"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["name"], "other");
}

/// Documents a remote client sends, kept as files in a directory under
/// names derived from the client's (as the server's uploads are).
struct Store(PathBuf);

impl DocumentStore for Store {
    fn store(&self, collection: &str, name: &str, text: &str) -> Result<(PathBuf, String), String> {
        if name.contains('/') {
            return Err(format!("`{name}` is not a plain file name"));
        }
        let dir = self.0.join(collection);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let path = dir.join(format!("{:x}-{name}", name.len()));
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        Ok((
            path.canonicalize().map_err(|e| e.to_string())?,
            name.to_string(),
        ))
    }
}

#[test]
fn remote_ingest_takes_documents_not_paths() {
    let f = fixture();
    let s = server(
        &f.data,
        IngestFrom::Documents(Arc::new(Store(f.data.join("up")))),
        |_| {},
    );
    bad_argument(&s, "ingest", json!({"paths": ["/etc"]}), "arguments.paths");
    bad_argument(
        &s,
        "ingest",
        json!({"documents": [{"name": "a.md"}]}),
        "arguments.documents[0].text",
    );
    bad_argument(
        &s,
        "ingest",
        json!({"documents": [{"name": "", "text": "x"}]}),
        "arguments.documents[0].name",
    );
    bad_argument(
        &s,
        "ingest",
        json!({"documents": [{"name": "a.md", "text": "x", "path": "/etc/passwd"}]}),
        "arguments.documents[0].path",
    );
    let m = bad_argument(
        &s,
        "ingest",
        json!({"documents": [{"name": "../x.md", "text": "x"}]}),
        "arguments.documents[0].name",
    );
    assert!(m.contains("not a plain file name"), "{m}");

    let r = call(
        &s,
        "ingest",
        json!({"collection": "sent", "documents": [{"name": "bridge.md", "text": BRIDGE}, {"name": "lighthouse.md", "text": LIGHTHOUSE}]}),
    );
    assert_eq!(r["added"], 2);
    let h = call(
        &s,
        "search",
        json!({"query": "repainted every nine years", "collection": "sent", "k": 1}),
    );
    // Shown under the name the client gave, not the stored file's.
    assert_eq!(h["hits"][0]["doc"], "bridge.md");
    let p = call(
        &s,
        "get_document",
        json!({"doc": "bridge.md", "collection": "sent", "max_chars": 16}),
    );
    assert_eq!(p["text"], "# Kestrel Bridge");
}

#[test]
fn stdio_answers_line_by_line() {
    let f = fixture();
    let s = Arc::new(server(&f.data, IngestFrom::Paths, |_| {}));
    let input = [
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        "",
        "not json",
        r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#,
    ]
    .join("\n");
    #[derive(Clone, Default)]
    struct Out(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Out {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let out = Out::default();
    stdio::serve(s, std::io::Cursor::new(input), out.clone()).unwrap();
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let mut replies: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(replies.len(), 3, "{text}");
    replies.sort_by_key(|r| r["id"].as_i64().unwrap_or(0));
    assert_eq!(replies[0]["error"]["code"], -32700);
    assert_eq!(replies[1]["result"]["protocolVersion"], "2025-06-18");
    assert_eq!(replies[2]["result"], json!({}));
}
