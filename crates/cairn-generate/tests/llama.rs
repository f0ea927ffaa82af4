//! The embedded engine on the real GGUF models (installed by
//! `cairn models fetch` and `cairn models fetch gemma-3-270m`).
#![cfg(feature = "llama")]

use cairn_core::Hit;
use cairn_generate::citations;
use cairn_generate::llama::{LlamaGenerator, LlamaOptions};
use cairn_generate::{prompt, ChatMessage, Finish, Flow, GenerateError, Generator, Sampling};
use std::sync::OnceLock;

fn opts() -> LlamaOptions {
    LlamaOptions {
        threads: Some(2),
        context: 2048,
        ..LlamaOptions::default()
    }
}

fn smollm() -> &'static LlamaGenerator {
    static G: OnceLock<LlamaGenerator> = OnceLock::new();
    G.get_or_init(|| LlamaGenerator::load(&cairn_testkit::smollm2_gguf(), &opts()).unwrap())
}

fn greedy(max_tokens: u32) -> Sampling {
    Sampling {
        temperature: 0.0,
        seed: 7,
        max_tokens,
        ..Sampling::default()
    }
}

fn passage(doc: &str, text: &str) -> Hit {
    Hit {
        rank: 1,
        score: 0.9,
        doc: doc.into(),
        chunk: 1,
        heading: "History".into(),
        start: 0,
        end: text.chars().count() as u64,
        text: text.into(),
        page: None,
    }
}

fn collect(
    g: &dyn Generator,
    msgs: &[ChatMessage],
    s: &Sampling,
) -> (String, cairn_generate::Generation) {
    let mut streamed = String::new();
    let mut sink = |p: &str| {
        streamed.push_str(p);
        Flow::Continue
    };
    let out = g.generate(msgs, s, &mut sink).unwrap();
    (streamed, out)
}

#[test]
fn smollm2_answers_a_stated_fact_and_cites_its_source() {
    let g = smollm();
    assert!(g.has_chat_template(), "SmolLM2 ships a ChatML template");
    let hits = vec![passage(
        "harbor/bridge.md",
        "The Kestrel Bridge over the Varne estuary opened to traffic in 1987. \
         It is 412 metres long and carries the coastal railway.",
    )];
    let p = prompt::build(
        g,
        &[],
        "In what year did the Kestrel Bridge open?",
        &hits,
        128,
    )
    .unwrap();
    let (streamed, out) = collect(g, &p.messages, &greedy(96));
    assert_eq!(
        streamed, out.text,
        "the sink saw exactly the generated text"
    );
    assert!(
        out.text.contains("1987"),
        "answer lacks the fact: {:?}",
        out.text
    );
    // It cites with a marker. Which number a 135M model writes is its own
    // (it has written [2] with one source); markers that point nowhere are
    // dropped by `citations::resolve`, and the engine's per-sentence check
    // replaces them with the source that supports the sentence (tested in
    // crates/cairn/tests/ask.rs).
    let r = citations::resolve(&out.text, &p.sources);
    assert!(
        !r.citations.is_empty() || !r.dropped.is_empty(),
        "answer has no citation marker: {:?}",
        out.text
    );
    assert!(r
        .citations
        .iter()
        .all(|c| c.n == 1 && c.doc == "harbor/bridge.md"));
    assert!(out.prompt_tokens > 40 && out.completion_tokens > 0);
    assert!(out.first_token_ms.unwrap() <= out.total_ms);
}

#[test]
fn greedy_decoding_is_deterministic_and_max_tokens_is_honoured() {
    let g = smollm();
    let msgs = [ChatMessage::user(
        "Write a long story about a lighthouse keeper.",
    )];
    let (a, out_a) = collect(g, &msgs, &greedy(12));
    let (b, out_b) = collect(g, &msgs, &greedy(12));
    assert_eq!(a, b);
    assert_eq!(out_a.finish, Finish::Length);
    assert_eq!(out_a.completion_tokens, 12);
    assert_eq!(out_b.completion_tokens, 12);
    // Sampling with a seed is reproducible too.
    let warm = Sampling {
        temperature: 0.9,
        seed: 1234,
        max_tokens: 12,
        ..Sampling::default()
    };
    assert_eq!(collect(g, &msgs, &warm).0, collect(g, &msgs, &warm).0);
}

#[test]
fn stop_sequences_end_generation_without_being_emitted() {
    let g = smollm();
    let msgs = [ChatMessage::user("Tell me about lighthouses.")];
    let (full, _) = collect(g, &msgs, &greedy(60));
    // Stop at the third word of what the model says unprompted.
    let word = full
        .split_whitespace()
        .filter(|w| w.len() >= 3)
        .nth(2)
        .unwrap_or_else(|| panic!("too short: {full:?}"))
        .to_string();
    let cut = full.find(&word).unwrap();
    let stop = Sampling {
        stop: vec![word],
        ..greedy(60)
    };
    let (text, out) = collect(g, &msgs, &stop);
    assert_eq!(out.finish, Finish::Stop);
    assert_eq!(text, full[..cut]);
}

#[test]
fn a_sink_that_says_stop_cancels_generation() {
    let g = smollm();
    let msgs = [ChatMessage::user("Tell me about the sea.")];
    let mut pieces = 0;
    let mut sink = |_: &str| {
        pieces += 1;
        Flow::Stop
    };
    let out = g.generate(&msgs, &greedy(100), &mut sink).unwrap();
    assert_eq!(out.finish, Finish::Cancelled);
    assert_eq!(pieces, 1);
    assert!(out.completion_tokens <= 3, "{}", out.completion_tokens);
}

#[test]
fn a_prompt_longer_than_the_context_is_a_clear_error() {
    let g = LlamaGenerator::load(
        &cairn_testkit::smollm2_gguf(),
        &LlamaOptions {
            context: 256,
            ..opts()
        },
    )
    .unwrap();
    assert_eq!(g.context_window(), 256);
    let long = "word ".repeat(600);
    let mut sink = |_: &str| Flow::Continue;
    let err = g
        .generate(&[ChatMessage::user(long.clone())], &greedy(8), &mut sink)
        .unwrap_err();
    assert!(
        matches!(err, GenerateError::PromptTooLong { window: 256, .. }),
        "{err}"
    );
    let err = prompt::build(&g, &[], &long, &[], 64).unwrap_err();
    assert!(err.to_string().contains("context window"), "{err}");
}

#[test]
fn gemma3_loads_and_produces_tokens() {
    let path = cairn_testkit::gemma3_gguf();
    let g = LlamaGenerator::load(&path, &opts()).unwrap();
    assert_eq!(g.info().architecture(), Some("gemma3"));
    assert!(g.count_tokens("The capital of France is").unwrap() >= 4);
    let msgs = [ChatMessage::user("The capital of France is")];
    let (text, out) = collect(&g, &msgs, &greedy(16));
    assert!(out.completion_tokens > 0, "no tokens");
    assert!(!text.trim().is_empty(), "empty text");
    // Same input, same greedy output.
    assert_eq!(collect(&g, &msgs, &greedy(16)).0, text);
}

#[test]
fn bad_model_files_are_clear_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();

    let text = dir.path().join("notes.gguf");
    std::fs::write(&text, "these are my notes, not a model").unwrap();
    let e = LlamaGenerator::load(&text, &opts())
        .unwrap_err()
        .to_string();
    assert!(e.contains("notes.gguf") && e.contains("not a GGUF"), "{e}");

    let missing = dir.path().join("missing.gguf");
    let e = LlamaGenerator::load(&missing, &opts())
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.gguf"), "{e}");

    let arch = dir.path().join("arch.gguf");
    cairn_generate::gguf::write_minimal(&arch, &[("general.architecture", "frobnicator")]).unwrap();
    let e = LlamaGenerator::load(&arch, &opts()).unwrap_err();
    assert!(
        matches!(e, GenerateError::UnsupportedArch { ref arch, .. } if arch == "frobnicator"),
        "{e}"
    );

    // The real model cut short: a header that is whole, tensor data that is not.
    let full = std::fs::read(cairn_testkit::smollm2_gguf()).unwrap();
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &full[..full.len() * 6 / 10]).unwrap();
    let e = LlamaGenerator::load(&cut, &opts()).unwrap_err().to_string();
    assert!(e.contains("cut.gguf") && e.contains("truncated"), "{e}");

    // Cut inside the header (the vocabulary arrays).
    std::fs::write(&cut, &full[..200_000]).unwrap();
    let e = LlamaGenerator::load(&cut, &opts()).unwrap_err().to_string();
    assert!(e.contains("cut.gguf") && e.contains("truncated"), "{e}");
}

/// The sentences of a strict answer: each must end with ` [n]` just before
/// or just after its stop, n in 1..=sources; returns them and what is left
/// after the last one.
fn marked_sentences(text: &str, sources: usize) -> (Vec<String>, String) {
    let mut out = Vec::new();
    let mut rest = text;
    // The next marker, and the sentence it closes.
    while let Some(open) = rest.find(" [") {
        let Some(close) = rest[open..].find(']').map(|c| open + c) else {
            break;
        };
        let n: usize = rest[open + 2..close]
            .parse()
            .expect("a number in the marker");
        assert!((1..=sources).contains(&n), "marker [{n}] in {text:?}");
        let before = rest[..open].trim_end();
        let after = &rest[close + 1..];
        let end = if after.starts_with(['.', '!', '?']) {
            close + 2
        } else {
            assert!(
                before.ends_with(['.', '!', '?']),
                "a marker not at a sentence end in {text:?}"
            );
            close + 1
        };
        // No sentence end before the marker's own.
        let body = before.trim_end_matches(['.', '!', '?']);
        assert!(
            !body.contains(". ") && !body.contains("! ") && !body.contains("? "),
            "a sentence without a marker in {text:?}"
        );
        out.push(rest[..end].trim().to_string());
        rest = rest[end..].trim_start();
    }
    (out, rest.to_string())
}

#[test]
fn the_citation_grammar_forces_a_marker_on_every_sentence() {
    let g = smollm();
    assert!(g.supports_grammar());
    let hits = vec![
        passage(
            "harbor/bridge.md",
            "The Kestrel Bridge over the Varne estuary opened to traffic in 1987. \
             It is 412 metres long and carries the coastal railway.",
        ),
        passage(
            "harbor/ferry.md",
            "Before the bridge, a ferry crossed the estuary every forty minutes. \
             The ferry service ended in 1988.",
        ),
    ];
    let sources = prompt::merge_overlapping(&hits);
    let p = prompt::build_from(
        g,
        &[],
        "Tell me about the Kestrel Bridge and the ferry.",
        &sources,
        160,
        prompt::Instructions::Strict,
    )
    .unwrap();
    let free = collect(g, &p.messages, &greedy(160)).1.text;
    let strict = Sampling {
        grammar: Some(prompt::citation_grammar(p.sources.len())),
        ..greedy(160)
    };
    let (streamed, out) = collect(g, &p.messages, &strict);
    assert_eq!(streamed, out.text);
    let text = out.text.trim();
    if text == prompt::STRICT_REFUSAL {
        panic!("the model refused a question its sources answer: {text:?} (free: {free:?})");
    }
    let (sentences, rest) = marked_sentences(text, p.sources.len());
    assert!(!sentences.is_empty(), "no marked sentence in {text:?}");
    // A finished answer is nothing but marked sentences; one cut by the
    // token limit may end mid-sentence.
    if out.finish == Finish::Stop {
        assert!(rest.is_empty(), "unmarked text {rest:?} in {text:?}");
    } else {
        assert_eq!(out.finish, Finish::Length);
        assert!(!rest.contains('['), "{text:?}");
    }
    eprintln!("free: {free:?}\nstrict: {text:?}");
}

#[test]
fn a_grammar_llama_cpp_cannot_parse_names_the_setting() {
    let g = smollm();
    let bad = Sampling {
        grammar: Some("root ::= (unclosed".into()),
        ..greedy(4)
    };
    let e = g
        .generate(&[ChatMessage::user("hi")], &bad, &mut |_: &str| {
            Flow::Continue
        })
        .unwrap_err();
    assert!(
        matches!(
            e,
            GenerateError::Invalid {
                field: "grammar",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn smollm2_as_judge_prefers_a_stated_claim_to_a_contradicted_one() {
    use cairn_core::{Calibration, Critic, Judgement};
    use cairn_generate::judge::{judge_messages, GeneratorCritic};
    let g = smollm();
    let passage = "The Kestrel Bridge over the Varne estuary opened to traffic in 1987. \
                   It is 412 metres long and carries the coastal railway.";
    // The log-probabilities are real ones: below 0, and Yes and No together
    // at most certain.
    let lp = g
        .judge(
            &judge_messages(Judgement::Support, "The bridge opened in 1987.", passage),
            &["Yes", "No"],
        )
        .unwrap();
    assert!(lp.iter().all(|&l| l < 0.0), "{lp:?}");
    assert!(lp[0].exp() + lp[1].exp() <= 1.0 + 1e-4, "{lp:?}");
    // The two options are the tokens the model answers with (a spelling
    // that missed them would have a tiny probability).
    assert!(
        lp[0].exp() + lp[1].exp() > 0.2,
        "Yes/No should be likely: {lp:?}"
    );

    struct Shared(&'static LlamaGenerator);
    impl Generator for Shared {
        fn model_name(&self) -> &str {
            self.0.model_name()
        }
        fn context_window(&self) -> usize {
            self.0.context_window()
        }
        fn count_tokens(&self, t: &str) -> cairn_generate::Result<usize> {
            self.0.count_tokens(t)
        }
        fn generate(
            &self,
            m: &[ChatMessage],
            s: &Sampling,
            k: &mut dyn cairn_generate::TokenSink,
        ) -> cairn_generate::Result<cairn_generate::Generation> {
            self.0.generate(m, s, k)
        }
        fn judge(&self, m: &[ChatMessage], o: &[&str]) -> cairn_generate::Result<Vec<f32>> {
            self.0.judge(m, o)
        }
    }
    let critic = GeneratorCritic::new(
        std::sync::Arc::new(Shared(g)),
        Calibration { a: 1.0, b: 0.0 },
        Calibration { a: 1.0, b: 0.0 },
    );
    critic.probe().unwrap();
    let raw = critic
        .raw(
            Judgement::Relevance,
            &[
                ("In what year did the Kestrel Bridge open?", passage),
                ("How do I bake sourdough bread?", passage),
            ],
        )
        .unwrap();
    eprintln!("relevance log-odds: {raw:?}");
    assert!(raw[0] > raw[1], "{raw:?}");
}

#[test]
fn judging_many_at_once_equals_judging_one_by_one() {
    use cairn_core::Judgement;
    use cairn_generate::judge::judge_messages;
    let g = smollm();
    let bridge = "The Kestrel Bridge over the Varne estuary opened to traffic in 1987. \
                  It is 412 metres long.";
    let ferry = "A ferry crossed the estuary every forty minutes until 1988.";
    // Two claims share the bridge passage's prefix; the ferry's shares only
    // the instructions.
    let prompts = vec![
        judge_messages(Judgement::Support, "The bridge is 412 metres long.", bridge),
        judge_messages(Judgement::Support, "The ferry ran until 1988.", ferry),
        judge_messages(Judgement::Support, "The bridge opened in 1987.", bridge),
    ];
    let many = g.judge_many(&prompts, &["Yes", "No"]).unwrap();
    assert_eq!(many.len(), 3);
    let ones: Vec<Vec<f32>> = prompts
        .iter()
        .map(|p| g.judge(p, &["Yes", "No"]).unwrap())
        .collect();
    eprintln!("one by one {ones:?}\ntogether {many:?}");
    // Equal up to llama.cpp's numerics: a suffix of a few tokens decoded
    // after a cached prefix goes through the small-batch kernels, whose
    // rounding on Q4 weights differs by a few hundredths of a nat.
    for (one, m) in ones.iter().zip(&many) {
        for (a, b) in one.iter().zip(m) {
            assert!((a - b).abs() < 0.1, "one by one {one:?}, together {m:?}");
        }
    }
    // A wrong prefix reuse (the other claim's tokens left in the cache)
    // would give the other claim's judgement.
    assert!(
        (many[0][1] - many[2][1]).abs() > 0.01 || (many[0][0] - many[2][0]).abs() > 0.01,
        "{many:?}"
    );
}
