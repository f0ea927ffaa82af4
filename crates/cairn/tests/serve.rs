//! `cairn serve` as clients use it, in separate processes on loopback, with
//! the real embedder and the real SmolLM2 GGUF: the REST API, the
//! OpenAI-compatible API, streaming, feedback, metrics, API keys and limits,
//! the bounded generator queue, searches during ingestion, and SIGTERM.

mod common;

use common::server::Server;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const BRIDGE: &str = "# Kestrel Bridge\n\n## History\n\n\
The Kestrel Bridge over the Varne estuary opened to traffic in 1987. \
It is 412 metres long and carries the coastal railway between Harrow Point and Selby.\n\n\
## Maintenance\n\nThe bridge is repainted every nine years by the Varne Harbour Trust.\n";

/// The int8 ONNX embedder: the ingestion-heavy tests run three times
/// faster on it than on candle.
const ONNX: &[&str] = &[
    "--embed-backend",
    "onnx",
    "--embed-model",
    "all-MiniLM-L6-v2-int8",
];

const QUESTION: &str = "In what year did the Kestrel Bridge open?";

fn page(p: &str) -> Vec<u8> {
    std::fs::read(cairn_testkit::python_docs().join(p)).unwrap()
}

fn upload_and_wait(s: &Server, collection: &str, files: &[(&str, &[u8])]) -> Value {
    let (st, v) = s.upload(collection, files);
    assert_eq!(st, 202, "{v}");
    s.wait_job(v["job"]["id"].as_str().unwrap())
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let n = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (n(a) * n(b))
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

#[test]
fn refuses_a_public_address_without_a_key() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = common::cairn(tmp.path());
    c.env_remove("CAIRN_API_KEY")
        .args(["serve", "--addr", "0.0.0.0:0"]);
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("CAIRN_API_KEY") && err.contains("0.0.0.0"),
        "{err}"
    );
}

#[test]
fn rest_and_openai_apis_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let s = Server::start(&data, &["--max-tokens", "48", "--seed", "1"], &[]);

    let (st, h) = s.get("/healthz");
    assert_eq!((st, h["status"].as_str()), (200, Some("ok")));

    // A JSON text upload whose name tries to climb out of the uploads dir.
    let (st, v) = s.post(
        "/api/collections/notes/documents",
        &json!({"name": "../../../bridge.md", "text": BRIDGE}),
    );
    assert_eq!(st, 202, "{v}");
    let job = s.wait_job(v["job"]["id"].as_str().unwrap());
    assert_eq!(job["state"], "done", "{job}");
    assert!(!tmp.path().join("bridge.md").exists());
    let stored: Vec<_> = std::fs::read_dir(data.join("uploads/notes/files"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert!(
        stored.len() == 1 && stored[0] != "bridge.md" && stored[0].ends_with(".md"),
        "{stored:?}"
    );

    // Multipart: two real pages and a corrupt PDF, which is skipped and
    // reported while the rest of the batch goes in.
    let venv = page("library/venv.html");
    let json_page = page("library/json.html");
    let job = upload_and_wait(
        &s,
        "notes",
        &[
            ("venv.html", &venv),
            ("json.html", &json_page),
            ("broken.pdf", b"%PDF-1.7 this is not really a pdf"),
        ],
    );
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["documents_added"], 2, "{job}");
    let skipped = job["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1, "{job}");
    assert_eq!(skipped[0]["path"], "broken.pdf");

    let (st, docs) = s.get("/api/collections/notes/documents");
    assert_eq!(st, 200);
    let mut names: Vec<&str> = docs["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["bridge.md", "json.html", "venv.html"]);

    let (st, cols) = s.get("/api/collections");
    assert_eq!(st, 200);
    assert_eq!(cols["collections"][0]["name"], "notes");
    assert_eq!(cols["collections"][0]["documents"], 3);

    // Search.
    let (st, r) = s.get(
        "/api/search?q=how%20do%20I%20create%20a%20virtual%20environment&collection=notes&k=3",
    );
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["hits"][0]["doc"], "venv.html", "{r}");
    assert_eq!(r["hits"].as_array().unwrap().len(), 3);
    let (st, e) = s.get("/api/search?q=x&collection=notes&k=0");
    assert_eq!(st, 400);
    assert_eq!(e["error"]["field"], "k", "{e}");
    let (st, e) = s.get("/api/search?q=x&collection=nope");
    assert_eq!(st, 404, "{e}");
    let (st, e) = s.get("/api/search?collection=notes");
    assert_eq!(st, 400, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains('q'), "{e}");

    // Ask, JSON.
    let (st, a) = s.post(
        "/api/ask",
        &json!({"question": QUESTION, "collection": "notes"}),
    );
    assert_eq!(st, 200, "{a}");
    assert_eq!(a["answered"], true, "{a}");
    assert!(a["answer"].as_str().unwrap().contains("1987"), "{a}");
    assert_eq!(a["retrieved"][0]["doc"], "bridge.md", "{a}");
    for c in a["citations"].as_array().unwrap() {
        assert!(
            a["answer"]
                .as_str()
                .unwrap()
                .contains(&format!("[{}]", c["n"])),
            "{a}"
        );
    }
    let answer_id = a["answer_id"].as_str().unwrap().to_string();

    // Ask, streamed: tokens, then `done` with the whole answer.
    let (st, events) = s.sse(
        "/api/ask",
        &json!({"question": QUESTION, "collection": "notes", "stream": true}),
        |_, _| {},
    );
    assert_eq!(st, 200);
    let tokens: Vec<&(String, String)> = events.iter().filter(|(e, _)| e == "token").collect();
    assert!(tokens.len() >= 2, "{events:?}");
    let (last, last_data) = events.last().unwrap();
    assert_eq!(last, "done", "{events:?}");
    let done: Value = serde_json::from_str(last_data).unwrap();
    let streamed: String = tokens
        .iter()
        .map(|(_, d)| {
            serde_json::from_str::<Value>(d).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(
        streamed.contains("1987") && done["answer"].as_str().unwrap().contains("1987"),
        "{streamed} / {done}"
    );

    // Feedback goes to the catalog with the question and what was retrieved.
    let (st, f) = s.post(
        "/api/feedback",
        &json!({"answer_id": answer_id, "rating": "up", "comment": "right year", "helpful_citations": [1]}),
    );
    assert_eq!(st, 201, "{f}");
    let (st, list) = s.get("/api/feedback?collection=notes");
    assert_eq!(st, 200);
    let rec = &list["feedback"][0];
    assert_eq!(rec["answer_id"], answer_id.as_str());
    assert_eq!(rec["rating"], "up");
    assert_eq!(rec["question"], QUESTION);
    assert!(rec["answer"].as_str().unwrap().contains("1987"));
    assert!(!rec["retrieved"].as_array().unwrap().is_empty());
    let (st, _) = s.post(
        "/api/feedback",
        &json!({"answer_id": "a-nope", "rating": "up"}),
    );
    assert_eq!(st, 404);
    let (st, e) = s.post(
        "/api/feedback",
        &json!({"answer_id": answer_id, "rating": "meh"}),
    );
    assert_eq!(st, 400, "{e}");

    // OpenAI: models.
    let (st, m) = s.get("/v1/models");
    assert_eq!(st, 200);
    let ids: Vec<&str> = m["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"cairn") && ids.contains(&"cairn:notes") && ids.contains(&"all-MiniLM-L6-v2"),
        "{ids:?}"
    );

    // OpenAI: embeddings are the real model's (related sentences closer than
    // unrelated ones), as floats or base64.
    let (st, e) = s.post(
        "/v1/embeddings",
        &json!({"model": "all-MiniLM-L6-v2", "input": ["A man is eating food.", "A man is eating a piece of bread.", "The stock market fell sharply today."]}),
    );
    assert_eq!(st, 200, "{e}");
    let v: Vec<Vec<f64>> = e["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| floats(&d["embedding"]))
        .collect();
    assert_eq!(v[0].len(), 384);
    let (near, far) = (cosine(&v[0], &v[1]), cosine(&v[0], &v[2]));
    assert!(near > 0.6 && far < 0.2, "near {near}, far {far}");
    let (st, b) = s.post(
        "/v1/embeddings",
        &json!({"model": "all-MiniLM-L6-v2", "input": "A man is eating food.", "encoding_format": "base64"}),
    );
    assert_eq!(st, 200);
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f64> = bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
        .collect();
    assert!(cosine(&decoded, &v[0]) > 0.9999);
    let (st, _) = s.post(
        "/v1/embeddings",
        &json!({"model": "text-embedding-3-small", "input": "x"}),
    );
    assert_eq!(st, 404);

    // OpenAI: chat completions, plain and streamed.
    let (st, c) = s.post(
        "/v1/chat/completions",
        &json!({"model": "cairn:notes", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": QUESTION}]}),
    );
    assert_eq!(st, 200, "{c}");
    assert_eq!(c["object"], "chat.completion");
    assert_eq!(c["choices"][0]["message"]["role"], "assistant");
    assert!(
        c["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("1987"),
        "{c}"
    );
    assert!(c["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    assert!(c["citations"].is_array());
    let (st, events) = s.sse(
        "/v1/chat/completions",
        &json!({"model": "cairn:notes", "stream": true, "messages": [{"role": "user", "content": QUESTION}]}),
        |_, _| {},
    );
    assert_eq!(st, 200);
    assert_eq!(events.last().unwrap().1, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|(_, d)| serde_json::from_str(d).unwrap())
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk" && c["id"] == chunks[0]["id"]));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop", "{last}");
    assert!(
        last["citations"].is_array() && last["answer_id"].is_string(),
        "{last}"
    );
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(text.contains("1987"), "{text}");
    let (st, e) = s.post(
        "/v1/chat/completions",
        &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}),
    );
    assert_eq!(st, 404, "{e}");
    assert_eq!(e["error"]["type"], "not_found");

    // Metrics and the API description.
    let (st, m) = s.get("/metrics");
    assert_eq!(st, 200);
    let m = m["text"].as_str().unwrap();
    for needle in [
        "cairn_http_requests_total{method=\"GET\",route=\"/api/search\",status=\"200\"}",
        "cairn_http_request_duration_seconds_bucket{method=\"POST\",route=\"/api/ask\"",
        "cairn_index_vectors{collection=\"notes\"}",
        "cairn_generator_queue_depth 0",
        "cairn_ingest_chunks_total",
        "cairn_embed_texts_total 4",
    ] {
        assert!(m.contains(needle), "{needle} missing from\n{m}");
    }
    let chunks_total: f64 = m
        .lines()
        .find(|l| l.starts_with("cairn_ingest_chunks_total "))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    assert!(chunks_total > 10.0, "{chunks_total}");
    let (st, doc) = s.get("/openapi.json");
    assert_eq!(st, 200);
    for p in [
        "/v1/chat/completions",
        "/v1/embeddings",
        "/api/ask",
        "/api/feedback",
        "/api/jobs/{id}",
    ] {
        assert!(
            doc["paths"][p].is_object(),
            "{p} not in the OpenAPI document"
        );
    }

    // Delete a document: it leaves the listing, the search and the uploads dir.
    let id = docs["documents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "bridge.md")
        .unwrap()["id"]
        .as_u64()
        .unwrap();
    assert_eq!(
        s.delete(&format!("/api/collections/notes/documents/{id}")),
        204
    );
    assert_eq!(
        s.delete(&format!("/api/collections/notes/documents/{id}")),
        404
    );
    let (_, r) = s.get("/api/search?q=Kestrel%20Bridge%20Varne&collection=notes&k=5");
    assert!(
        r["hits"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["doc"] != "bridge.md"),
        "{r}"
    );
    assert!(!std::fs::read_dir(data.join("uploads/notes/files"))
        .unwrap()
        .any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".md")));

    // The web UI is served by the same binary.
    let (st, html) = s.get("/");
    assert_eq!(st, 200);
    assert!(html["text"].as_str().unwrap().contains("/assets/app.js"));

    // Delete the collection.
    assert_eq!(s.delete("/api/collections/notes"), 204);
    let (st, _) = s.get("/api/collections/notes/documents");
    assert_eq!(st, 404);
}

#[test]
fn api_keys_limits_and_body_size() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = tmp.path().join("cairn.toml");
    std::fs::write(
        &cfg,
        "[server]\nmax_body_bytes = 65536\n[[server.api_keys]]\nkey = \"only-team-a-0123456789\"\ncollections = [\"team-a\"]\n",
    )
    .unwrap();
    let admin = "admin-key-0123456789abcdef";
    let mut s = Server::start(
        &data,
        &["--config", cfg.to_str().unwrap()],
        &[("CAIRN_API_KEY", admin)],
    );
    // Without a key, or with a wrong one: 401 (health and the UI stay open).
    s.key = None;
    assert_eq!(s.get("/api/collections").0, 401);
    assert_eq!(s.get("/v1/models").0, 401);
    assert_eq!(s.get("/metrics").0, 401);
    assert_eq!(s.get("/healthz").0, 200);
    assert_eq!(s.get("/").0, 200);
    s.key = Some("admin-key-0123456789abcdeX".into());
    let (st, e) = s.get("/api/collections");
    assert_eq!(st, 401);
    assert_eq!(e["error"]["type"], "unauthorized");

    // The admin key reaches everything.
    s.key = Some(admin.into());
    for c in ["team-a", "team-b"] {
        let (st, v) = s.post("/api/collections", &json!({"name": c}));
        assert_eq!(st, 201, "{v}");
    }
    let (st, e) = s.post("/api/collections", &json!({"name": "../etc"}));
    assert_eq!(st, 400, "{e}");

    // A key limited to team-a sees and touches only team-a.
    s.key = Some("only-team-a-0123456789".into());
    let (st, cols) = s.get("/api/collections");
    assert_eq!(st, 200);
    assert_eq!(cols["collections"].as_array().unwrap().len(), 1, "{cols}");
    assert_eq!(cols["collections"][0]["name"], "team-a");
    assert_eq!(s.get("/api/collections/team-b/documents").0, 403);
    assert_eq!(s.get("/api/search?q=x&collection=team-b").0, 403);
    assert_eq!(s.delete("/api/collections/team-b"), 403);
    assert_eq!(
        s.post(
            "/api/ask",
            &json!({"question": "x", "collection": "team-b"})
        )
        .0,
        403
    );
    let (st, m) = s.get("/v1/models");
    assert_eq!(st, 200);
    assert!(!m.to_string().contains("team-b"), "{m}");
    // /metrics names every collection: not for a key limited to some.
    let (st, e) = s.get("/metrics");
    assert_eq!(st, 403, "{e}");
    s.key = Some(admin.into());
    assert_eq!(s.get("/metrics").0, 200);
    s.key = Some("only-team-a-0123456789".into());

    // Bodies over server.max_body_bytes: 413, and nothing is stored.
    let big = vec![b'a'; 100_000];
    let (st, e) = s.upload("team-a", &[("big.txt", &big)]);
    assert_eq!(st, 413, "{e}");
    let (st, e) = s.post(
        "/api/collections/team-a/documents",
        &json!({"name": "big.txt", "text": String::from_utf8(big).unwrap()}),
    );
    assert_eq!(st, 413, "{e}");
    assert!(!data.join("uploads/team-a/files").exists());
}

/// A raw HTTP/1.1 exchange (headers exactly as given): the status line
/// and the rest, or what the server did instead.
fn raw(url: &str, request: &str) -> String {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(request.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    String::from_utf8_lossy(&out).to_string()
}

#[test]
fn a_web_page_cannot_reach_the_local_server() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = tmp.path().join("cairn.toml");
    std::fs::write(&cfg, "[server]\nheader_timeout_secs = 2\n").unwrap();
    let s = Server::start(&data, &["--config", cfg.to_str().unwrap()], &[]);
    let port = s.url.rsplit(':').next().unwrap().to_string();

    // DNS rebinding: a page on evil.example re-pointed at 127.0.0.1 sends
    // its own name; without a key only loopback names are answered.
    let r = raw(
        &s.url,
        "GET /api/collections HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    );
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    assert!(r.contains("loopback"), "{r}");
    let r = raw(
        &s.url,
        &format!(
            "GET /api/collections HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n"
        ),
    );
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");

    // Cross-site writes (a form post is a CORS simple request): refused,
    // and nothing is stored.
    let body = r##"{"name":"forged.md","text":"# Forged"}"##;
    let post = |extra: &str| {
        format!(
            "POST /api/collections/notes/documents HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
            body.len()
        )
    };
    let r = raw(&s.url, &post("Origin: http://evil.example\r\n"));
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    let r = raw(&s.url, &post("Sec-Fetch-Site: cross-site\r\n"));
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    let r = raw(&s.url, &post("Origin: null\r\n"));
    assert!(r.starts_with("HTTP/1.1 403"), "{r}");
    assert_eq!(s.get("/api/collections/notes/documents").0, 404);
    assert!(!data.join("uploads/notes").exists());
    // The server's own page may.
    let r = raw(
        &s.url,
        &post(&format!(
            "Origin: http://127.0.0.1:{port}\r\nSec-Fetch-Site: same-origin\r\n"
        )),
    );
    assert!(r.starts_with("HTTP/1.1 202"), "{r}");

    // A client that never finishes its headers is cut off.
    let t = Instant::now();
    let r = raw(&s.url, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    let waited = t.elapsed();
    assert!(
        waited < Duration::from_secs(10),
        "the connection was held {waited:?}: {r}"
    );
    assert!(!r.contains("200 OK"), "{r}");
}

#[test]
fn uploads_are_written_to_disk_as_they_arrive() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let s = Server::start(&data, &[], &[]);
    let port = s.url.rsplit(':').next().unwrap().to_string();
    let text: String = (0..8000)
        .map(|i| format!("Line {i} of a long plain text about the Kestrel Bridge.\n"))
        .collect();
    let head = "--B7\r\nContent-Disposition: form-data; name=\"file\"; filename=\"long.txt\"\r\nContent-Type: text/plain\r\n\r\n";
    let tail = "\r\n--B7--\r\n";
    let body_len = head.len() + text.len() + tail.len();
    let mut c = std::net::TcpStream::connect(s.url.trim_start_matches("http://")).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        c,
        "POST /api/collections/notes/documents HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: multipart/form-data; boundary=B7\r\nContent-Length: {body_len}\r\nConnection: close\r\n\r\n{head}"
    )
    .unwrap();
    let half = text.len() / 2;
    c.write_all(&text.as_bytes()[..half]).unwrap();
    c.flush().unwrap();
    // Half the file is on the wire: it is on disk already, not in memory.
    let incoming = data.join("uploads/notes/incoming");
    let deadline = Instant::now() + Duration::from_secs(20);
    let on_disk = loop {
        let size: u64 = std::fs::read_dir(&incoming)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum();
        if size > 0 || Instant::now() > deadline {
            break size;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        on_disk > 0,
        "nothing of the upload reached {}",
        incoming.display()
    );
    c.write_all(&text.as_bytes()[half..]).unwrap();
    c.write_all(tail.as_bytes()).unwrap();
    let mut resp = String::new();
    let _ = c.read_to_string(&mut resp);
    assert!(resp.starts_with("HTTP/1.1 202"), "{resp}");
    // Stored whole, under a server-chosen name; nothing left incoming.
    let files: Vec<_> = std::fs::read_dir(data.join("uploads/notes/files"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(files.len(), 1);
    assert_eq!(
        std::fs::read_to_string(files[0].path()).unwrap(),
        text,
        "the stored file is the upload, byte for byte"
    );
    assert_eq!(std::fs::read_dir(&incoming).unwrap().count(), 0);
}

#[test]
fn a_full_generator_queue_answers_503_with_retry_after() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // No waiting room: while one answer is generated, the next is refused.
    let s = Server::start(&data, &["--queue", "0", "--max-tokens", "64"], &[]);
    let job = {
        let (st, v) = s.post(
            "/api/collections/default/documents",
            &json!({"name": "bridge.md", "text": BRIDGE}),
        );
        assert_eq!(st, 202, "{v}");
        s.wait_job(v["job"]["id"].as_str().unwrap())
    };
    assert_eq!(job["state"], "done");
    let url = s.url.clone();
    let (first_token_tx, first_token_rx) = std::sync::mpsc::channel();
    let streaming = std::thread::spawn({
        let s2 = common::server::Client {
            url: url.clone(),
            key: None,
        };
        move || {
            let mut sent = false;
            s2.sse(
                "/api/ask",
                &json!({"question": QUESTION, "stream": true}),
                |ev, _| {
                    if ev == "token" && !sent {
                        sent = true;
                        first_token_tx.send(()).unwrap();
                    }
                },
            )
        }
    });
    first_token_rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the first answer started streaming");
    let r = common::server::Client::agent()
        .post(&format!("{url}/api/ask"))
        .send_json(json!({"question": QUESTION}))
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let retry: u64 = common::server::header(&r, "retry-after")
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let (st, events) = streaming.join().unwrap();
    assert_eq!(st, 200);
    assert_eq!(events.last().unwrap().0, "done", "{events:?}");
    let (_, m) = s.get("/metrics");
    assert!(m["text"]
        .as_str()
        .unwrap()
        .contains("cairn_generator_rejected_total 1"));
    // Once the generator is free, asks are served again.
    let (st, a) = s.post("/api/ask", &json!({"question": QUESTION}));
    assert_eq!(st, 200, "{a}");
}

/// Pages of the Python tutorial: enough work for an ingestion job to run a
/// while.
fn tutorial_pages() -> Vec<(String, Vec<u8>)> {
    cairn_testkit::pages_under("tutorial")
        .into_iter()
        .chain(cairn_testkit::pages_under("howto"))
        // Both folders have an index.html: one display name, one document.
        .filter(|p| !p.ends_with("/index.html"))
        .map(|p| {
            let name = p.rsplit('/').next().unwrap().to_string();
            (name, page(&p))
        })
        .collect()
}

/// Ingest the bridge note, then start (and do not wait for) a job for the
/// tutorial pages; the pages and the job id.
fn bridge_then_tutorial_job(s: &Server) -> (Vec<(String, Vec<u8>)>, String) {
    upload_and_wait(s, "docs", &[("bridge.md", BRIDGE.as_bytes())]);
    let pages = tutorial_pages();
    let files: Vec<(&str, &[u8])> = pages
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let (st, v) = s.upload("docs", &files);
    assert_eq!(st, 202, "{v}");
    let id = v["job"]["id"].as_str().unwrap().to_string();
    (pages, id)
}

#[test]
fn searches_are_served_while_an_ingestion_job_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let s = Server::start(&data, ONNX, &[]);
    let (pages, id) = bridge_then_tutorial_job(&s);
    // Search while the job runs, as a user would (a search every 50 ms);
    // count the searches answered before the job reports that it has
    // finished.
    let mut during = 0;
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let (st, r) = s.get("/api/search?q=Kestrel%20Bridge&collection=docs&k=3");
        assert_eq!(st, 200, "{r}");
        assert_eq!(r["hits"][0]["doc"], "bridge.md", "{r}");
        let (_, j) = s.get(&format!("/api/jobs/{id}"));
        match j["state"].as_str() {
            Some("queued" | "running") => during += 1,
            _ => {
                assert_eq!(j["state"], "done", "{j}");
                break;
            }
        }
    }
    assert!(
        during >= 5,
        "only {during} searches were answered during the job"
    );
    let (_, docs) = s.get("/api/collections/docs/documents");
    assert_eq!(docs["documents"].as_array().unwrap().len(), pages.len() + 1);
}

#[test]
fn sigterm_finishes_in_flight_work_and_loses_nothing_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut s = Server::start(&data, &[ONNX, &["--max-tokens", "48"]].concat(), &[]);
    let (pages, id) = bridge_then_tutorial_job(&s);

    // An answer is streaming and the job is part-way when SIGTERM arrives.
    let url = s.url.clone();
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let streaming = std::thread::spawn(move || {
        let mut sent = false;
        common::server::Client {
            url: url.clone(),
            key: None,
        }
        .sse(
            "/api/ask",
            &json!({"question": QUESTION, "collection": "docs", "stream": true}),
            |ev, _| {
                if ev == "token" && !sent {
                    sent = true;
                    started_tx.send(()).unwrap();
                }
            },
        )
    });
    started_rx.recv_timeout(Duration::from_secs(120)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (_, j) = s.get(&format!("/api/jobs/{id}"));
        if j["state"] == "running" && j["files_done"].as_u64().unwrap() > 0 {
            break;
        }
        assert!(
            j["state"] != "done",
            "the job ended before the test could stop it: {j}"
        );
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = s.terminate();
    assert!(status.success(), "exit {status}: {}", s.log_text());
    // The in-flight answer was finished, not cut.
    let (st, events) = streaming.join().unwrap();
    assert_eq!(st, 200);
    assert_eq!(events.last().unwrap().0, "done", "{events:?}");
    assert!(s.log_text().contains("shutting down"), "{}", s.log_text());

    // Restarted, the server resumes the accepted uploads (if the job had
    // not finished them): every page ends up in the collection exactly once.
    let s = Server::start(&data, ONNX, &[]);
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let (_, jobs) = s.get("/api/jobs");
        let jobs = jobs["jobs"].as_array().unwrap().clone();
        assert!(jobs.iter().all(|j| j["state"] != "failed"), "{jobs:?}");
        let idle = jobs
            .iter()
            .all(|j| j["state"] != "queued" && j["state"] != "running");
        let (_, docs) = s.get("/api/collections/docs/documents");
        if idle && docs["documents"].as_array().unwrap().len() > pages.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "uploads were not resumed: {jobs:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let (_, docs) = s.get("/api/collections/docs/documents");
    let mut names: Vec<String> = docs["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    let mut expected: Vec<String> = pages.iter().map(|(n, _)| n.clone()).collect();
    expected.push("bridge.md".into());
    expected.sort();
    assert_eq!(names, expected);
    let (_, st) = s.get("/api/collections");
    let c = &st["collections"][0];
    let (_, r) = s.get("/api/search?q=list%20comprehensions&collection=docs&k=1");
    assert!(!r["hits"].as_array().unwrap().is_empty(), "{r}");
    assert!(c["chunks"].as_u64().unwrap() > 0);
}

/// Run a command that must finish within `secs` (a command that waited for
/// another process would not); its output.
fn finishes(mut c: std::process::Command, secs: u64) -> std::process::Output {
    use std::process::Stdio;
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{c:?} did not finish in {secs} s: it waited for the server");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// Many processes, one collection. While `cairn serve` holds a collection,
/// the CLI's read commands answer from it without waiting for the server,
/// and see what the server ingested; a command that writes is told at once
/// which process holds it; with `--wait` it waits for that process, then
/// writes.
#[test]
fn read_commands_work_beside_a_server_and_a_second_writer_is_told_who_holds_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut s = Server::start(&data, ONNX, &[]);
    let job = upload_and_wait(&s, "notes", &[("bridge.md", BRIDGE.as_bytes())]);
    assert_eq!(job["state"], "done", "{job}");
    let cli = |args: &[&str]| {
        let mut c = common::cairn(&data);
        c.args(ONNX).args(["-c", "notes"]).args(args);
        c
    };

    let out = finishes(cli(&["search", QUESTION, "-k", "3", "--json"]), 120);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = common::json(&out.stdout);
    assert_eq!(v["hits"][0]["doc"], "bridge.md", "{v:#}");
    let out = finishes(cli(&["status", "--json"]), 120);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(common::json(&out.stdout)["documents"], 1);
    // An extractive answer reads only too.
    let out = finishes(cli(&["ask", QUESTION, "--extractive", "--json"]), 120);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        common::json(&out.stdout)["answer"]
            .as_str()
            .unwrap()
            .contains("1987"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // A writer: refused at once, naming the server's process.
    let more = tmp.path().join("more");
    std::fs::create_dir_all(&more).unwrap();
    std::fs::write(
        more.join("lighthouse.md"),
        "# Skarv Island lighthouse\n\nThe lamp is lit at 17:40 every evening.\n",
    )
    .unwrap();
    let ingest = |wait: bool| {
        let mut c = cli(&[]);
        if wait {
            c.arg("--wait");
        }
        c.arg("ingest").arg(&more);
        c
    };
    let out = finishes(ingest(false), 120);
    assert_eq!(out.status.code(), Some(75), "EX_TEMPFAIL");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("in use by process {}", s.child.id())) && err.contains("serve"),
        "{err}"
    );
    assert!(err.contains("--wait"), "{err}");

    // With --wait it waits for the server, then ingests.
    let mut waiting = ingest(true)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        waiting.try_wait().unwrap().is_none(),
        "ingest --wait did not wait for the server"
    );
    assert!(s.terminate().success());
    let out = waiting.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 added"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = finishes(cli(&["status", "--json"]), 120);
    assert_eq!(common::json(&out.stdout)["documents"], 2);
}

/// A collection no request has used for `server.idle_close_secs` is closed
/// (its indexes saved, its write lock released): `cairn ingest` can write
/// to it while the server runs, and the server's next request opens it
/// again and finds what the CLI wrote.
#[test]
fn an_idle_collection_is_closed_so_a_cli_ingest_can_write_meanwhile() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cfg = tmp.path().join("cairn.toml");
    std::fs::write(&cfg, "[server]\nidle_close_secs = 1\n").unwrap();
    let cfg_arg = cfg.to_string_lossy().to_string();
    let mut args: Vec<&str> = ONNX.to_vec();
    args.extend(["--config", cfg_arg.as_str()]);
    let mut s = Server::start(&data, &args, &[]);
    let job = upload_and_wait(&s, "notes", &[("bridge.md", BRIDGE.as_bytes())]);
    assert_eq!(job["state"], "done", "{job}");

    let more = tmp.path().join("more");
    std::fs::create_dir_all(&more).unwrap();
    std::fs::write(
        more.join("lighthouse.md"),
        "# Skarv Island lighthouse\n\nThe lamp is lit at 17:40 every evening.\n",
    )
    .unwrap();
    // Without --wait: refused while the server holds the collection, done
    // once it has closed it for idleness.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut refusals = 0;
    loop {
        let mut c = common::cairn(&data);
        c.args(ONNX)
            .args(["-c", "notes", "--config", cfg_arg.as_str(), "ingest"])
            .arg(&more);
        let out = finishes(c, 120);
        if out.status.success() {
            break;
        }
        assert_eq!(
            out.status.code(),
            Some(75),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        refusals += 1;
        assert!(
            Instant::now() < deadline,
            "the server never let the collection go: {}",
            s.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("ingest refused {refusals} time(s) before the server closed the collection");
    let (st, r) = s.get("/api/search?q=Skarv%20Island%20lamp&collection=notes&k=1");
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["hits"][0]["doc"], "lighthouse.md", "{r:#}");
    assert!(s.terminate().success());
}
