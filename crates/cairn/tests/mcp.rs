//! MCP end to end, in processes: `cairn mcp` spoken to over its stdin and
//! stdout (the real models, a small real corpus, the embedded generator for
//! `ask`), and `/mcp` on `cairn serve` (API key, sessions, the guard).

mod common;

use common::server::Server;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// `cairn mcp` as a child: requests in, replies out.
struct McpChild {
    child: Child,
    stdin: Option<ChildStdin>,
    replies: mpsc::Receiver<String>,
    next: u64,
}

impl McpChild {
    fn start(data: &std::path::Path, extra: &[&str]) -> McpChild {
        let mut c = common::cairn(data);
        c.env("CAIRN_LLM_THREADS", "2")
            .arg("mcp")
            .arg("--model")
            .arg(cairn_testkit::smollm2_gguf())
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = c.spawn().expect("start cairn mcp");
        let stdout: ChildStdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        McpChild {
            stdin: child.stdin.take(),
            child,
            replies: rx,
            next: 0,
        }
    }

    fn send_line(&mut self, line: &str) {
        let w = self.stdin.as_mut().unwrap();
        w.write_all(line.as_bytes()).unwrap();
        w.write_all(b"\n").unwrap();
        w.flush().unwrap();
    }

    /// The next line on stdout, which must be one JSON-RPC message.
    fn reply(&self) -> Value {
        let line = self
            .replies
            .recv_timeout(Duration::from_secs(600))
            .expect("a reply from cairn mcp");
        serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("stdout is not JSON-RPC ({e}): {line}"))
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        self.send_line(
            &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string(),
        );
        let r = self.reply();
        assert_eq!(r["id"], id, "{r}");
        r
    }

    fn call(&mut self, tool: &str, args: Value) -> Value {
        let r = self.request("tools/call", json!({"name": tool, "arguments": args}));
        assert_eq!(r["result"]["isError"], false, "{tool}: {r}");
        r["result"]["structuredContent"].clone()
    }
}

impl Drop for McpChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn cairn_mcp_over_stdio() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    cairn_testkit::copy_pages(&["library/venv.html", "tutorial/classes.html"], &docs);
    let data = tmp.path().join("data");
    let mut m = McpChild::start(&data, &["--max-tokens", "32", "--seed", "1"]);

    let init = m.request(
        "initialize",
        json!({"protocolVersion": "2025-03-26", "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}}),
    );
    assert_eq!(init["result"]["protocolVersion"], "2025-03-26");
    assert_eq!(init["result"]["serverInfo"]["name"], "cairn");
    m.send_line(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
    m.send_line("this is not JSON");
    let r = m.reply();
    assert_eq!(r["error"]["code"], -32700, "{r}");
    assert_eq!(r["id"], Value::Null);
    let tools = m.request("tools/list", json!({}));
    assert_eq!(tools["result"]["tools"].as_array().unwrap().len(), 5);

    let r = m.call("ingest", json!({"paths": [docs.to_str().unwrap()]}));
    assert_eq!(r["added"], 2, "{r}");
    assert_eq!(r["collection"], "default");

    let hits = m.call(
        "search",
        json!({"query": "How do I create a virtual environment?", "k": 3}),
    );
    let top = hits["hits"][0].clone();
    assert!(
        top["doc"].as_str().unwrap().ends_with("venv.html"),
        "{hits}"
    );
    let p = m.call(
        "get_document",
        json!({"doc": top["doc"], "start": top["start"], "end": top["end"]}),
    );
    assert_eq!(p["text"], top["text"]);
    assert_eq!(p["heading"], top["heading"]);

    // The embedded generator answers, with citations that read back.
    let a = m.call(
        "ask",
        json!({"question": "What is a virtual environment in Python?", "k": 3}),
    );
    assert!(
        a["answer"].as_str().is_some_and(|t| !t.trim().is_empty()),
        "{a}"
    );
    assert!(a["model"].as_str().unwrap().contains("SmolLM2"), "{a}");
    assert_eq!(a["answered"], true, "{a}");
    let cites = a["citations"].as_array().unwrap().clone();
    assert!(!cites.is_empty(), "{a}");
    for c in &cites {
        let p = m.call(
            "get_document",
            json!({"doc": c["doc"], "start": c["start"], "end": c["end"]}),
        );
        assert_eq!(p["text"], c["text"]);
    }

    let r = m.request(
        "tools/call",
        json!({"name": "search", "arguments": {"query": "x", "k": 1000}}),
    );
    assert_eq!(r["error"]["code"], -32602);
    assert_eq!(r["error"]["data"]["field"], "arguments.k");
    let r = m.request(
        "tools/call",
        json!({"name": "search", "arguments": {"query": "x", "collection": "nope"}}),
    );
    assert_eq!(r["result"]["isError"], true);
    assert!(r["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains("`nope` does not exist"));

    let list = m.request("resources/list", json!({}));
    let uris: Vec<String> = list["result"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["uri"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(uris.len(), 2, "{list}");
    assert!(
        uris.iter().all(|u| u.starts_with("cairn://default/")),
        "{uris:?}"
    );
    let read = m.request("resources/read", json!({"uri": uris[0]}));
    let text = read["result"]["contents"][0]["text"].as_str().unwrap();
    assert!(text.len() > 1000, "{read}");

    // The end of its input ends the process, cleanly.
    drop(m.stdin.take());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(st) = m.child.try_wait().unwrap() {
            assert!(st.success(), "{st}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "cairn mcp did not exit at EOF"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A raw POST to /mcp with the given headers; status, headers, body.
fn post(url: &str, headers: &[(&str, &str)], body: &str) -> (u16, ureq::http::HeaderMap, String) {
    let mut r = common::server::Client::agent().post(&format!("{url}/mcp"));
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let mut resp = r.send(body).unwrap();
    let status = resp.status().as_u16();
    let h = resp.headers().clone();
    let text = resp.body_mut().read_to_string().unwrap_or_default();
    (status, h, text)
}

#[test]
fn mcp_on_cairn_serve() {
    let tmp = tempfile::tempdir().unwrap();
    let key = "mcp-test-key-0123456789abcdef";
    let limited = "mcp-test-key-limited-0123456789";
    let cfg = tmp.path().join("cairn.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\napi_keys = [{{ key = \"{key}\" }}, {{ key = \"{limited}\", collections = [\"other\"] }}]\n"
        ),
    )
    .unwrap();
    let s = Server::start(
        &tmp.path().join("data"),
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--max-tokens",
            "32",
            "--seed",
            "1",
        ],
        &[],
    );
    let url = s.url.clone();
    let bearer = format!("Bearer {key}");
    let json_ct = ("Content-Type", "application/json");
    let accept = ("Accept", "application/json, text/event-stream");
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}"#;

    // No key, a wrong key: 401 before anything else.
    let (st, _, _) = post(&url, &[json_ct, accept], init);
    assert_eq!(st, 401);
    let (st, _, _) = post(
        &url,
        &[json_ct, accept, ("Authorization", "Bearer wrong")],
        init,
    );
    assert_eq!(st, 401);
    // A page on another site cannot post to it, key or not.
    let (st, _, body) = post(
        &url,
        &[
            json_ct,
            accept,
            ("Authorization", &bearer),
            ("Origin", "http://evil.example"),
        ],
        init,
    );
    assert_eq!(st, 403, "{body}");

    let auth = ("Authorization", bearer.as_str());
    let (st, h, body) = post(&url, &[json_ct, accept, auth], init);
    assert_eq!(st, 200, "{body}");
    let r: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(r["result"]["protocolVersion"], "2025-06-18");
    let sid = h
        .get("mcp-session-id")
        .expect("a session id")
        .to_str()
        .unwrap()
        .to_string();
    assert!(sid.len() >= 32);
    let session = ("Mcp-Session-Id", sid.as_str());
    let version = ("MCP-Protocol-Version", "2025-06-18");

    let list = r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#;
    let (st, _, _) = post(&url, &[json_ct, accept, auth], list);
    assert_eq!(st, 400, "a request without its session");
    let (st, _, _) = post(
        &url,
        &[json_ct, accept, auth, ("Mcp-Session-Id", "0000")],
        list,
    );
    assert_eq!(st, 404, "an unknown session");
    let (st, _, _) = post(
        &url,
        &[
            json_ct,
            accept,
            auth,
            session,
            ("MCP-Protocol-Version", "1999-01-01"),
        ],
        list,
    );
    assert_eq!(st, 400, "an unsupported protocol version");
    let (st, _, _) = post(
        &url,
        &[("Content-Type", "text/plain"), accept, auth, session],
        list,
    );
    assert_eq!(st, 415);
    let (st, _, body) = post(&url, &[json_ct, accept, auth, session], "{not json");
    assert_eq!(st, 400);
    assert!(body.contains("-32700"), "{body}");

    let (st, _, body) = post(
        &url,
        &[json_ct, accept, auth, session, version],
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    );
    assert_eq!((st, body.as_str()), (202, ""));
    let (st, h, body) = post(&url, &[json_ct, accept, auth, session, version], list);
    assert_eq!(st, 200, "{body}");
    assert!(h
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let r: Value = serde_json::from_str(&body).unwrap();
    let tools = r["result"]["tools"].as_array().unwrap();
    // Over HTTP, ingest takes documents, never server paths.
    assert_eq!(tools[2]["inputSchema"]["required"], json!(["documents"]));

    let call = |id: u64, tool: &str, args: Value| -> Value {
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": args}});
        let (st, _, body) = post(
            &url,
            &[json_ct, accept, auth, session, version],
            &msg.to_string(),
        );
        assert_eq!(st, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    };
    let r = call(3, "ingest", json!({"paths": ["/etc"]}));
    assert_eq!(r["error"]["data"]["field"], "arguments.paths", "{r}");
    let r = call(
        4,
        "ingest",
        json!({"collection": "other", "documents": [{"name": "../../bridge.md", "text": "# Kestrel Bridge\n\nThe Kestrel Bridge opened to traffic in 1987 and is 412 metres long.\n"}]}),
    );
    assert_eq!(r["result"]["structuredContent"]["added"], 1, "{r}");
    let r = call(
        5,
        "search",
        json!({"collection": "other", "query": "When did the bridge open?", "k": 1}),
    );
    let hit = &r["result"]["structuredContent"]["hits"][0];
    assert_eq!(hit["doc"], "bridge.md", "{r}");
    let r = call(
        6,
        "ask",
        json!({"collection": "other", "question": "How long is the Kestrel Bridge?"}),
    );
    assert_eq!(r["result"]["isError"], false, "{r}");
    assert!(r["result"]["structuredContent"]["answer"]
        .as_str()
        .is_some_and(|a| !a.is_empty()));

    // A client that accepts only an event stream gets the reply as one event.
    let (st, h, body) = post(
        &url,
        &[json_ct, ("Accept", "text/event-stream"), auth, session],
        r#"{"jsonrpc":"2.0","id":9,"method":"ping"}"#,
    );
    assert_eq!(st, 200);
    assert!(h
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    assert!(body.starts_with("event: message\ndata: {"), "{body}");

    // A key limited to `other` cannot use the session, nor reach `default`.
    let lim = format!("Bearer {limited}");
    let (st, _, _) = post(
        &url,
        &[json_ct, accept, ("Authorization", &lim), session],
        list,
    );
    assert_eq!(st, 404, "another key's session");
    let (st, h, _) = post(&url, &[json_ct, accept, ("Authorization", &lim)], init);
    assert_eq!(st, 200);
    let lsid = h
        .get("mcp-session-id")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let msg = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "search", "arguments": {"query": "bridge"}}});
    let (_, _, body) = post(
        &url,
        &[
            json_ct,
            accept,
            ("Authorization", &lim),
            ("Mcp-Session-Id", &lsid),
        ],
        &msg.to_string(),
    );
    assert!(body.contains("may not use collection `default`"), "{body}");

    // GET: no server stream; DELETE ends the session.
    let agent = common::server::Client::agent();
    let r = agent
        .get(&format!("{url}/mcp"))
        .header("Authorization", &bearer)
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    let r = agent
        .delete(&format!("{url}/mcp"))
        .header("Authorization", &bearer)
        .header("Mcp-Session-Id", &sid)
        .call()
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let (st, _, _) = post(&url, &[json_ct, accept, auth, session], list);
    assert_eq!(st, 404, "an ended session");
}
