//! Retrieval quality on the real Python 3.11 documentation with the real
//! model (all-MiniLM-L6-v2 as its int8 ONNX graph, which embeds the pages
//! about twice as fast as candle on two cores): exact identifiers through BM25,
//! hybrid against each mode alone, and HNSW recall against exact search.

mod common;

use cairn_core::config::Config;
use cairn_core::{NoProgress, SearchMode};
use cairn_engine::{Engine, IngestOptions};
use common::fast_embedder;
use std::collections::HashSet;
use std::path::Path;

fn engine(data: &Path, tweak: impl FnOnce(&mut Config)) -> Engine {
    let mut c = Config {
        data_dir: Some(data.to_path_buf()),
        models_dir: Some(cairn_testkit::models_dir()),
        ..Config::default()
    };
    tweak(&mut c);
    Engine::open_with_embedder(&c, fast_embedder(), &NoProgress).unwrap()
}

/// Pages of the Python 3.11 docs small enough to embed in a CI budget.
const PAGES: &[&str] = &[
    "library/os.path.html",
    "library/venv.html",
    "library/json.html",
    "library/time.html",
    "library/shutil.html",
    "library/csv.html",
    "library/random.html",
    "library/glob.html",
    "library/fnmatch.html",
    "library/tempfile.html",
    "library/secrets.html",
    "library/textwrap.html",
    "library/base64.html",
    "library/heapq.html",
    "library/bisect.html",
    "library/uuid.html",
    "library/gzip.html",
    "library/copy.html",
    "library/calendar.html",
    "tutorial/venv.html",
    "tutorial/interpreter.html",
    "tutorial/modules.html",
];

/// A small QA set of our own: a question and the pages that answer it.
const QA: &[(&str, &[&str])] = &[
    (
        "How do I join two path components into one path?",
        &["os.path.html"],
    ),
    (
        "create an isolated virtual environment with its own site directories",
        &["venv.html"],
    ),
    (
        "serialize a Python object to a JSON formatted string",
        &["json.html"],
    ),
    (
        "suspend execution of the calling thread for some seconds",
        &["time.html"],
    ),
    (
        "recursively copy an entire directory tree",
        &["shutil.html"],
    ),
    (
        "read rows from a comma separated values file",
        &["csv.html"],
    ),
    (
        "random integer between two numbers inclusive",
        &["random.html"],
    ),
    (
        "find all pathnames matching a Unix shell-style pattern",
        &["glob.html", "fnmatch.html"],
    ),
    (
        "test whether a filename matches a shell wildcard pattern",
        &["fnmatch.html", "glob.html"],
    ),
    (
        "create a temporary file that is deleted when it is closed",
        &["tempfile.html"],
    ),
    (
        "generate a hard-to-guess random token for a password reset URL",
        &["secrets.html"],
    ),
    (
        "wrap a paragraph of text so every line is at most a given width",
        &["textwrap.html"],
    ),
    (
        "encode binary data as printable ASCII characters",
        &["base64.html"],
    ),
    (
        "priority queue implemented with a binary heap",
        &["heapq.html"],
    ),
    (
        "insert an item into a sorted list and keep it sorted",
        &["bisect.html"],
    ),
    ("generate a universally unique identifier", &["uuid.html"]),
    (
        "compress and decompress files in the gzip format",
        &["gzip.html"],
    ),
    (
        "difference between a shallow copy and a deep copy",
        &["copy.html"],
    ),
    ("print a text calendar for a month", &["calendar.html"]),
    (
        "how are command line arguments passed to the script",
        &["interpreter.html"],
    ),
    (
        "a directory of modules becomes a package",
        &["modules.html"],
    ),
    ("os.path.join", &["os.path.html"]),
    ("python -m venv", &["venv.html"]),
    ("json.dumps indent", &["json.html"]),
    ("shutil.rmtree", &["shutil.html"]),
    ("secrets.token_hex", &["secrets.html"]),
];

/// hit@1, hit@5 and MRR@10 of a mode over the QA set, with the misses at 5.
fn quality(e: &Engine, mode: SearchMode) -> (f64, f64, f64, Vec<String>) {
    let (mut h1, mut h5, mut mrr) = (0.0, 0.0, 0.0);
    let mut misses = vec![];
    for (q, gold) in QA {
        let found = e.search(q, 10, mode).unwrap();
        let first = found
            .iter()
            .position(|h| gold.iter().any(|g| h.doc.ends_with(g)));
        if let Some(r) = first {
            mrr += 1.0 / (r as f64 + 1.0);
            h1 += (r == 0) as u8 as f64;
            h5 += (r < 5) as u8 as f64;
        }
        if first.is_none_or(|r| r >= 5) {
            misses.push(format!(
                "{q} → {:?}",
                found
                    .iter()
                    .take(5)
                    .map(|h| h.doc.as_str())
                    .collect::<Vec<_>>()
            ));
        }
    }
    let n = QA.len() as f64;
    (h1 / n, h5 / n, mrr / n, misses)
}

#[test]
fn bm25_finds_identifiers_and_hybrid_beats_each_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    cairn_testkit::copy_pages(PAGES, &docs);
    let e = engine(&tmp.path().join("data"), |_| {});
    let r = e
        .ingest(&[docs], &IngestOptions::default(), &NoProgress)
        .unwrap();
    assert_eq!(r.added as usize, PAGES.len(), "{r:?}");

    for (q, page) in [
        ("os.path.join", "library/os.path.html"),
        ("sys.argv", "tutorial/interpreter.html"),
        ("-m venv", "venv.html"),
        ("shutil.copytree", "library/shutil.html"),
        ("tempfile.mkstemp", "library/tempfile.html"),
        ("heapq.heappush", "library/heapq.html"),
    ] {
        let hits = e.search(q, 3, SearchMode::Bm25).unwrap();
        assert!(
            hits.first().is_some_and(|h| h.doc.ends_with(page)),
            "BM25 for {q}: {hits:#?}"
        );
        let tokens = cairn_index::analyzer::analyze(q);
        assert!(
            tokens.iter().any(|t| t.contains('.') || t.starts_with('-')),
            "{q} keeps its identifier: {tokens:?}"
        );
    }
    let init = e.search("__init__", 5, SearchMode::Bm25).unwrap();
    assert!(
        !init.is_empty() && init.iter().all(|h| h.text.contains("__init__")),
        "{init:#?}"
    );

    let dense = quality(&e, SearchMode::Dense);
    let bm25 = quality(&e, SearchMode::Bm25);
    let hybrid = quality(&e, SearchMode::Hybrid);
    for (name, m) in [("dense", &dense), ("bm25", &bm25), ("hybrid", &hybrid)] {
        eprintln!(
            "{name:>6}: hit@1 {:.3}  hit@5 {:.3}  MRR@10 {:.3}  misses@5 {:#?}",
            m.0, m.1, m.2, m.3
        );
    }
    assert!(
        hybrid.1 >= dense.1.max(bm25.1),
        "hybrid hit@5 below a single mode"
    );
    assert!(
        hybrid.0 >= dense.0.max(bm25.0),
        "hybrid hit@1 below a single mode"
    );
    assert!(hybrid.1 >= 0.9, "hybrid hit@5 {}", hybrid.1);
}

#[test]
fn dense_search_switches_to_hnsw_above_the_exact_threshold() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    cairn_testkit::copy_pages(
        &[
            "library/os.path.html",
            "library/glob.html",
            "library/fnmatch.html",
        ],
        &docs,
    );
    // exact_threshold 0: dense search goes through the HNSW graph.
    let e = engine(&tmp.path().join("data"), |c| c.index.exact_threshold = 0);
    e.ingest(&[docs], &IngestOptions::default(), &NoProgress)
        .unwrap();
    let n = e.status().unwrap().vectors;
    let mut agree = 0.0;
    let queries = [
        "join path components",
        "shell-style wildcards",
        "expand the user's home directory",
        "case-insensitive match",
    ];
    for q in queries {
        let v = e.embedder().embed_query(q).unwrap();
        let via_search: Vec<u64> = e
            .rank(q, 10, SearchMode::Dense)
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect();
        let via_hnsw: Vec<u64> = e
            .hnsw(&v, 10, Some(96))
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(via_search, via_hnsw, "{q}");
        let exact: HashSet<u64> = e.exact(&v, 10).unwrap().iter().map(|s| s.id).collect();
        agree += via_hnsw.iter().filter(|id| exact.contains(id)).count() as f64 / 10.0;
    }
    // On a few hundred vectors the graph search is exact in practice.
    assert!(
        agree / queries.len() as f64 >= 0.95,
        "{agree} over {n} vectors"
    );
}
