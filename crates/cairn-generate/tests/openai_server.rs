//! The OpenAI-compatible client against a real OpenAI-compatible server:
//! llama.cpp's own `llama-server` (built by scripts/build-llama-tools.sh),
//! serving the real SmolLM2 GGUF, started by the test on a free port.

use cairn_core::Hit;
use cairn_generate::openai::{OpenAiConfig, OpenAiGenerator};
use cairn_generate::{citations, prompt, ChatMessage, Finish, Flow, Generator, Sampling};
use std::time::Duration;

fn start_server() -> cairn_testkit::LlamaServer {
    cairn_testkit::LlamaServer::start(&cairn_testkit::smollm2_gguf())
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
        page: None,
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

#[test]
fn llama_server_judges_through_logprobs_like_the_embedded_engine() {
    use cairn_core::Judgement;
    use cairn_generate::judge::judge_messages;
    let server = start_server();
    let g = client(&server.url);
    let passage = "The Kestrel Bridge over the Varne estuary opened to traffic in 1987.";
    let m = judge_messages(Judgement::Support, "The bridge opened in 1987.", passage);
    let remote = g.judge(&m, &["Yes", "No"]).unwrap();
    assert!(
        remote.iter().all(|l| l.is_finite() && *l <= 0.0),
        "{remote:?}"
    );
    // The same model in process: the same distribution, up to the server's
    // own numerics.
    let local = cairn_generate::llama::LlamaGenerator::load(
        &cairn_testkit::smollm2_gguf(),
        &cairn_generate::llama::LlamaOptions {
            threads: Some(2),
            context: 2048,
            ..Default::default()
        },
    )
    .unwrap()
    .judge(&m, &["Yes", "No"])
    .unwrap();
    for (r, l) in remote.iter().zip(&local) {
        assert!((r - l).abs() < 0.3, "server {remote:?}, embedded {local:?}");
    }
}
