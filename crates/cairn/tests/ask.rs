//! `cairn ask` and `cairn chat` as users run them, in separate processes,
//! on the real embedder and the real SmolLM2 GGUF: the JSON contract,
//! "not covered" answers, --quiet, a conversation over stdin, Ctrl-C, and
//! clear errors for a bad model file or a server that is down.

use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const BRIDGE: &str = "# Kestrel Bridge\n\n## History\n\n\
The Kestrel Bridge over the Varne estuary opened to traffic in 1987. \
It is 412 metres long and carries the coastal railway between Harrow Point and Selby.\n\n\
## Maintenance\n\nThe bridge is repainted every nine years by the Varne Harbour Trust.\n";

/// One collection shared by the tests of this binary: a note with made-up
/// facts (so the model cannot know them) beside a real Python docs page.
fn collection() -> &'static (tempfile::TempDir, PathBuf) {
    static C: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    C.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let docs = tmp.path().join("docs");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::write(docs.join("bridge.md"), BRIDGE).unwrap();
        cairn_testkit::copy_pages(&["library/venv.html"], &docs);
        let data = tmp.path().join("data");
        let mut c = cairn(&data);
        c.arg("ingest").arg(&docs);
        ok(c);
        (tmp, data)
    })
}

mod common;
use common::{json, ok};

fn cairn(data: &Path) -> Command {
    let mut c = common::cairn(data);
    c.env("CAIRN_LLM_THREADS", "2")
        .current_dir(data.parent().unwrap());
    c
}

#[test]
fn ask_json_contract_answers_and_cites() {
    let (_, data) = collection();
    let mut c = cairn(data);
    c.args([
        "ask",
        "In what year did the Kestrel Bridge open?",
        "--json",
        "--seed",
        "1",
    ]);
    let v = json(&ok(c).stdout);
    let answer = v["answer"].as_str().unwrap();
    assert!(answer.contains("1987"), "{v:#}");
    assert_eq!(v["answered"], true);
    let cites = v["citations"].as_array().unwrap();
    assert!(!cites.is_empty(), "no citations: {v:#}");
    // A citation maps its marker back to the passage: document, heading,
    // span and text of a retrieved chunk. (Which of the two bridge passages
    // a 135M model names is its own judgement; that it cites, and that the
    // mapping is exact, is what is tested here.)
    let c0 = &cites[0];
    let n = c0["n"].as_u64().unwrap();
    assert!(answer.contains(&format!("[{n}]")), "{answer}");
    assert!(c0["doc"].as_str().unwrap().ends_with("bridge.md"), "{c0}");
    assert!(c0["heading"].as_str().unwrap().contains("Kestrel Bridge"));
    let retrieved = v["retrieved"].as_array().unwrap();
    assert!(!retrieved.is_empty());
    let source = retrieved
        .iter()
        .find(|h| h["start"] == c0["start"] && h["doc"] == c0["doc"])
        .unwrap_or_else(|| panic!("{c0} is no retrieved passage"));
    assert_eq!(source["text"], c0["text"]);
    assert_eq!(source["end"], c0["end"]);
    for key in [
        "rank", "score", "doc", "chunk", "heading", "start", "end", "text",
    ] {
        assert!(retrieved[0].get(key).is_some(), "hit lacks {key}");
    }
    let t = &v["timings_ms"];
    for key in ["embed", "search", "first_token", "total"] {
        assert!(t[key].as_f64().unwrap() >= 0.0, "timings_ms.{key}: {t}");
    }
    assert!(t["first_token"].as_f64() <= t["total"].as_f64());
    assert!(v["prompt_tokens"].as_u64().unwrap() > 50);
    assert!(v["completion_tokens"].as_u64().unwrap() > 0);
    assert!(!v["model"].as_str().unwrap().is_empty());
}

#[test]
fn a_question_the_documents_do_not_cover_is_not_answered() {
    let (_, data) = collection();
    let mut c = cairn(data);
    c.args([
        "ask",
        "What is the melting point of tungsten in kelvin?",
        "--json",
    ]);
    let v = json(&ok(c).stdout);
    assert_eq!(v["answered"], false, "{v:#}");
    assert!(v["answer"].as_str().unwrap().contains("do not cover"));
    assert_eq!(v["completion_tokens"], 0);
    assert!(v["citations"].as_array().unwrap().is_empty());
    assert!(
        !v["retrieved"].as_array().unwrap().is_empty(),
        "closest hits are shown"
    );

    // The human form names the closest passages.
    let mut c = cairn(data);
    c.args(["ask", "What is the melting point of tungsten in kelvin?"]);
    let text = String::from_utf8(ok(c).stdout).unwrap();
    assert!(
        text.contains("do not cover") && text.contains("Closest passages"),
        "{text}"
    );
}

#[test]
fn quiet_prints_only_the_answer_and_text_mode_lists_sources() {
    let (_, data) = collection();
    let mut c = cairn(data);
    c.args(["ask", "How long is the Kestrel Bridge?", "--quiet"]);
    let quiet = String::from_utf8(ok(c).stdout).unwrap();
    assert!(quiet.contains("412"), "{quiet}");
    assert!(!quiet.contains("Sources:"), "{quiet}");

    let mut c = cairn(data);
    c.args(["ask", "How long is the Kestrel Bridge?"]);
    let full = String::from_utf8(ok(c).stdout).unwrap();
    assert!(
        full.starts_with(quiet.trim_end()),
        "streamed answer first:\n{full}"
    );
    assert!(
        full.contains("Sources:") && full.contains("bridge.md"),
        "{full}"
    );
}

#[test]
fn chat_keeps_the_conversation_and_answers_every_turn() {
    let (_, data) = collection();
    let mut c = cairn(data);
    c.args(["chat", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            b"In what year did the Kestrel Bridge open?\n\nWho repaints the Kestrel Bridge?\n/exit\nnever asked\n",
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let turns: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| json(l.as_bytes()))
        .collect();
    assert_eq!(turns.len(), 2, "{turns:#?}");
    assert!(
        turns[0]["answer"].as_str().unwrap().contains("1987"),
        "{:#}",
        turns[0]
    );
    assert!(
        turns[1]["answer"]
            .as_str()
            .unwrap()
            .contains("Varne Harbour Trust"),
        "{:#}",
        turns[1]
    );
    // The second turn's prompt carries the first turn.
    assert!(turns[1]["prompt_tokens"].as_u64() > turns[0]["prompt_tokens"].as_u64());
}

#[test]
fn ctrl_c_stops_generation_cleanly() {
    let (_, data) = collection();
    let mut c = cairn(data);
    c.args([
        "ask",
        "Describe the Kestrel Bridge, its history and its maintenance in great detail.",
        "--max-tokens",
        "2000",
        "--temperature",
        "0.8",
        "--stop",
        "NEVER-EMITTED-STOP",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    // Wait for the first streamed bytes, then interrupt.
    let mut first = [0u8; 1];
    stdout.read_exact(&mut first).unwrap();
    let t = Instant::now();
    unsafe_sigint(child.id());
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?} to stop",
        t.elapsed()
    );
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(130), "stderr: {err}");
    assert!(err.contains("(stopped)"), "{err}");
}

fn unsafe_sigint(pid: u32) {
    let st = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn a_bad_model_file_or_a_dead_server_is_a_clear_error() {
    let (tmp, data) = collection();
    let fake = tmp.path().join("notes.gguf");
    std::fs::write(&fake, "not a model at all").unwrap();
    let mut c = cairn(data);
    c.args([
        "ask",
        "In what year did the Kestrel Bridge open?",
        "--model",
    ])
    .arg(&fake);
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("notes.gguf") && err.contains("not a GGUF"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut c = cairn(data);
    c.env("CAIRN_LLM_API_KEY", "sk-test")
        .args([
            "ask",
            "In what year did the Kestrel Bridge open?",
            "--llm-url",
        ])
        .arg(format!("http://127.0.0.1:{port}"));
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let mut c = cairn(data);
    c.args(["ask", "anything", "--llm-url", "ftp://example"]);
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("generate.url"));
}

#[test]
fn ask_through_an_openai_compatible_server() {
    let (_, data) = collection();
    let server = cairn_testkit::LlamaServer::start(&cairn_testkit::smollm2_gguf());
    let mut c = cairn(data);
    c.env("CAIRN_LLM_API_KEY", "sk-local")
        .args([
            "ask",
            "In what year did the Kestrel Bridge open?",
            "--json",
            "--llm-url",
        ])
        .arg(&server.url)
        .args(["--llm-model", "smollm2"]);
    let v = json(&ok(c).stdout);
    assert!(v["answer"].as_str().unwrap().contains("1987"), "{v:#}");
    assert_eq!(v["model"], "smollm2");
    assert!(v["completion_tokens"].as_u64().unwrap() > 0);
    assert!(
        v["prompt_tokens"].as_u64().unwrap() > 50,
        "usage comes from the server"
    );
}

#[test]
fn every_sentence_carries_its_support_and_citations_that_exist() {
    let (_, data) = collection();
    let mut c = cairn(data);
    c.args([
        "ask",
        "How long is the Kestrel Bridge, and which railway does it carry?",
        "--json",
        "--seed",
        "1",
    ]);
    let v = json(&ok(c).stdout);
    assert_eq!(v["answered"], true, "{v:#}");
    assert_eq!(v["critic"], "embedding", "{v:#}");
    let strategy = v["strategy"].as_str().unwrap();
    assert!(
        ["generated", "regenerated", "fallback-extractive"].contains(&strategy),
        "{strategy}"
    );
    let sentences = v["sentences"].as_array().unwrap();
    assert!(!sentences.is_empty(), "{v:#}");
    let cited: Vec<u64> = v["citations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["n"].as_u64().unwrap())
        .collect();
    let answer = v["answer"].as_str().unwrap();
    for s in sentences {
        let support = s["support"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&support), "{s}");
        let supported = s["supported"].as_bool().unwrap();
        let claim = s["claim"].as_bool().unwrap();
        let ns: Vec<u64> = s["citations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_u64().unwrap())
            .collect();
        // A supported claim names a source; an unsupported one names none.
        if claim {
            assert_eq!(supported, !ns.is_empty(), "{s}");
        }
        for n in ns {
            assert!(
                cited.contains(&n),
                "sentence cites [{n}], not a citation: {v:#}"
            );
        }
        // The sentence is in the answer as shown.
        assert!(
            answer.contains(s["text"].as_str().unwrap()),
            "{s}\n{answer}"
        );
    }
    // The bridge facts are supported by the bridge note.
    assert!(
        sentences
            .iter()
            .any(|s| s["supported"] == true && s["claim"] == true),
        "{v:#}"
    );
    assert!(v["timings_ms"]["critic"].as_f64().unwrap() >= 0.0);
}

#[test]
fn extractive_answers_are_verbatim_spans_without_a_generator() {
    let (_, data) = collection();
    let mut c = cairn(data);
    // A model file that does not exist: an extractive answer never loads one.
    c.args([
        "ask",
        "How long is the Kestrel Bridge?",
        "--extractive",
        "--json",
        "--model",
        "/nonexistent/model.gguf",
    ]);
    let v = json(&ok(c).stdout);
    assert_eq!(v["answered"], true, "{v:#}");
    assert_eq!(v["strategy"], "extractive");
    let answer = v["answer"].as_str().unwrap();
    assert!(answer.contains("412 metres"), "{answer}");
    let extracts = v["extracts"].as_array().unwrap();
    assert!(!extracts.is_empty() && extracts.len() <= 5, "{v:#}");
    let retrieved = v["retrieved"].as_array().unwrap();
    for e in extracts {
        // The span is exact: the chunk it came from holds it at those
        // character offsets of the document (chunks are exact slices of the
        // catalog's document text).
        let hit = retrieved
            .iter()
            .find(|h| h["chunk"] == e["chunk"])
            .unwrap_or_else(|| panic!("{e} is from no retrieved chunk"));
        let (hs, es, ee) = (
            hit["start"].as_u64().unwrap(),
            e["start"].as_u64().unwrap(),
            e["end"].as_u64().unwrap(),
        );
        assert!(hs <= es && ee <= hit["end"].as_u64().unwrap(), "{e} {hit}");
        let slice: String = hit["text"]
            .as_str()
            .unwrap()
            .chars()
            .skip((es - hs) as usize)
            .take((ee - es) as usize)
            .collect();
        assert_eq!(slice, e["text"].as_str().unwrap());
        // Each sentence is in the answer with its marker, and the marker's
        // citation is its document.
        let n = e["n"].as_u64().unwrap();
        let cite = v["citations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["n"].as_u64() == Some(n))
            .unwrap_or_else(|| panic!("no citation [{n}]: {v:#}"));
        assert_eq!(cite["doc"], e["doc"]);
        assert!(answer.contains(&format!("[{n}]")), "{answer}");
    }
    assert_eq!(v["completion_tokens"], 0);

    // The human form prints the sentences and their sources.
    let mut c = cairn(data);
    c.args(["ask", "How long is the Kestrel Bridge?", "--extractive"]);
    let text = String::from_utf8(ok(c).stdout).unwrap();
    assert!(
        text.contains("412 metres") && text.contains("Sources:"),
        "{text}"
    );
}

#[test]
fn corrective_retrieval_refuses_what_the_documents_do_not_cover() {
    let (_, data) = collection();
    let ask = |q: &str| {
        let mut c = cairn(data);
        c.args(["ask", q, "--crag", "--extractive", "--json"]);
        json(&ok(c).stdout)
    };
    let v = ask("What is the melting point of tungsten in kelvin?");
    assert_eq!(v["answered"], false, "{v:#}");
    assert_eq!(v["grade"], "incorrect", "{v:#}");
    assert!(v["answer"].as_str().unwrap().contains("do not cover"));
    let p = v["grade_probability"].as_f64().unwrap();
    let v = ask("In what year did the Kestrel Bridge open to traffic?");
    assert_eq!(v["answered"], true, "{v:#}");
    assert_ne!(v["grade"], "incorrect", "{v:#}");
    assert!(v["grade_probability"].as_f64().unwrap() > p, "{v:#}");
    assert!(v["answer"].as_str().unwrap().contains("1987"), "{v:#}");
}

#[test]
fn empty_and_overlong_questions_are_clear_errors() {
    let (_, data) = collection();
    let mut c = cairn(data);
    c.args(["ask", "   ", "--extractive"]);
    let out = c.output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("question") && err.contains("empty"), "{err}");
    let long = "why is the sky blue ".repeat(300);
    let mut c = cairn(data);
    c.args(["ask", long.as_str(), "--extractive"]);
    let out = c.output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("5999 characters") && err.contains("4000"),
        "{err}"
    );
}

/// The tiny cross-encoder of `cairn_testkit::cross_encoder`, written once.
fn tiny_cross_encoder() -> &'static PathBuf {
    static M: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &M.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, _) =
            cairn_testkit::cross_encoder::write_model(tmp.path(), "tiny-reranker", Some(1), true);
        (tmp, dir)
    })
    .1
}

#[test]
fn rerank_orders_the_fused_candidates_by_the_cross_encoder() {
    let (_, data) = collection();
    let query = "How long is the Kestrel Bridge and who repaints it?";
    let search = |extra: &[&str]| {
        let mut c = cairn(data);
        c.args(["search", query, "--json"]).args(extra);
        json(&ok(c).stdout)["hits"].as_array().unwrap().clone()
    };
    let fused = search(&["-k", "20"]);
    let model = tiny_cross_encoder().to_str().unwrap();
    let reranked = search(&[
        "-k",
        "4",
        "--rerank",
        "--critic",
        "cross-encoder",
        "--critic-model",
        model,
    ]);
    assert_eq!(reranked.len(), 4.min(fused.len()));
    // The model's own scores, computed here: the order must be theirs, and
    // each hit's score the sigmoid of its logit (no calibration set).
    let ce = cairn_models::CrossEncoder::load(
        tiny_cross_encoder(),
        &cairn_models::OnnxOptions {
            dylib: Some(cairn_testkit::onnxruntime_lib()),
            ..Default::default()
        },
    )
    .unwrap();
    let texts: Vec<&str> = fused.iter().map(|h| h["text"].as_str().unwrap()).collect();
    let pairs: Vec<(&str, &str)> = texts.iter().map(|t| (query, *t)).collect();
    let raw = ce.scores(&pairs).unwrap();
    let mut want: Vec<usize> = (0..fused.len()).collect();
    want.sort_by(|&a, &b| raw[b].total_cmp(&raw[a]).then(a.cmp(&b)));
    for (h, &i) in reranked.iter().zip(&want) {
        assert_eq!(h["chunk"], fused[i]["chunk"], "rank {}: {h}", h["rank"]);
        let p = 1.0 / (1.0 + (-raw[i]).exp());
        assert!(
            (h["score"].as_f64().unwrap() as f32 - p).abs() < 1e-4,
            "{h}"
        );
    }
    // A random model's order is not the fused one (else this proves nothing).
    let order: Vec<&Value> = reranked.iter().map(|h| &h["chunk"]).collect();
    let fused_order: Vec<&Value> = fused.iter().take(4).map(|h| &h["chunk"]).collect();
    assert_ne!(order, fused_order, "reranking changed nothing");
}

/// The mean over `q`'s token vectors of the best dot product with one of
/// `p`'s (unit rows): MaxSim, computed here from the model's own vectors.
fn maxsim(q: &[Vec<f32>], p: &[Vec<f32>]) -> f32 {
    q.iter()
        .map(|a| {
            p.iter()
                .map(|b| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>())
                .fold(f32::NEG_INFINITY, f32::max)
        })
        .sum::<f32>()
        / q.len() as f32
}

#[test]
fn rerank_orders_the_fused_candidates_by_late_interaction() {
    let (_, data) = collection();
    let query = "Which railway crosses the estuary, and how long is it?";
    let search = |extra: &[&str]| {
        let mut c = cairn(data);
        c.args(["search", query, "--json"]).args(extra);
        json(&ok(c).stdout)["hits"].as_array().unwrap().clone()
    };
    // The fused top 20 (the rerank depth), then the same reordered.
    let fused = search(&["-k", "20"]);
    let reranked = search(&["-k", "20", "--rerank", "--critic", "late-interaction"]);
    assert_eq!(reranked.len(), fused.len());
    // MaxSim of the question's token vectors (64 tokens) against each
    // passage as it was embedded (heading path, blank line, text; 256
    // tokens), from the real model here.
    let dir = cairn_testkit::minilm_dir();
    let m = cairn_models::OnnxEmbedder::load(
        &dir,
        cairn_models::Device::Cpu,
        &cairn_models::OnnxOptions {
            dylib: Some(cairn_testkit::onnxruntime_lib()),
            ..Default::default()
        },
    )
    .unwrap();
    let rows = |v: &cairn_core::TokenVectors| -> Vec<Vec<f32>> {
        (0..v.rows()).map(|i| v.row(i).to_vec()).collect()
    };
    let q = rows(&m.token_vectors(&[query.to_string()], 64).unwrap()[0]);
    let passages: Vec<String> = fused
        .iter()
        .map(|h| {
            let (heading, text) = (h["heading"].as_str().unwrap(), h["text"].as_str().unwrap());
            if heading.is_empty() {
                text.to_string()
            } else {
                format!("{heading}\n\n{text}")
            }
        })
        .collect();
    let raw: Vec<f32> = m
        .token_vectors(&passages, 256)
        .unwrap()
        .iter()
        .map(|p| maxsim(&q, &rows(p)))
        .collect();
    let mut want: Vec<usize> = (0..fused.len()).collect();
    want.sort_by(|&a, &b| raw[b].total_cmp(&raw[a]).then(a.cmp(&b)));
    for (h, &i) in reranked.iter().zip(&want) {
        assert_eq!(h["chunk"], fused[i]["chunk"], "rank {}: {h}", h["rank"]);
    }
    // Scores are probabilities, falling with the rank.
    let scores: Vec<f64> = reranked
        .iter()
        .map(|h| h["score"].as_f64().unwrap())
        .collect();
    assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)), "{scores:?}");
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    // The rerank did something: the order is not the fused one.
    let order: Vec<&Value> = reranked.iter().map(|h| &h["chunk"]).collect();
    let fused_order: Vec<&Value> = fused.iter().map(|h| &h["chunk"]).collect();
    assert_ne!(order, fused_order, "reranking changed nothing");
}

#[test]
fn the_generator_judges_when_the_critic_is_llm() {
    let (_, data) = collection();
    let mut c = cairn(data);
    c.args([
        "ask",
        "In what year did the Kestrel Bridge open?",
        "--json",
        "--critic",
        "llm",
        "--max-tokens",
        "48",
    ]);
    let v = json(&ok(c).stdout);
    assert_eq!(v["critic"], "llm", "{v:#}");
    let sentences = v["sentences"].as_array().unwrap();
    assert!(!sentences.is_empty(), "{v:#}");
    for s in sentences {
        // (A sentence copied from a source word for word is supported
        // without asking the judge: 1.0.)
        let p = s["support"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p), "{s}");
    }
    assert!(v["timings_ms"]["critic"].as_f64().unwrap() > 0.0);
}

#[test]
fn a_critic_that_cannot_be_loaded_is_a_clear_error() {
    let (_, data) = collection();
    let fails = |args: &[&str]| {
        let mut c = cairn(data);
        c.args(["search", "bridge", "--rerank"]).args(args);
        let out = c.output().unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let e = fails(&["--critic", "nli"]);
    assert!(
        e.contains("critic.kind") && e.contains("cross-encoder"),
        "{e}"
    );
    let e = fails(&["--critic", "cross-encoder"]);
    assert!(e.contains("critic.model"), "{e}");
    let minilm = cairn_testkit::minilm_dir();
    let e = fails(&[
        "--critic",
        "cross-encoder",
        "--critic-model",
        minilm.to_str().unwrap(),
    ]);
    assert!(
        e.contains("config.json") && e.contains("sentence-embedding model"),
        "{e}"
    );
    let e = fails(&[
        "--critic",
        "cross-encoder",
        "--critic-model",
        "/nonexistent/reranker",
    ]);
    assert!(e.contains("/nonexistent/reranker"), "{e}");
}
