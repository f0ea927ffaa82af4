//! The chunker with the real embedding tokenizer (all-MiniLM-L6-v2).

mod common;

use cairn_core::{ChunkDraft, Document, Format, Section};
use cairn_ingest::{load, Chunker, IngestError};
use common::{char_slice, counting_tokenizer, model_tokens, real_tokenizer};
use std::path::Path;

/// Deterministic prose: `n` sentences of 6–21 varied words, some non-ASCII,
/// in paragraphs of five sentences.
fn prose(n: usize, seed: u64) -> String {
    sentences(n, seed, 6, 16, true)
}

fn sentences(n: usize, seed: u64, min_words: usize, spread: usize, paragraphs: bool) -> String {
    const WORDS: &[&str] = &[
        "river",
        "stone",
        "cairn",
        "mountain",
        "path",
        "walker",
        "naïve",
        "café",
        "ridge",
        "snow",
        "marker",
        "日本語",
        "valley",
        "north",
        "compass",
        "weather",
        "🎉",
        "summit",
        "trail",
        "guide",
        "map",
        "pebble",
        "wind",
        "distance",
        "shelter",
    ];
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut out = String::new();
    for s in 0..n {
        let len = min_words + (x >> 60) as usize % spread;
        for w in 0..len {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let word = WORDS[(x >> 33) as usize % WORDS.len()];
            if w == 0 {
                let mut c = word.chars();
                if let Some(f) = c.next() {
                    out.extend(f.to_uppercase());
                    out.push_str(c.as_str());
                }
            } else {
                out.push(' ');
                out.push_str(word);
            }
        }
        out.push_str(". ");
        if paragraphs && s % 5 == 4 {
            out.push_str("\n\n");
        }
    }
    out
}

/// The invariants every chunking must satisfy.
fn check(doc: &Document, chunks: &[ChunkDraft], max_tokens: usize) {
    let counter = counting_tokenizer();
    assert!(!chunks.is_empty());
    let mut last_start = 0;
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c.ord as usize, i);
        assert_eq!(
            char_slice(&doc.text, c.start, c.end),
            c.text,
            "chunk {i} span"
        );
        assert!(!c.text.trim().is_empty());
        assert!(c.start >= last_start, "chunks in document order");
        last_start = c.start;
        let n = model_tokens(&counter, &c.embedding_text());
        assert!(
            n <= max_tokens + 2,
            "chunk {i} has {n} tokens > {max_tokens}: {:?}",
            c.embedding_text()
        );
    }
}

fn markdown_doc() -> Document {
    let src = format!(
        "Front matter free intro. {}\n\n# Guide\n\n{}\n\n## Setup\n\n{}\n\n### Linux\n\napt install cairn\n\n{}\n\n## Usage\n\n{}\n",
        prose(3, 1),
        prose(12, 2),
        prose(9, 3),
        prose(7, 4),
        prose(15, 5)
    );
    load(Path::new("guide.md"), src.as_bytes()).unwrap()
}

#[test]
fn spans_exact_and_token_limit_respected_for_all_formats() {
    let chunker = Chunker::new(real_tokenizer(), 64, 12).unwrap();
    let html = format!(
        "<html><head><title>T</title></head><body><h1>Über uns</h1><p>{}</p><h2>Team</h2><p>{}</p><pre>{}</pre></body></html>",
        prose(10, 7),
        prose(10, 8),
        prose(4, 9)
    );
    let rust: String = (0..12)
        .map(|i| format!("/// Doc {i}.\npub fn function_number_{i}(x: u32) -> u32 {{\n    let y = x * {i} + 7;\n    if y > 100 {{ return y - 100; }}\n    y\n}}\n\n"))
        .collect();
    let docs = [
        load(Path::new("a.txt"), prose(40, 11).as_bytes()).unwrap(),
        markdown_doc(),
        load(Path::new("b.html"), html.as_bytes()).unwrap(),
        load(Path::new("c.rs"), rust.as_bytes()).unwrap(),
        load(Path::new("d.ts"), rust.as_bytes()).unwrap(), // no grammar: text splitting
    ];
    for doc in &docs {
        let chunks = chunker.chunk(doc);
        assert!(
            chunks.len() > 3,
            "{:?} gave {} chunks",
            doc.format,
            chunks.len()
        );
        check(doc, &chunks, 64);
    }
}

#[test]
fn token_limit_holds_across_window_sizes() {
    let doc = markdown_doc();
    for max in [16, 32, 128, 256] {
        let chunker = Chunker::new(real_tokenizer(), max, max / 4).unwrap();
        let chunks = chunker.chunk(&doc);
        check(&doc, &chunks, max);
    }
}

#[test]
fn consecutive_chunks_overlap_when_asked() {
    // text-splitter overlaps with whole units of the level it split at, and
    // not across paragraph breaks: one long paragraph of short sentences.
    let text = sentences(80, 21, 3, 4, false);
    let doc = load(Path::new("long.txt"), text.as_bytes()).unwrap();

    let with = Chunker::new(real_tokenizer(), 48, 16).unwrap().chunk(&doc);
    assert!(with.len() > 5);
    check(&doc, &with, 48);
    let overlapping = with.windows(2).filter(|w| w[1].start < w[0].end).count();
    assert_eq!(overlapping, with.len() - 1, "neighbours without overlap");
    for w in with.windows(2) {
        if w[1].start < w[0].end {
            // The shared text is the end of one chunk and the start of the next.
            let shared = char_slice(&doc.text, w[1].start, w[0].end);
            assert!(w[0].text.ends_with(&shared) && w[1].text.starts_with(&shared));
        }
    }

    let without = Chunker::new(real_tokenizer(), 48, 0).unwrap().chunk(&doc);
    assert!(without.windows(2).all(|w| w[1].start >= w[0].end));
}

#[test]
fn heading_paths_are_carried() {
    let doc = markdown_doc();
    let chunks = Chunker::new(real_tokenizer(), 64, 8).unwrap().chunk(&doc);
    let linux = chunks
        .iter()
        .find(|c| c.text.contains("apt install cairn"))
        .unwrap();
    assert_eq!(linux.heading, "Guide > Setup > Linux");
    assert!(linux
        .embedding_text()
        .starts_with("Guide > Setup > Linux\n\n"));
    let headings: Vec<&str> = chunks.iter().map(|c| c.heading.as_str()).collect();
    for expected in [
        "",
        "Guide",
        "Guide > Setup",
        "Guide > Setup > Linux",
        "Guide > Usage",
    ] {
        assert!(
            headings.contains(&expected),
            "{expected:?} missing from {headings:?}"
        );
    }
    // Each chunk lies inside a section with that heading path.
    let byte_of = |ch: u64| {
        doc.text
            .char_indices()
            .nth(ch as usize)
            .map_or(doc.text.len(), |(b, _)| b)
    };
    for c in &chunks {
        let (s, e) = (byte_of(c.start), byte_of(c.end));
        assert!(
            doc.sections
                .iter()
                .any(|sec| sec.start <= s && e <= sec.end && sec.headings.join(" > ") == c.heading),
            "{c:?}"
        );
    }
}

#[test]
fn overlong_headings_are_shortened_to_fit() {
    let title = prose(30, 5).replace(['\n', '.'], " ");
    let src = format!("# {}\n\n{}", title.trim(), prose(20, 6));
    let doc = load(Path::new("x.md"), src.as_bytes()).unwrap();
    let chunks = Chunker::new(real_tokenizer(), 64, 8).unwrap().chunk(&doc);
    check(&doc, &chunks, 64);
    assert!(
        chunks.iter().all(|c| c.heading.ends_with('…')),
        "{:?}",
        chunks[0].heading
    );
}

#[test]
fn code_is_split_on_definitions() {
    let src: String = (0..8)
        .map(|i| {
            format!(
                "fn step_{i}(input: &[u32]) -> u32 {{\n    let mut total = 0;\n    for v in input {{\n        total += v * {i};\n    }}\n    total\n}}\n\n"
            )
        })
        .collect();
    let doc = load(Path::new("steps.rs"), src.as_bytes()).unwrap();
    let chunks = Chunker::new(real_tokenizer(), 64, 0).unwrap().chunk(&doc);
    check(&doc, &chunks, 64);
    assert_eq!(chunks.len(), 8, "{chunks:#?}");
    for (i, c) in chunks.iter().enumerate() {
        let first_line = format!("fn step_{i}(input: &[u32]) -> u32 {{");
        assert!(c.text.starts_with(&first_line), "chunk {i}: {:?}", c.text);
        assert!(c.text.ends_with('}'));
        assert_eq!(c.heading, first_line);
    }

    let py: String = (0..6)
        .map(|i| format!("def handler_{i}(event, context):\n    data = event.get('body', {{}})\n    result = process(data, level={i})\n    return {{'status': 200, 'result': result}}\n\n\n"))
        .collect();
    let doc = load(Path::new("handlers.py"), py.as_bytes()).unwrap();
    let chunks = Chunker::new(real_tokenizer(), 64, 0).unwrap().chunk(&doc);
    check(&doc, &chunks, 64);
    for c in &chunks {
        assert!(c.text.starts_with("def handler_"), "{:?}", c.text);
        assert_eq!(c.heading, c.text.lines().next().unwrap().trim());
    }
}

#[test]
fn impossible_settings_are_errors() {
    let err = Chunker::new(real_tokenizer(), 32, 32).unwrap_err();
    assert!(matches!(err, IngestError::ChunkerConfig { .. }), "{err}");
    assert!(Chunker::new(real_tokenizer(), 3, 0).is_err());
}

/// The chunker sizes slices by the tokens of the whole section (tokenised
/// once) and re-checks pieces cut inside a word; words longer than a chunk,
/// accents, CJK and symbols must still give chunks that fit and fill.
#[test]
fn pieces_cut_inside_words_still_fit() {
    let mut text = String::new();
    for i in 0..40 {
        text.push_str(&format!(
            "Paragraph {i}: naïve café résumé — Ünïcödé façade. 東京都の天気は晴れです。 "
        ));
        text.push_str(&"supercalifragilistic".repeat(i % 7 + 1));
        text.push_str(" x=α+β·γ; ");
        text.push_str(&prose(30, i as u64));
        text.push_str("\n\n");
    }
    text.push_str(&"y".repeat(5000)); // one word far longer than a chunk
    let doc = Document {
        format: Format::Text,
        sections: vec![Section {
            start: 0,
            end: text.len(),
            headings: vec!["Edge cases".into()],
        }],
        text,
        warnings: vec![],
    };
    for (max, overlap) in [(32, 0), (64, 8), (256, 0)] {
        let chunker = Chunker::new(real_tokenizer(), max, overlap).unwrap();
        let chunks = chunker.chunk(&doc);
        check(&doc, &chunks, max);
        // Chunks are filled, not cut to crumbs: the median chunk uses most of the window.
        let counter = counting_tokenizer();
        let mut sizes: Vec<usize> = chunks
            .iter()
            .map(|c| model_tokens(&counter, &c.embedding_text()))
            .collect();
        sizes.sort();
        let median = sizes[sizes.len() / 2];
        assert!(
            median * 10 >= max * 6,
            "max {max}: median chunk {median} tokens"
        );
    }
}
