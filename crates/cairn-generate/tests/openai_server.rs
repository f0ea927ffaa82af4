//! The OpenAI-compatible client against a real OpenAI-compatible server:
//! llama.cpp's own `llama-server` (built by scripts/build-llama-tools.sh),
//! serving the real SmolLM2 GGUF, started by the test on a free port.

use cairn_core::Hit;
use cairn_generate::openai::{OpenAiConfig, OpenAiGenerator};
use cairn_generate::{citations, prompt, ChatMessage, Finish, Flow, Generator, Sampling};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server() -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::env::temp_dir().join(format!("cairn-llama-server-{port}.log"));
    let child = Command::new(cairn_testkit::llama_server())
        .arg("-m")
        .arg(cairn_testkit::smollm2_gguf())
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["-c", "2048", "-t", "2", "-np", "1"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start llama-server");
    let url = format!("http://127.0.0.1:{port}");
    let mut server = Server { child, url };
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(st) = server.child.try_wait().unwrap() {
            panic!(
                "llama-server exited ({st}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        if health(&server.url) {
            return server;
        }
        assert!(
            Instant::now() < deadline,
            "llama-server did not become healthy"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn health(url: &str) -> bool {
    use std::io::{Read, Write};
    let addr = url.trim_start_matches("http://");
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let req = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200")
}

fn client(url: &str) -> OpenAiGenerator {
    OpenAiGenerator::new(OpenAiConfig {
        base_url: url.to_string(),
        model: "smollm2".into(),
        context_window: 2048,
        read_timeout: Duration::from_secs(60),
        ..OpenAiConfig::default()
    })
    .unwrap()
}

#[test]
fn streams_a_grounded_answer_from_llama_server() {
    let server = start_server();
    let g = client(&server.url);
    assert!(!g.list_models().unwrap().is_empty());

    let hits = vec![Hit {
        rank: 1,
        score: 0.9,
        doc: "harbor/bridge.md".into(),
        chunk: 1,
        heading: "History".into(),
        start: 0,
        end: 120,
        text: "The Kestrel Bridge over the Varne estuary opened to traffic in 1987. \
               It is 412 metres long and carries the coastal railway."
            .into(),
    }];
    let p = prompt::build(
        &g,
        &[],
        "In what year did the Kestrel Bridge open?",
        &hits,
        128,
    )
    .unwrap();
    let sampling = Sampling {
        temperature: 0.0,
        max_tokens: 96,
        ..Sampling::default()
    };
    let mut pieces = Vec::new();
    let mut sink = |s: &str| {
        pieces.push(s.to_string());
        Flow::Continue
    };
    let out = g.generate(&p.messages, &sampling, &mut sink).unwrap();
    assert!(
        pieces.len() > 1,
        "the answer arrived in one piece: not streamed"
    );
    assert_eq!(pieces.concat(), out.text);
    assert!(out.text.contains("1987"), "{:?}", out.text);
    assert!(citations::resolve(&out.text, &p.sources)
        .citations
        .iter()
        .any(|c| c.n == 1));
    assert_eq!(out.finish, Finish::Stop);
    assert!(
        out.prompt_tokens > 40,
        "usage from the server: {}",
        out.prompt_tokens
    );
    assert!(out.completion_tokens > 0);
    assert!(out.first_token_ms.unwrap() <= out.total_ms);

    // max_tokens is honoured by the server.
    let short = Sampling {
        max_tokens: 5,
        ..sampling.clone()
    };
    let mut sink = |_: &str| Flow::Continue;
    let out = g
        .generate(
            &[ChatMessage::user("Write a long story about a lighthouse.")],
            &short,
            &mut sink,
        )
        .unwrap();
    assert_eq!(out.finish, Finish::Length);
    assert_eq!(out.completion_tokens, 5);

    // Cancelling mid-stream returns what came so far.
    let mut n = 0;
    let mut sink = |_: &str| {
        n += 1;
        if n >= 2 {
            Flow::Stop
        } else {
            Flow::Continue
        }
    };
    let long = Sampling {
        max_tokens: 400,
        ..sampling
    };
    let out = g
        .generate(
            &[ChatMessage::user("Write a long story about a lighthouse.")],
            &long,
            &mut sink,
        )
        .unwrap();
    assert_eq!(out.finish, Finish::Cancelled);
    assert_eq!(n, 2);
}
