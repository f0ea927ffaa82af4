//! `cairn watch` and `cairn serve --watch` in child processes, against
//! real files changing under them: the catalog must end where a fresh
//! ingest of the final tree does, a rename must keep its stored vectors,
//! and what changed while no watcher ran is taken in at the next start.

mod common;

use common::{cairn, json, ok};
use rusqlite::Connection;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// `cairn watch TREE --json` in a child process, its JSON lines on a channel.
struct Watcher {
    child: Child,
    events: mpsc::Receiver<Value>,
    /// The rescan at start.
    initial: Option<Value>,
}

impl Watcher {
    fn start(data: &Path, tree: &Path) -> Watcher {
        let mut c = cairn(data);
        c.args(["watch", "--json", "--debounce-ms", "200"])
            .arg(tree)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = c.spawn().expect("start cairn watch");
        let out = child.stdout.take().unwrap();
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(json(line.as_bytes()));
            }
        });
        let mut w = Watcher {
            child,
            events,
            initial: None,
        };
        assert_eq!(w.next()["event"], "started");
        let first = w.next();
        assert_eq!(first["event"], "batch", "{first}");
        assert_eq!(first["initial"], true, "{first}");
        w.initial = Some(first);
        w
    }

    /// The next event (a watch that prints nothing for 120 s has failed).
    fn next(&mut self) -> Value {
        self.events
            .recv_timeout(Duration::from_secs(120))
            .expect("cairn watch printed nothing for 120 s")
    }

    /// The batches that come until none has come for `quiet`.
    fn settle(&mut self, quiet: Duration) -> Vec<Value> {
        let mut got = vec![self.next()];
        while let Ok(v) = self.events.recv_timeout(quiet) {
            got.push(v);
        }
        for b in &got {
            assert_eq!(b["event"], "batch", "{b}");
        }
        got
    }

    /// SIGTERM: the watch must say it stopped and exit 0.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        assert!(std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = Value::Null;
        while let Ok(v) = self.events.recv_timeout(Duration::from_secs(60)) {
            last = v;
        }
        assert_eq!(last["event"], "stopped", "{last}");
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                assert!(st.success(), "cairn watch exited with {st}");
                return;
            }
            assert!(Instant::now() < deadline, "cairn watch did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Documents and chunks of a catalog, compared across collections: paths,
/// hashes, texts and spans exactly; vectors to 1e-4 (an embedding batch's
/// other members can move the last bits).
type Row = (String, i64, i64, i64, String, String);
type Doc = (String, String, String);
fn catalog(data: &Path) -> (Vec<Doc>, Vec<Row>, Vec<Vec<f32>>) {
    let db = Connection::open(data.join("collections/default/catalog.sqlite")).unwrap();
    let mut s = db
        .prepare("SELECT path, hash, text FROM documents ORDER BY path")
        .unwrap();
    let docs = s
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut s = db
        .prepare(
            "SELECT d.path, c.ord, c.start, c.end, c.heading, c.text, c.vector FROM chunks c
             JOIN documents d ON d.id = c.doc_id ORDER BY d.path, c.ord",
        )
        .unwrap();
    let mut rows = Vec::new();
    let mut vectors = Vec::new();
    let mut q = s.query([]).unwrap();
    while let Some(r) = q.next().unwrap() {
        rows.push((
            r.get(0).unwrap(),
            r.get(1).unwrap(),
            r.get(2).unwrap(),
            r.get(3).unwrap(),
            r.get(4).unwrap(),
            r.get(5).unwrap(),
        ));
        let blob: Vec<u8> = r.get(6).unwrap();
        vectors.push(
            blob.chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        );
    }
    (docs, rows, vectors)
}

fn sum(batches: &[Value], field: &str) -> u64 {
    batches.iter().map(|b| b[field].as_u64().unwrap()).sum()
}

#[test]
fn watch_keeps_the_collection_in_step_with_edits_renames_deletes_and_creates() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    let data = tmp.path().join("data");
    cairn_testkit::copy_pages(
        &[
            "tutorial/venv.html",
            "tutorial/modules.html",
            "tutorial/errors.html",
            "tutorial/inputoutput.html",
            "tutorial/whatnow.html",
        ],
        &tree,
    );
    let t = tree.join("tutorial");

    let mut w = Watcher::start(&data, &tree);
    let initial = w.initial.take().unwrap();
    assert_eq!(initial["added"], 5, "{initial}");

    // A rename: one document out, one in, and not one chunk embedded again.
    std::fs::rename(t.join("venv.html"), t.join("environments.html")).unwrap();
    let b = w.settle(Duration::from_secs(2));
    assert_eq!(sum(&b, "added"), 1, "{b:?}");
    assert_eq!(sum(&b, "removed"), 1, "{b:?}");
    assert!(sum(&b, "chunks_added") > 3, "{b:?}");
    assert_eq!(sum(&b, "chunks_reused"), sum(&b, "chunks_added"), "{b:?}");

    // An edit, a deletion, a new file and a new folder, in a burst.
    let errors = std::fs::read_to_string(t.join("errors.html")).unwrap();
    let edited = errors.replacen(
        "</h1>",
        "</h1>\n<p>Kestrel exceptions are raised when a heron swallows a stack frame.</p>",
        1,
    );
    assert_ne!(errors, edited);
    std::fs::write(t.join("errors.html"), &edited).unwrap();
    std::fs::remove_file(t.join("whatnow.html")).unwrap();
    std::fs::write(
        tree.join("notes.md"),
        "# Notes\n\nThe quokkafish of the Varne estuary eats kelp at dawn.\n",
    )
    .unwrap();
    std::fs::create_dir_all(tree.join("deep/er")).unwrap();
    std::fs::write(
        tree.join("deep/er/log.txt"),
        "Harbour log: the Selby ferry ran late on Tuesday because of fog.\n",
    )
    .unwrap();
    let b = w.settle(Duration::from_secs(3));
    assert_eq!(sum(&b, "added"), 2, "{b:?}");
    assert_eq!(sum(&b, "updated"), 1, "{b:?}");
    assert_eq!(sum(&b, "removed"), 1, "{b:?}");
    // The edit touched one passage of errors.html: the rest kept its vectors.
    assert!(sum(&b, "chunks_reused") >= 10, "{b:?}");
    for b in &b {
        assert!(b["latency_s"].as_f64().unwrap() < 30.0, "{b}");
    }
    w.stop();

    // While no watcher runs: a deletion and a new file, taken in by the
    // rescan at the next start.
    std::fs::remove_file(tree.join("notes.md")).unwrap();
    std::fs::write(
        t.join("glossary.md"),
        "# Glossary\n\nA heron frame is a stack frame that a heron swallowed.\n",
    )
    .unwrap();
    let mut w = Watcher::start(&data, &tree);
    let rescan = w.initial.take().unwrap();
    assert_eq!(rescan["added"], 1, "{rescan}");
    assert_eq!(rescan["removed"], 1, "{rescan}");
    assert_eq!(rescan["unchanged"], 5, "{rescan}");
    w.stop();

    // The watched collection is what a fresh ingest of the final tree gives.
    let fresh = tmp.path().join("fresh");
    let mut c = cairn(&fresh);
    c.args(["ingest", "--json"]).arg(&tree);
    ok(c);
    let (docs_w, rows_w, vec_w) = catalog(&data);
    let (docs_f, rows_f, vec_f) = catalog(&fresh);
    assert_eq!(docs_w.len(), 6);
    assert_eq!(docs_w, docs_f, "documents differ from a fresh ingest");
    assert_eq!(rows_w, rows_f, "chunks differ from a fresh ingest");
    for (i, (a, b)) in vec_w.iter().zip(&vec_f).enumerate() {
        assert_eq!(a.len(), b.len());
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(
            worst < 1e-4,
            "chunk {i} ({:?}): vectors differ by {worst}",
            rows_w[i].0
        );
    }
    // And its indexes are in step with its catalog.
    let mut c = cairn(&data);
    c.args(["index", "check", "--json"]);
    let check = json(&ok(c).stdout);
    assert_eq!(check["ok"], true, "{check}");
    let mut c = cairn(&data);
    c.args(["search", "--json", "-k", "1", "what does a heron swallow?"]);
    let hits = json(&ok(c).stdout);
    let doc = hits[0]["doc"].as_str().or(hits["hits"][0]["doc"].as_str());
    assert!(
        doc.is_some_and(|d| d.contains("glossary") || d.contains("errors")),
        "{hits}"
    );
}

#[test]
fn serve_watch_makes_a_written_file_searchable() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("notes");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(
        tree.join("bridge.md"),
        "# Kestrel Bridge\n\nThe Kestrel Bridge over the Varne estuary opened in 1987.\n",
    )
    .unwrap();
    let tree_arg = tree.to_string_lossy().to_string();
    let mut s =
        common::server::Server::start(&tmp.path().join("data"), &["--watch", &tree_arg], &[]);
    let find = |q: &str, want: &str| -> bool {
        let q: String = q
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let (st, v) = s.get(&format!("/api/search?q={q}&k=1"));
        st == 200 && v.to_string().contains(want)
    };
    let wait_for = |q: &str, want: &str| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !find(q, want) {
            assert!(Instant::now() < deadline, "{want} never became searchable");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait_for("When did the Kestrel Bridge open?", "bridge.md");
    std::fs::write(
        tree.join("ferry.md"),
        "# Selby ferry\n\nThe Selby ferry ran late on Tuesday because of fog.\n",
    )
    .unwrap();
    wait_for("Why was the Selby ferry late?", "ferry.md");
    std::fs::remove_file(tree.join("ferry.md")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while find("Why was the Selby ferry late?", "ferry.md") {
        assert!(
            Instant::now() < deadline,
            "a deleted file stayed searchable"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(s.terminate().success());
    let log = s.log_text();
    assert!(log.contains("cairn serve: watch: watching"), "{log}");
    assert!(log.contains("1 added"), "{log}");
    assert!(log.contains("1 removed"), "{log}");
}
