//! The engine end to end on the real model and real documents: incremental
//! ingest, bad inputs, collections, removal, index recovery.

mod common;

use cairn_core::config::Config;
use cairn_core::{NoProgress, SearchMode};
use cairn_engine::{Engine, IngestOptions};
use common::embedder;
use std::path::{Path, PathBuf};

fn config(data: &Path, collection: &str) -> Config {
    let mut c = Config {
        data_dir: Some(data.to_path_buf()),
        collection: collection.into(),
        models_dir: Some(cairn_testkit::models_dir()),
        ..Config::default()
    };
    c.chunk.max_tokens = 128;
    c
}

fn open(data: &Path, collection: &str) -> Engine {
    Engine::open_with_embedder(&config(data, collection), embedder(), &NoProgress).unwrap()
}

fn ingest(e: &Engine, roots: &[PathBuf], prune: bool) -> cairn_engine::IngestReport {
    e.ingest(
        roots,
        &IngestOptions {
            prune,
            ..Default::default()
        },
        &NoProgress,
    )
    .unwrap()
}

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

#[test]
fn incremental_ingest_unchanged_changed_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    write(&docs.join("wal.md"), "# Storage\n\n## WAL rotation\n\nThe write-ahead log is rotated every 64 MiB by the checkpointer.\n");
    write(
        &docs.join("notes/garden.txt"),
        "Tomatoes need full sun and regular watering in summer.\n",
    );
    write(
        &docs.join("notes/bikes.txt"),
        "Check the chain tension on a bicycle every few hundred kilometres.\n",
    );
    let e = open(&tmp.path().join("data"), "default");

    let r = ingest(&e, std::slice::from_ref(&docs), false);
    assert_eq!(
        (r.files_seen, r.added, r.updated, r.unchanged),
        (3, 3, 0, 0),
        "{r:?}"
    );
    assert!(r.chunks_added >= 3);
    let seq = r.seq;
    let hits = e
        .search(
            "how often is the write-ahead log rotated?",
            3,
            SearchMode::Hybrid,
        )
        .unwrap();
    assert_eq!(hits[0].doc, "wal.md");
    assert_eq!(hits[0].heading, "Storage > WAL rotation");
    let doc_text = "# Storage\n\n## WAL rotation\n\nThe write-ahead log is rotated every 64 MiB by the checkpointer.\n";
    let span: String = doc_text
        .chars()
        .skip(hits[0].start as usize)
        .take((hits[0].end - hits[0].start) as usize)
        .collect();
    assert_eq!(span, hits[0].text, "the span points at the chunk's text");

    // Unchanged: nothing re-read, no new sequence number.
    let r = ingest(&e, std::slice::from_ref(&docs), false);
    assert_eq!(
        (r.added, r.updated, r.unchanged, r.chunks_added),
        (0, 0, 3, 0),
        "{r:?}"
    );
    assert_eq!(r.seq, seq);

    // Touched but identical content: still unchanged, still no new sequence.
    let f = std::fs::File::options()
        .write(true)
        .open(docs.join("notes/bikes.txt"))
        .unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
        .unwrap();
    drop(f);
    let r = ingest(&e, std::slice::from_ref(&docs), false);
    assert_eq!((r.added, r.updated, r.unchanged), (0, 0, 3), "{r:?}");
    assert_eq!(r.seq, seq);

    // Changed: its chunks are replaced.
    write(
        &docs.join("notes/garden.txt"),
        "Basil grows well on a sunny windowsill and dislikes cold draughts.\n",
    );
    let r = ingest(&e, std::slice::from_ref(&docs), false);
    assert_eq!((r.added, r.updated, r.unchanged), (0, 1, 2), "{r:?}");
    assert!(r.seq > seq);
    let hits = e.search("tomatoes watering", 5, SearchMode::Bm25).unwrap();
    assert!(
        hits.iter().all(|h| !h.text.contains("Tomatoes")),
        "old chunks are gone: {hits:?}"
    );
    let hits = e.search("basil windowsill", 1, SearchMode::Bm25).unwrap();
    assert_eq!(hits[0].doc, "notes/garden.txt");

    // Deleted: --prune removes it; without --prune it stays.
    std::fs::remove_file(docs.join("notes/bikes.txt")).unwrap();
    let r = ingest(&e, std::slice::from_ref(&docs), false);
    assert_eq!(r.removed, 0);
    assert_eq!(e.status().unwrap().documents, 3);
    let r = ingest(&e, std::slice::from_ref(&docs), true);
    assert_eq!(r.removed, 1, "{r:?}");
    let s = e.status().unwrap();
    assert_eq!(s.documents, 2);
    assert_eq!(s.index_seq, s.seq);
    assert!(e
        .search("bicycle chain tension", 5, SearchMode::Bm25)
        .unwrap()
        .iter()
        .all(|h| h.doc != "notes/bikes.txt"));

    // `remove` by display path and by directory.
    assert_eq!(
        e.remove("wal.md", &NoProgress).unwrap(),
        vec!["wal.md".to_string()]
    );
    assert_eq!(
        e.remove(docs.join("notes").to_str().unwrap(), &NoProgress)
            .unwrap(),
        vec!["notes/garden.txt".to_string()]
    );
    assert_eq!(e.status().unwrap().chunks, 0);
    assert!(e
        .search("write-ahead log", 5, SearchMode::Hybrid)
        .unwrap()
        .is_empty());
    assert!(e
        .remove("nothing-here.md", &NoProgress)
        .unwrap_err()
        .to_string()
        .contains("nothing-here.md"));
}

fn minimal_pdf(text: &str, encrypted: bool) -> Vec<u8> {
    // A real one-page PDF with a text layer, written by hand.
    let stream = format!("BT /F1 12 Tf 72 720 Td ({text}) Tj ET");
    let mut objs = vec![
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_string(),
        format!("<< /Length {} >>\nstream\n{stream}\nendstream", stream.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_string(),
    ];
    if encrypted {
        objs.push("<< /Filter /Standard /V 1 /R 2 /O (xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx) /U (xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx) /P -4 >>".into());
    }
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = vec![];
    for (i, o) in objs.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
    }
    let xref = out.len();
    out.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objs.len() + 1).as_bytes());
    for off in offsets {
        out.extend_from_slice(format!("{off:010} 00000 n \n").as_bytes());
    }
    let enc = if encrypted {
        format!(" /Encrypt {} 0 R /ID [<01> <01>]", objs.len())
    } else {
        String::new()
    };
    out.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R{enc} >>\nstartxref\n{xref}\n%%EOF\n",
            objs.len() + 1
        )
        .as_bytes(),
    );
    out
}

#[test]
fn bad_inputs_are_skipped_with_reasons_and_nothing_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    write(
        &docs.join("good.md"),
        "# Lighthouse\n\nThe lighthouse keeper lit the lamp at dusk every evening.\n",
    );
    let e = open(&tmp.path().join("data"), "default");
    assert_eq!(ingest(&e, std::slice::from_ref(&docs), false).added, 1);

    std::fs::write(
        docs.join("report.pdf"),
        minimal_pdf("Quarterly revenue grew by seventeen percent", false),
    )
    .unwrap();
    std::fs::write(
        docs.join("corrupt.pdf"),
        b"%PDF-1.4\nthis is not really a pdf\n",
    )
    .unwrap();
    std::fs::write(docs.join("locked.pdf"), minimal_pdf("secret", true)).unwrap();
    std::fs::write(docs.join("empty.txt"), b"").unwrap();
    std::fs::write(
        docs.join("latin1.txt"),
        b"Caf\xe9 cr\xe8me recipes from the old notebook\n",
    )
    .unwrap();
    std::fs::write(docs.join("blob.dat"), [0u8, 1, 2, 3, 0, 255, 0, 7]).unwrap();
    // A multi-GB file, sparse so the test costs nothing.
    std::fs::File::create(docs.join("huge.txt"))
        .unwrap()
        .set_len(3 << 30)
        .unwrap();

    let r = ingest(&e, std::slice::from_ref(&docs), false);
    let reason = |name: &str| {
        r.skipped
            .iter()
            .find(|s| s.path == name)
            .map(|s| s.reason.clone())
            .unwrap_or_default()
    };
    assert!(
        reason("corrupt.pdf").contains("corrupt PDF"),
        "{:?}",
        r.skipped
    );
    assert!(
        reason("locked.pdf").contains("encrypted"),
        "{:?}",
        r.skipped
    );
    assert!(reason("empty.txt").contains("empty"), "{:?}", r.skipped);
    assert!(reason("blob.dat").contains("binary"), "{:?}", r.skipped);
    assert!(reason("huge.txt").contains("too large"), "{:?}", r.skipped);
    assert!(
        r.warnings
            .iter()
            .any(|w| w.path == "latin1.txt" && w.reason.contains("UTF-8")),
        "{:?}",
        r.warnings
    );
    assert_eq!(r.added, 2, "report.pdf and latin1.txt: {r:?}");
    assert_eq!(r.unchanged, 1);
    assert!(!r.nothing_ingested());

    let hits = e
        .search("quarterly revenue growth", 1, SearchMode::Hybrid)
        .unwrap();
    assert_eq!(hits[0].doc, "report.pdf");
    assert_eq!(hits[0].heading, "Page 1");
    let hits = e
        .search("lighthouse keeper", 1, SearchMode::Hybrid)
        .unwrap();
    assert_eq!(
        hits[0].doc, "good.md",
        "earlier documents survive a bad batch"
    );
    let hits = e.search("Café crème recipes", 1, SearchMode::Bm25).unwrap();
    assert_eq!(hits[0].doc, "latin1.txt");
}

#[test]
fn only_bad_input_means_nothing_ingested() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    std::fs::write(docs.join("corrupt.pdf"), b"%PDF-1.4 broken").unwrap();
    let e = open(&tmp.path().join("data"), "default");
    let r = ingest(&e, &[docs, tmp.path().join("missing-root")], false);
    assert!(r.nothing_ingested(), "{r:?}");
    assert!(
        r.skipped
            .iter()
            .any(|s| s.reason.contains("does not exist") || s.reason.contains("No such file")),
        "{:?}",
        r.skipped
    );
}

/// A page of a small site: a header menu and a footer navigation table on
/// every page (plain markup, no `<nav>` or class names to go by), and a
/// body of its own.
fn site_page(topic: &str, body: &str) -> String {
    format!(
        "<html><head><title>{topic}</title></head><body>\
         <div>Acme Manual</div><div>Home Guide Reference Downloads</div>\
         <h1>{topic}</h1><p>{body}</p>\
         <table><tr><td>Prev</td><td>Up</td><td>Next</td></tr></table>\
         </body></html>"
    )
}

#[test]
fn boilerplate_repeated_across_pages_is_left_out_and_new_pages_follow_the_collection() {
    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("site");
    let topics = [
        (
            "Lighthouses",
            "A lighthouse keeper trims the wick of the lamp at dusk.",
        ),
        (
            "Harbours",
            "A harbour shelters fishing boats from the winter storms.",
        ),
        ("Tides", "Spring tides follow the full and the new moon."),
        ("Buoys", "A red buoy marks the port side of the channel."),
    ];
    for (topic, body) in topics {
        write(&site.join(format!("{topic}.html")), &site_page(topic, body));
    }
    let e = open(&tmp.path().join("data"), "default");
    let r = ingest(&e, std::slice::from_ref(&site), false);
    assert_eq!(r.added, 4, "{r:?}");
    // Per page: the two header lines and the footer line.
    assert_eq!(r.boilerplate_lines, 4 * 3, "{r:?}");
    let chrome = "acme manual downloads prev";
    assert!(
        e.search(chrome, 5, SearchMode::Bm25).unwrap().is_empty(),
        "no chunk holds the menu or the footer"
    );
    for (topic, body) in topics {
        let hits = e.search(body, 1, SearchMode::Hybrid).unwrap();
        assert_eq!(hits[0].doc, format!("{topic}.html"));
        assert_eq!(hits[0].text.trim(), body, "the page's own text, whole");
    }

    // A page added later is cut by the collection's counts, not its own batch.
    write(
        &site.join("Beacons.html"),
        &site_page("Beacons", "A beacon on the headland burns all night."),
    );
    let r = ingest(&e, std::slice::from_ref(&site), false);
    assert_eq!(
        (r.added, r.unchanged, r.boilerplate_lines),
        (1, 4, 3),
        "{r:?}"
    );
    assert!(e.search(chrome, 5, SearchMode::Bm25).unwrap().is_empty());

    // Turned off, the chrome is indexed like any text.
    let mut cfg = config(&tmp.path().join("data-off"), "default");
    cfg.ingest.boilerplate_min_docs = 0;
    let off = Engine::open_with_embedder(&cfg, embedder(), &NoProgress).unwrap();
    let r = ingest(&off, std::slice::from_ref(&site), false);
    assert_eq!(r.boilerplate_lines, 0);
    let docs: std::collections::BTreeSet<String> = off
        .search(chrome, 20, SearchMode::Bm25)
        .unwrap()
        .into_iter()
        .map(|h| h.doc)
        .collect();
    assert_eq!(docs.len(), 5, "{docs:?}");
}

#[test]
fn a_per_document_cap_makes_room_for_other_documents() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    // One long page about harbours (many chunks), two pages that mention them once.
    let long: String = (0..12)
        .map(|i| {
            format!(
                "Harbour note {i}: the harbour master keeps the harbour log, and every harbour \
                 berth in the harbour is numbered; boats leave the harbour at high tide.\n\n"
            )
        })
        .collect();
    write(&docs.join("harbour.md"), &format!("# Harbours\n\n{long}"));
    write(
        &docs.join("tides.md"),
        "# Tides\n\nSpring tides follow the full and the new moon; a harbour feels them most.\n",
    );
    write(
        &docs.join("boats.md"),
        "# Boats\n\nA dinghy is rowed out from the harbour to the mooring at dawn.\n",
    );
    let data = tmp.path().join("data");
    let docs_of = |hits: &[cairn_core::Hit]| hits.iter().map(|h| h.doc.clone()).collect::<Vec<_>>();
    {
        let e = open(&data, "default");
        ingest(&e, std::slice::from_ref(&docs), false);
        let hits = e.search("harbour", 3, SearchMode::Bm25).unwrap();
        assert_eq!(
            docs_of(&hits),
            ["harbour.md"; 3],
            "without a cap one page fills the top 3"
        );
    }
    let mut cfg = config(&data, "default");
    cfg.search.max_per_document = 1;
    let e = Engine::open_with_embedder(&cfg, embedder(), &NoProgress).unwrap();
    for mode in [SearchMode::Bm25, SearchMode::Hybrid, SearchMode::Dense] {
        let mut got = docs_of(&e.search("harbour", 3, mode).unwrap());
        if mode == SearchMode::Bm25 {
            assert_eq!(got[0], "harbour.md", "the best passage keeps its place");
        }
        got.sort();
        assert_eq!(got, ["boats.md", "harbour.md", "tides.md"], "{mode:?}");
    }
    // With fewer other documents than places, the page's next passages fill in.
    let hits = e.search("harbour", 5, SearchMode::Bm25).unwrap();
    assert_eq!(hits.len(), 5);
    assert_eq!(docs_of(&hits[3..]), ["harbour.md", "harbour.md"]);
}

#[test]
fn collections_are_separate() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    write(
        &tmp.path().join("a/cats.txt"),
        "Cats sleep for most of the day and hunt at night.\n",
    );
    write(
        &tmp.path().join("b/dogs.txt"),
        "Dogs need daily walks and enjoy playing fetch.\n",
    );
    {
        let a = open(&data, "pets-a");
        ingest(&a, &[tmp.path().join("a")], false);
    }
    let b = open(&data, "pets-b");
    ingest(&b, &[tmp.path().join("b")], false);
    let hits = b.search("cats sleeping", 5, SearchMode::Hybrid).unwrap();
    assert!(hits.iter().all(|h| h.doc == "dogs.txt"), "{hits:?}");
    assert_eq!(
        cairn_engine::list_collections(&data),
        vec!["pets-a".to_string(), "pets-b".to_string()]
    );
}

#[test]
fn missing_or_corrupt_indexes_are_rebuilt_from_the_catalog() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let docs = tmp.path().join("docs");
    cairn_testkit::copy_pages(
        &[
            "library/os.path.html",
            "library/venv.html",
            "library/sys.html",
        ],
        &docs,
    );
    let queries = [
        "os.path.join",
        "create a virtual environment",
        "sys.argv command line arguments",
    ];
    let run = |e: &Engine| -> Vec<Vec<(String, u64)>> {
        queries
            .iter()
            .flat_map(|q| [SearchMode::Dense, SearchMode::Bm25, SearchMode::Hybrid].map(|m| (q, m)))
            .map(|(q, m)| {
                e.search(q, 5, m)
                    .unwrap()
                    .into_iter()
                    .map(|h| (h.doc, h.chunk))
                    .collect()
            })
            .collect()
    };
    let before = {
        let e = open(&data, "default");
        ingest(&e, std::slice::from_ref(&docs), false);
        run(&e)
    };
    assert_eq!(before[0][0].0, "library/os.path.html");
    let index = cairn_engine::collection_dir(&data, "default").join("index");
    // Deleted indexes.
    std::fs::remove_dir_all(&index).unwrap();
    assert_eq!(run(&open(&data, "default")), before);
    // Corrupt indexes.
    std::fs::write(index.join("hnsw/hnsw.graph"), b"garbage").unwrap();
    std::fs::write(index.join("bm25/meta.json"), b"{ not json").unwrap();
    let e = open(&data, "default");
    assert_eq!(run(&e), before);
    let s = e.status().unwrap();
    assert_eq!(
        (s.vectors as u64, s.bm25_docs, s.index_seq),
        (s.chunks, s.chunks, s.seq)
    );
}

#[test]
fn a_different_embedding_model_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    drop(open(&data, "default"));
    let mut cat = cairn_store::Catalog::open(
        &cairn_engine::collection_dir(&data, "default").join("catalog.sqlite"),
    )
    .unwrap();
    let err = cat
        .ensure_embedding_model("default", "bge-small-en-v1.5|cls|norm", 384)
        .unwrap_err()
        .to_string();
    assert!(err.contains("all-MiniLM-L6-v2"), "{err}");
}

/// A replica's collection: log entries apply with the log's sequence; a
/// poison entry (a vector of the wrong length) is skipped and reported as a
/// no-op that keeps its sequence, the entries after it still apply, and the
/// collection then refuses local writes.
#[test]
fn a_poison_log_entry_is_skipped_and_a_replica_refuses_local_writes() {
    use cairn_store::{DocumentRecord, NewChunk, Op};
    let tmp = tempfile::tempdir().unwrap();
    let e = open(tmp.path(), "docs.shard0");
    let dim = e.embedder().dim();
    let up = |name: &str, len: usize| {
        let text = format!("{name} is a lighthouse keeper on Skarv Island.");
        Op::Upsert {
            doc: DocumentRecord {
                path: format!("/notes/{name}.md"),
                doc: format!("{name}.md"),
                root: "/notes".into(),
                hash: name.into(),
                mtime_ns: 1,
                size: text.len() as u64,
                format: "markdown".into(),
                text: text.clone(),
            },
            chunks: vec![NewChunk {
                ord: 0,
                start: 0,
                end: text.chars().count() as u64,
                text,
                heading: String::new(),
                vector: e.embedder().embed_query(name).unwrap()[..len].to_vec(),
            }],
        }
    };
    let done = e
        .apply_logged(vec![
            (up("ingrid", dim), 1),
            (up("poison", dim - 1), 2),
            (up("olaf", dim), 3),
        ])
        .unwrap();
    assert_eq!(done.applied, 3);
    assert_eq!(done.skipped.len(), 1, "{done:?}");
    assert_eq!(done.skipped[0].0, 2);
    assert!(done.skipped[0].1.contains("dimensions"), "{done:?}");
    e.catch_up(&NoProgress).unwrap();
    let s = e.status().unwrap();
    assert_eq!((s.documents, s.seq, s.index_seq), (2, 3, 3));
    let hits = e.search("olaf", 1, SearchMode::Bm25).unwrap();
    assert_eq!(hits[0].doc, "olaf.md");

    // A local ingest into the replica's collection is refused, naming why.
    let notes = tmp.path().join("local");
    write(&notes.join("x.md"), "# X\n\nSomething local.\n");
    let err = e
        .ingest(&[notes], &IngestOptions::default(), &NoProgress)
        .unwrap_err();
    assert!(
        err.to_string().contains("does not take local writes"),
        "{err}"
    );
    assert_eq!(e.status().unwrap().documents, 2);
}

/// A log whose entries do not follow each other (entry 2 never came) stops
/// at the gap: what came before is applied, nothing after it, and the
/// error says the replica is waiting, not that the input was bad.
#[test]
fn a_replica_refuses_a_gap_in_its_log() {
    use cairn_store::Op;
    let tmp = tempfile::tempdir().unwrap();
    let e = open(tmp.path(), "docs.shard1");
    let err = e
        .apply_logged(vec![(Op::Noop, 1), (Op::Noop, 3), (Op::Noop, 4)])
        .unwrap_err();
    assert_eq!(err.kind(), cairn_engine::ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("missing"), "{err}");
    assert_eq!(e.applied_seq().unwrap(), 1);
    let done = e
        .apply_logged(vec![(Op::Noop, 2), (Op::Noop, 3), (Op::Noop, 4)])
        .unwrap();
    assert_eq!((done.applied, e.applied_seq().unwrap()), (3, 4));
}

/// An embedding backend that loses a vector (returns an empty one for the
/// last passage of each call) stands in for a broken model or runtime.
struct LosesAVector(std::sync::Arc<dyn cairn_models::SentenceEncoder>);

impl cairn_core::Embedder for LosesAVector {
    fn dim(&self) -> usize {
        self.0.dim()
    }
    fn model_id(&self) -> &str {
        self.0.model_id()
    }
    fn embed_passages(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, cairn_core::EmbedError> {
        let mut v = self.0.embed_passages(texts)?;
        if let Some(last) = v.last_mut() {
            last.clear();
        }
        Ok(v)
    }
    fn embed_query(&self, text: &str) -> Result<Vec<f32>, cairn_core::EmbedError> {
        self.0.embed_query(text)
    }
    fn count_tokens(&self, text: &str) -> usize {
        self.0.count_tokens(text)
    }
    fn max_tokens(&self) -> usize {
        self.0.max_tokens()
    }
}

impl cairn_models::SentenceEncoder for LosesAVector {
    fn chunking_tokenizer(&self) -> tokenizers::Tokenizer {
        self.0.chunking_tokenizer()
    }
    fn backend(&self) -> &'static str {
        self.0.backend()
    }
}

/// An ingest whose embedder returns an empty vector fails, naming the
/// model and the passage, and stores nothing: no chunk without a vector.
#[test]
fn an_empty_vector_from_the_embedder_fails_the_ingest() {
    let tmp = tempfile::tempdir().unwrap();
    let notes = tmp.path().join("notes");
    write(&notes.join("a.md"), "# A\n\nAlma keeps bees on the hill.\n");
    let cfg = config(&tmp.path().join("data"), "default");
    let e = Engine::open_with_embedder(
        &cfg,
        std::sync::Arc::new(LosesAVector(embedder())),
        &NoProgress,
    )
    .unwrap();
    let err = e
        .ingest(&[notes], &IngestOptions::default(), &NoProgress)
        .unwrap_err()
        .to_string();
    assert!(err.contains("0 dimensions"), "{err}");
    assert!(err.contains("all-MiniLM-L6-v2"), "{err}");
    let s = e.status().unwrap();
    assert_eq!((s.documents, s.chunks), (0, 0));
}
