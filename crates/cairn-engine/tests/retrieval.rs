//! Retrieval quality on the real Python 3.11 documentation with the real
//! model: exact identifiers through BM25, hybrid against each mode alone, and
//! HNSW recall against exact search.

use cairn_core::config::Config;
use cairn_core::{Embedder, NoProgress, SearchMode};
use cairn_engine::{Engine, IngestOptions};
use cairn_models::{BertEmbedder, Device};
use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, OnceLock};

fn embedder() -> Arc<BertEmbedder> {
    static MODEL: OnceLock<Arc<BertEmbedder>> = OnceLock::new();
    MODEL.get_or_init(|| Arc::new(BertEmbedder::load(&cairn_testkit::minilm_dir(), Device::Cpu, 32).unwrap())).clone()
}

fn engine(data: &Path, tweak: impl FnOnce(&mut Config)) -> Engine {
    let mut c = Config::default();
    c.data_dir = Some(data.to_path_buf());
    c.models_dir = Some(cairn_testkit::models_dir());
    tweak(&mut c);
    Engine::open_with_embedder(&c, embedder(), &NoProgress).unwrap()
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
    ("How do I join two path components into one path?", &["os.path.html"]),
    ("create an isolated virtual environment with its own site directories", &["venv.html"]),
    ("serialize a Python object to a JSON formatted string", &["json.html"]),
    ("suspend execution of the calling thread for some seconds", &["time.html"]),
    ("recursively copy an entire directory tree", &["shutil.html"]),
    ("read rows from a comma separated values file", &["csv.html"]),
    ("random integer between two numbers inclusive", &["random.html"]),
    ("find all pathnames matching a Unix shell-style pattern", &["glob.html", "fnmatch.html"]),
    ("test whether a filename matches a shell wildcard pattern", &["fnmatch.html", "glob.html"]),
    ("create a temporary file that is deleted when it is closed", &["tempfile.html"]),
    ("generate a hard-to-guess random token for a password reset URL", &["secrets.html"]),
    ("wrap a paragraph of text so every line is at most a given width", &["textwrap.html"]),
    ("encode binary data as printable ASCII characters", &["base64.html"]),
    ("priority queue implemented with a binary heap", &["heapq.html"]),
    ("insert an item into a sorted list and keep it sorted", &["bisect.html"]),
    ("generate a universally unique identifier", &["uuid.html"]),
    ("compress and decompress files in the gzip format", &["gzip.html"]),
    ("difference between a shallow copy and a deep copy", &["copy.html"]),
    ("print a text calendar for a month", &["calendar.html"]),
    ("how are command line arguments passed to the script", &["interpreter.html"]),
    ("a directory of modules becomes a package", &["modules.html"]),
    ("os.path.join", &["os.path.html"]),
    ("python -m venv", &["venv.html"]),
    ("json.dumps indent", &["json.html"]),
    ("shutil.rmtree", &["shutil.html"]),
    ("secrets.token_hex", &["secrets.html"]),
];

fn hit_at(e: &Engine, mode: SearchMode, k: usize) -> (usize, Vec<String>) {
    let mut hits = 0;
    let mut misses = vec![];
    for (q, gold) in QA {
        let found = e.search(q, k, mode).unwrap();
        if found.iter().any(|h| gold.iter().any(|g| h.doc.ends_with(g))) {
            hits += 1;
        } else {
            misses.push(format!("{q} → {:?}", found.iter().map(|h| h.doc.as_str()).collect::<Vec<_>>()));
        }
    }
    (hits, misses)
}

#[test]
fn bm25_finds_identifiers_and_hybrid_beats_each_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    cairn_testkit::copy_pages(PAGES, &docs);
    let e = engine(&tmp.path().join("data"), |_| {});
    let r = e.ingest(&[docs], &IngestOptions::default(), &NoProgress).unwrap();
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
        assert!(hits.first().is_some_and(|h| h.doc.ends_with(page)), "BM25 for {q}: {hits:#?}");
        let tokens = cairn_index::bm25::analyze(q);
        assert!(tokens.iter().any(|t| t.contains('.') || t.starts_with('-')), "{q} keeps its identifier: {tokens:?}");
    }
    let init = e.search("__init__", 5, SearchMode::Bm25).unwrap();
    assert!(!init.is_empty() && init.iter().all(|h| h.text.contains("__init__")), "{init:#?}");

    let k = 5;
    let (dense, dense_miss) = hit_at(&e, SearchMode::Dense, k);
    let (bm25, bm25_miss) = hit_at(&e, SearchMode::Bm25, k);
    let (hybrid, hybrid_miss) = hit_at(&e, SearchMode::Hybrid, k);
    eprintln!("hit@{k} of {}: dense {dense}, bm25 {bm25}, hybrid {hybrid}", QA.len());
    eprintln!("dense misses: {dense_miss:#?}\nbm25 misses: {bm25_miss:#?}\nhybrid misses: {hybrid_miss:#?}");
    assert!(hybrid >= dense.max(bm25), "hybrid {hybrid} < max(dense {dense}, bm25 {bm25})");
    assert!(hybrid as f32 >= 0.8 * QA.len() as f32, "hybrid hit@5 {hybrid}/{}", QA.len());
}

#[test]
fn dense_search_switches_to_hnsw_above_the_exact_threshold() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    cairn_testkit::copy_pages(&["library/os.path.html", "library/glob.html", "library/fnmatch.html"], &docs);
    // exact_threshold 0: dense search goes through the HNSW graph.
    let e = engine(&tmp.path().join("data"), |c| c.index.exact_threshold = 0);
    e.ingest(&[docs], &IngestOptions::default(), &NoProgress).unwrap();
    let n = e.status().unwrap().vectors;
    let mut agree = 0.0;
    let queries = ["join path components", "shell-style wildcards", "expand the user's home directory", "case-insensitive match"];
    for q in queries {
        let v = e.embedder().embed_query(q).unwrap();
        let via_search: Vec<u64> = e.rank(q, 10, SearchMode::Dense).unwrap().iter().map(|s| s.id).collect();
        let via_hnsw: Vec<u64> = e.hnsw(&v, 10, Some(96)).unwrap().iter().map(|s| s.id).collect();
        assert_eq!(via_search, via_hnsw, "{q}");
        let exact: HashSet<u64> = e.exact(&v, 10).unwrap().iter().map(|s| s.id).collect();
        agree += via_hnsw.iter().filter(|id| exact.contains(id)).count() as f64 / 10.0;
    }
    // On a few hundred vectors the graph search is exact in practice.
    assert!(agree / queries.len() as f64 >= 0.95, "{agree} over {n} vectors");
}
