//! `OpenAiGenerator` against a scripted HTTP server on 127.0.0.1: streaming,
//! retries, timeouts and malformed answers, without a real LLM server.

use cairn_generate::openai::{OpenAiConfig, OpenAiGenerator};
use cairn_generate::{ChatMessage, Finish, Flow, GenerateError, Generation, Generator, Sampling};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// What the server does with one connection, after reading its request.
enum Reply {
    /// Write each part (flushing and pausing between them), then close.
    Parts(Vec<Vec<u8>>),
    /// Write `bytes`, then keep the connection open and silent for a while
    /// (while the next connection is served).
    ThenSilent(Vec<u8>, Duration),
    /// Close without answering.
    Close,
}

/// A request as the server received it.
struct Request {
    head: String,
    body: Vec<u8>,
}

impl Request {
    fn request_line(&self) -> &str {
        self.head.lines().next().unwrap_or("")
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }
}

struct Server {
    url: String,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Server {
    fn requests(&self) -> std::sync::MutexGuard<'_, Vec<Request>> {
        self.requests.lock().unwrap()
    }
}

/// Serve `replies` in order, one per connection, then stop listening (so a
/// request beyond the script is refused).
fn serve(replies: Vec<Reply>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&requests);
    thread::spawn(move || {
        for reply in replies {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            stream.set_nodelay(true).ok();
            match read_request(&stream) {
                Some(req) => seen.lock().unwrap().push(req),
                None => continue,
            }
            answer(stream, reply);
        }
    });
    Server { url, requests }
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()?;
    Some(Request { head, body })
}

fn answer(mut stream: TcpStream, reply: Reply) {
    // Write errors are expected once a client hangs up (cancel tests).
    match reply {
        Reply::Parts(parts) => {
            for part in parts {
                if stream
                    .write_all(&part)
                    .and_then(|_| stream.flush())
                    .is_err()
                {
                    return;
                }
                thread::sleep(Duration::from_millis(3));
            }
        }
        Reply::ThenSilent(bytes, hold) => {
            let _ = stream.write_all(&bytes);
            let _ = stream.flush();
            // Hold the connection elsewhere so that a retry would be answered.
            thread::spawn(move || {
                thread::sleep(hold);
                drop(stream);
            });
        }
        Reply::Close => {}
    }
}

/// A streamed answer: each event is one HTTP chunk.
fn sse(events: &[String]) -> Reply {
    let mut parts = vec![b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
          Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        .to_vec()];
    for e in events {
        parts.push(format!("{:x}\r\n{e}\r\n", e.len()).into_bytes());
    }
    parts.push(b"0\r\n\r\n".to_vec());
    Reply::Parts(parts)
}

fn data(v: Value) -> String {
    format!("data: {v}\n\n")
}

fn delta(text: &str) -> String {
    data(json!({"object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]}))
}

fn finish(reason: &str) -> String {
    data(json!({"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}))
}

fn done() -> String {
    "data: [DONE]\n\n".to_string()
}

/// A short streamed answer "ok".
fn ok_stream() -> Reply {
    sse(&[delta("ok"), finish("stop"), done()])
}

/// A complete response with a body.
fn http(status: &str, content_type: &str, body: &str) -> Reply {
    Reply::Parts(vec![format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()])
}

fn config(url: &str) -> OpenAiConfig {
    OpenAiConfig {
        base_url: url.to_string(),
        model: "test-model".into(),
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(2),
        max_retries: 3,
        backoff_base: Duration::from_millis(1),
        ..OpenAiConfig::default()
    }
}

fn messages() -> Vec<ChatMessage> {
    vec![
        ChatMessage::system("Answer from the context."),
        ChatMessage::user("What is the answer?"),
    ]
}

/// Generate, collecting the pieces the sink saw; the sink answers `Stop`
/// after `stop_after` pieces.
fn run(
    cfg: OpenAiConfig,
    sampling: &Sampling,
    stop_after: Option<usize>,
) -> (Result<Generation, GenerateError>, Vec<String>) {
    let g = OpenAiGenerator::new(cfg).unwrap();
    let mut pieces = Vec::new();
    let mut sink = |p: &str| {
        pieces.push(p.to_string());
        if stop_after.is_some_and(|n| pieces.len() >= n) {
            Flow::Stop
        } else {
            Flow::Continue
        }
    };
    let r = g.generate(&messages(), sampling, &mut sink);
    (r, pieces)
}

#[test]
fn streamed_answer_arrives_in_order_with_usage() {
    let server = serve(vec![sse(&[
        data(json!({"choices": [{"index": 0, "delta": {"role": "assistant"}}]})),
        ": keep-alive\n\n".to_string(),
        "event: message\n".to_string() + &delta("The"),
        data(json!({"choices": [{"delta": {"reasoning_content": "thinking", "content": null}}]})),
        delta(" answer"),
        delta(" is 42."),
        finish("stop"),
        data(json!({"choices": [], "usage": {"prompt_tokens": 21, "completion_tokens": 4}})),
        done(),
    ])]);
    let sampling = Sampling {
        temperature: 0.2,
        top_p: 0.9,
        seed: 7,
        max_tokens: 64,
        stop: vec![],
        ..Sampling::default()
    };
    let (r, pieces) = run(config(&server.url), &sampling, None);
    let g = r.unwrap();
    assert_eq!(pieces, ["The", " answer", " is 42."]);
    assert_eq!(g.text, "The answer is 42.");
    assert_eq!(g.finish, Finish::Stop);
    assert_eq!((g.prompt_tokens, g.completion_tokens), (21, 4));
    assert!(g.first_token_ms.is_some_and(|t| t <= g.total_ms));

    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].request_line(), "POST /v1/chat/completions HTTP/1.1");
    assert_eq!(reqs[0].header("authorization"), None);
    let body = reqs[0].json();
    assert_eq!(body["model"], "test-model");
    assert_eq!(
        body["messages"],
        json!([
            {"role": "system", "content": "Answer from the context."},
            {"role": "user", "content": "What is the answer?"},
        ])
    );
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert_eq!(body["temperature"], json!(0.2));
    assert_eq!(body["top_p"], json!(0.9));
    assert_eq!(body["seed"], 7);
    assert_eq!(body["max_tokens"], 64);
    assert!(body.get("stop").is_none(), "{body}");
}

#[test]
fn two_server_errors_then_success_is_retried() {
    let server = serve(vec![
        http("500 Internal Server Error", "text/plain", "boom"),
        http("500 Internal Server Error", "text/plain", "boom"),
        ok_stream(),
    ]);
    let (r, pieces) = run(config(&server.url), &Sampling::default(), None);
    let g = r.unwrap();
    assert_eq!(g.text, "ok");
    assert_eq!(pieces, ["ok"]);
    assert_eq!(server.requests().len(), 3);
}

#[test]
fn too_many_requests_is_retried() {
    let server = serve(vec![
        Reply::Parts(vec![
            b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 0\r\n\
              Content-Length: 0\r\nConnection: close\r\n\r\n"
                .to_vec(),
        ]),
        ok_stream(),
    ]);
    let (r, _) = run(config(&server.url), &Sampling::default(), None);
    assert_eq!(r.unwrap().text, "ok");
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn connection_closed_before_the_answer_is_retried() {
    let server = serve(vec![Reply::Close, ok_stream()]);
    let (r, _) = run(config(&server.url), &Sampling::default(), None);
    assert_eq!(r.unwrap().text, "ok");
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn persistent_503_gives_up_after_the_retries() {
    let body = r#"{"error":{"message":"server overloaded","type":"server_error"}}"#;
    let unavailable = || http("503 Service Unavailable", "application/json", body);
    // A fourth reply that would succeed: a fourth attempt would be a bug.
    let server = serve(vec![
        unavailable(),
        unavailable(),
        unavailable(),
        ok_stream(),
    ]);
    let cfg = OpenAiConfig {
        max_retries: 2,
        ..config(&server.url)
    };
    let (r, pieces) = run(cfg, &Sampling::default(), None);
    match r {
        Err(GenerateError::Http { url, status, body }) => {
            assert_eq!(status, 503);
            assert_eq!(body, "server overloaded");
            assert!(url.starts_with(&server.url), "{url}");
        }
        other => panic!("expected Http 503, got {other:?}"),
    }
    assert!(pieces.is_empty());
    assert_eq!(server.requests().len(), 3);
}

#[test]
fn client_error_is_not_retried_and_carries_the_message() {
    let body = r#"{"error":{"message":"max_tokens is too large: 100000","type":"invalid_request_error","param":"max_tokens"}}"#;
    let server = serve(vec![
        http("400 Bad Request", "application/json", body),
        ok_stream(),
    ]);
    let (r, _) = run(config(&server.url), &Sampling::default(), None);
    let e = r.unwrap_err();
    match &e {
        GenerateError::Http { status, body, .. } => {
            assert_eq!(*status, 400);
            assert_eq!(body, "max_tokens is too large: 100000");
        }
        other => panic!("expected Http 400, got {other:?}"),
    }
    assert!(
        e.to_string()
            .contains("answered 400: max_tokens is too large"),
        "{e}"
    );
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn nothing_listening_is_unreachable_naming_the_url() {
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = OpenAiConfig {
        max_retries: 2,
        ..config(&format!("http://127.0.0.1:{port}/v1"))
    };
    let started = Instant::now();
    let (r, _) = run(cfg, &Sampling::default(), None);
    match r {
        Err(GenerateError::Unreachable { url, reason }) => {
            assert_eq!(url, format!("http://127.0.0.1:{port}/v1/chat/completions"));
            assert!(reason.to_lowercase().contains("refused"), "{reason}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_silent_server_times_out_instead_of_hanging() {
    let server = serve(vec![
        Reply::ThenSilent(Vec::new(), Duration::from_secs(5)),
        ok_stream(),
    ]);
    let cfg = OpenAiConfig {
        read_timeout: Duration::from_millis(300),
        ..config(&server.url)
    };
    let started = Instant::now();
    let (r, _) = run(cfg, &Sampling::default(), None);
    let elapsed = started.elapsed();
    match r {
        Err(GenerateError::Unreachable { reason, .. }) => {
            assert_eq!(reason, "no data for 0.3 s");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    // Busy, not down: the request is not sent again.
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn silence_mid_stream_keeps_the_emitted_piece_and_does_not_retry() {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
                Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    let first = delta("partial");
    let bytes = format!("{head}{:x}\r\n{first}\r\n", first.len()).into_bytes();
    let server = serve(vec![
        Reply::ThenSilent(bytes, Duration::from_secs(5)),
        ok_stream(),
    ]);
    let cfg = OpenAiConfig {
        read_timeout: Duration::from_millis(300),
        ..config(&server.url)
    };
    let started = Instant::now();
    let (r, pieces) = run(cfg, &Sampling::default(), None);
    match r {
        Err(GenerateError::Unreachable { reason, .. }) => {
            assert!(reason.contains("no data for 0.3 s"), "{reason}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    assert_eq!(pieces, ["partial"]);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn connection_lost_mid_stream_is_not_retried_once_text_was_emitted() {
    let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
                Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    let first = delta("partial");
    // The last chunk (`0\r\n\r\n`) never comes: the server went away.
    let bytes = format!("{head}{:x}\r\n{first}\r\n", first.len()).into_bytes();
    let server = serve(vec![Reply::Parts(vec![bytes]), ok_stream()]);
    let (r, pieces) = run(config(&server.url), &Sampling::default(), None);
    match r {
        Err(GenerateError::Protocol { reason, .. }) => {
            assert!(reason.contains("connection closed"), "{reason}");
        }
        other => panic!("expected Protocol, got {other:?}"),
    }
    assert_eq!(pieces, ["partial"]);
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn malformed_event_is_a_protocol_error() {
    let server = serve(vec![sse(&[
        delta("fine"),
        "data: {not json\n\n".to_string(),
        done(),
    ])]);
    let (r, _) = run(config(&server.url), &Sampling::default(), None);
    match r {
        Err(GenerateError::Protocol { reason, .. }) => {
            assert!(reason.contains("{not json"), "{reason}");
        }
        other => panic!("expected Protocol, got {other:?}"),
    }
}

#[test]
fn event_without_choices_is_a_protocol_error() {
    let server = serve(vec![sse(&[
        data(json!({"id": "x", "object": "chunk"})),
        done(),
    ])]);
    let (r, _) = run(config(&server.url), &Sampling::default(), None);
    match r {
        Err(GenerateError::Protocol { reason, .. }) => {
            assert!(reason.contains("choices"), "{reason}");
        }
        other => panic!("expected Protocol, got {other:?}"),
    }
}

#[test]
fn stream_ending_without_done_or_finish_reason_is_a_protocol_error() {
    let server = serve(vec![sse(&[delta("cut"), delta(" short")])]);
    let (r, pieces) = run(config(&server.url), &Sampling::default(), None);
    match r {
        Err(GenerateError::Protocol { reason, .. }) => {
            assert!(reason.contains("[DONE]"), "{reason}");
        }
        other => panic!("expected Protocol, got {other:?}"),
    }
    assert_eq!(pieces, ["cut", " short"]);
}

#[test]
fn stream_ending_after_a_finish_reason_without_done_is_accepted() {
    let server = serve(vec![sse(&[delta("cut"), finish("length")])]);
    let (r, _) = run(config(&server.url), &Sampling::default(), None);
    let g = r.unwrap();
    assert_eq!((g.text.as_str(), g.finish), ("cut", Finish::Length));
}

#[test]
fn error_object_in_the_stream_is_an_inference_error() {
    let server = serve(vec![sse(&[
        data(json!({"error": {"message": "CUDA out of memory", "code": 500}})),
        done(),
    ])]);
    let (r, _) = run(config(&server.url), &Sampling::default(), None);
    match r {
        Err(GenerateError::Inference(m)) => assert!(m.contains("CUDA out of memory"), "{m}"),
        other => panic!("expected Inference, got {other:?}"),
    }
}

#[test]
fn sink_stop_cancels_after_the_first_piece() {
    let server = serve(vec![sse(&[
        delta("one"),
        delta(" two"),
        delta(" three"),
        finish("stop"),
        done(),
    ])]);
    let (r, pieces) = run(config(&server.url), &Sampling::default(), Some(1));
    let g = r.unwrap();
    assert_eq!(pieces, ["one"]);
    assert_eq!(g.text, "one");
    assert_eq!(g.finish, Finish::Cancelled);
    assert_eq!(g.completion_tokens, 1, "estimated from the text");
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn stop_sequence_split_across_chunks_is_not_emitted() {
    let server = serve(vec![sse(&[
        delta("Hello"),
        delta(" world<E"),
        delta("ND> and more"),
        delta(" text"),
        finish("stop"),
        done(),
    ])]);
    let sampling = Sampling {
        stop: vec!["<END>".into()],
        ..Sampling::default()
    };
    let (r, pieces) = run(config(&server.url), &sampling, None);
    let g = r.unwrap();
    assert_eq!(pieces, ["Hello", " world"]);
    assert_eq!(g.text, "Hello world");
    assert_eq!(g.finish, Finish::Stop);
    assert_eq!(server.requests()[0].json()["stop"], json!(["<END>"]));
}

#[test]
fn held_back_text_is_released_at_the_end() {
    let server = serve(vec![sse(&[delta("a <"), finish("stop"), done()])]);
    let sampling = Sampling {
        stop: vec!["<END>".into()],
        ..Sampling::default()
    };
    let (r, pieces) = run(config(&server.url), &sampling, None);
    assert_eq!(r.unwrap().text, "a <");
    assert_eq!(pieces.concat(), "a <");
}

#[test]
fn api_key_is_sent_as_a_bearer_token() {
    let server = serve(vec![ok_stream()]);
    let cfg = OpenAiConfig {
        api_key: Some("sk-test-123".into()),
        ..config(&format!("{}/v1/", server.url))
    };
    let (r, _) = run(cfg, &Sampling::default(), None);
    r.unwrap();
    let reqs = server.requests();
    assert_eq!(
        reqs[0].header("authorization").as_deref(),
        Some("Bearer sk-test-123")
    );
    assert_eq!(reqs[0].request_line(), "POST /v1/chat/completions HTTP/1.1");
}

#[test]
fn non_streaming_json_reply_is_accepted() {
    let body = json!({
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Plain answer"},
                     "finish_reason": "length"}],
        "usage": {"prompt_tokens": 30, "completion_tokens": 2, "total_tokens": 32}
    });
    let server = serve(vec![http("200 OK", "application/json", &body.to_string())]);
    let (r, pieces) = run(config(&server.url), &Sampling::default(), None);
    let g = r.unwrap();
    assert_eq!(pieces, ["Plain answer"]);
    assert_eq!(g.text, "Plain answer");
    assert_eq!(g.finish, Finish::Length);
    assert_eq!((g.prompt_tokens, g.completion_tokens), (30, 2));
}

#[test]
fn list_models_returns_the_ids() {
    let body = json!({"object": "list", "data": [
        {"id": "qwen2.5-1.5b", "object": "model"}, {"id": "llama-3.2-1b", "object": "model"}]});
    let server = serve(vec![http("200 OK", "application/json", &body.to_string())]);
    let g = OpenAiGenerator::new(config(&server.url)).unwrap();
    assert_eq!(g.list_models().unwrap(), ["qwen2.5-1.5b", "llama-3.2-1b"]);
    assert_eq!(
        server.requests()[0].request_line(),
        "GET /v1/models HTTP/1.1"
    );
}

#[test]
fn settings_are_reported_and_checked() {
    let g = OpenAiGenerator::new(OpenAiConfig {
        context_window: 4096,
        ..config("http://127.0.0.1:9")
    })
    .unwrap();
    assert_eq!(g.model_name(), "test-model");
    assert_eq!(g.context_window(), 4096);
    assert_eq!(g.endpoint(), "http://127.0.0.1:9/v1/chat/completions");
    assert_eq!(g.count_tokens("twelve bytes").unwrap(), 4);
    let e = OpenAiGenerator::new(config("localhost:8080")).unwrap_err();
    assert!(
        matches!(
            e,
            GenerateError::Invalid {
                field: "llm_url",
                ..
            }
        ),
        "{e}"
    );
    let bad = Sampling {
        max_tokens: 0,
        ..Sampling::default()
    };
    let e = g.generate(&messages(), &bad, &mut |_: &str| Flow::Continue);
    assert!(matches!(
        e,
        Err(GenerateError::Invalid {
            field: "max_tokens",
            ..
        })
    ));
}

#[test]
fn the_judge_reads_top_logprobs_and_asks_for_one_token() {
    let body = json!({
        "choices": [{
            "message": {"role": "assistant", "content": "Yes"},
            "logprobs": {"content": [{
                "token": "Yes", "logprob": -0.2,
                "top_logprobs": [
                    {"token": "Yes", "logprob": -0.2},
                    {"token": " yes", "logprob": -2.5},
                    {"token": "No", "logprob": -1.9},
                    {"token": "Maybe", "logprob": -4.0}
                ]
            }]}
        }]
    })
    .to_string();
    let s = serve(vec![http("200 OK", "application/json", &body)]);
    let g = OpenAiGenerator::new(config(&s.url)).unwrap();
    let lp = g.judge(&messages(), &["Yes", "No", "Perhaps"]).unwrap();
    // "Yes" and " yes" are one option; an option not listed gets the
    // smallest listed log-probability.
    let yes = ((-0.2f32).exp() + (-2.5f32).exp()).ln();
    assert!((lp[0] - yes).abs() < 1e-5, "{lp:?}");
    assert!((lp[1] + 1.9).abs() < 1e-6, "{lp:?}");
    assert!((lp[2] + 4.0).abs() < 1e-6, "{lp:?}");
    let req = &s.requests()[0];
    let v = req.json();
    assert_eq!(v["max_tokens"], 1);
    assert_eq!(v["logprobs"], true);
    assert_eq!(v["stream"], false);
    assert!(v["top_logprobs"].as_u64().unwrap() >= 5);
}

#[test]
fn a_server_without_logprobs_cannot_judge_and_says_what_to_change() {
    let body = json!({
        "choices": [{"message": {"role": "assistant", "content": "Yes"}, "finish_reason": "length"}]
    })
    .to_string();
    let s = serve(vec![http("200 OK", "application/json", &body)]);
    let g = OpenAiGenerator::new(config(&s.url)).unwrap();
    let e = g.judge(&messages(), &["Yes", "No"]).unwrap_err();
    assert!(matches!(e, GenerateError::Unsupported(_)), "{e}");
    let m = e.to_string();
    assert!(
        m.contains("no logprobs") && m.contains("critic.kind"),
        "{m}"
    );
}
