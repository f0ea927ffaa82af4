//! SIGKILL at named points inside the commit paths (`CAIRN_FAILPOINT`, see
//! `cairn_core::failpoint`): in a catalog transaction, before and after its
//! `COMMIT`, while the indexes catch up, while the vector graph is saved,
//! while BM25 commits, while tombstones are pruned, and during
//! `cairn index rebuild`. Each kill is proven to have landed where it was
//! aimed (the process died of SIGKILL after printing the point's name, and
//! the catalog shows the transaction rolled back or kept as the point
//! implies); then the next plain run must leave a collection equal to one
//! that was never interrupted: the same content digest, indexes that match
//! the catalog, and the same ranked results.

use serde_json::Value;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

mod common;
use common::ok;

fn cairn(data: &Path) -> Command {
    let mut c = common::cairn(data);
    c.env_remove("CAIRN_FAILPOINT");
    c
}

fn json(c: Command) -> Value {
    common::json(&ok(c).stdout)
}

/// Run `c` with `CAIRN_FAILPOINT=point`: it must die of SIGKILL at that
/// point, having said so.
fn killed_at(mut c: Command, point: &str) {
    c.env("CAIRN_FAILPOINT", point);
    let out = c.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let at = if point.contains('@') {
        point.to_string()
    } else {
        format!("{point}@1")
    };
    assert_eq!(
        out.status.signal(),
        Some(9),
        "{c:?} with CAIRN_FAILPOINT={point} was not killed ({:?}): {stderr}",
        out.status
    );
    assert!(
        stderr.contains(&format!("failpoint {at} reached: SIGKILL")),
        "{c:?} died elsewhere than {point}: {stderr}"
    );
}

/// What a user can observe of a collection: the content digest and the
/// index check (which must pass), and ranked results in two modes.
fn observe(data: &Path) -> Value {
    let mut c = cairn(data);
    c.args(["index", "check", "--json"]);
    let check = json(c);
    assert_eq!(check["ok"], true, "{}: {check:#}", data.display());
    let mut hits = Vec::new();
    for (q, mode) in [
        ("reading a password without echo", "hybrid"),
        ("report ambiguous indentation", "bm25"),
    ] {
        let mut c = cairn(data);
        c.args(["search", q, "-k", "6", "--mode", mode, "--json"]);
        let v = json(c);
        let got: Vec<Value> = v["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                serde_json::json!([
                    h["doc"],
                    h["chunk"],
                    h["start"],
                    h["end"],
                    (h["score"].as_f64().unwrap() * 1e4).round()
                ])
            })
            .collect();
        hits.push(serde_json::json!({"q": q, "mode": mode, "hits": got}));
    }
    serde_json::json!({"content": check["content"], "hits": hits})
}

fn catalog_seq(data: &Path) -> u64 {
    let mut c = cairn(data);
    c.args(["status", "--json"]);
    json(c)["seq"].as_u64().unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// Two versions of a small corpus of real pages, written to `docs` (a
/// document is known by its path, so both live there in turn): v2 keeps two
/// pages, changes two, drops two (ingested with --prune) and adds two, so
/// its ingest applies four upserts (two of them replacing chunks) and two
/// deletes.
fn materialize(docs: &Path, v2: bool) {
    let keep = ["library/tty.html", "library/keyword.html"];
    let change = ["library/getpass.html", "library/tabnanny.html"];
    let drop = ["library/grp.html", "library/pwd.html"];
    let add = ["library/colorsys.html", "library/linecache.html"];
    let _ = std::fs::remove_dir_all(docs);
    let mut pages: Vec<&str> = keep.to_vec();
    pages.extend(change);
    pages.extend(if v2 { add } else { drop });
    cairn_testkit::copy_pages(&pages, docs);
    if v2 {
        for (page, from, to) in [
            (change[0], "password", "passphrase"),
            (change[1], "indentation", "indenting"),
        ] {
            let p = docs.join(page);
            let text = std::fs::read_to_string(&p).unwrap();
            assert!(text.contains(from));
            std::fs::write(&p, text.replace(from, to)).unwrap();
        }
    }
}

/// How one kill scenario starts, what runs killed, and what mends it.
struct Scenario {
    /// The failpoints of consecutive killed runs ("" = a run that completes).
    points: &'static [&'static str],
    start: Start,
    /// For a kill inside one catalog transaction: the catalog's sequence
    /// the kill must leave (rolled back, or kept once committed).
    seq_after: Option<u64>,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Start {
    /// Empty; the killed runs ingest v1; v1 is ingested again. (Run after
    /// the others, with v1 back in place.)
    Empty,
    /// v1 ingested; the killed runs ingest v2 --prune, which is re-run.
    V1,
    /// v2 ingested over v1; the killed runs are `index rebuild`; then
    /// `index check` (a writer's open) mends.
    Rebuild,
}

#[test]
fn sigkill_at_every_commit_point_then_rerun_matches_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let docs = tmp.path().join("docs");
    let ingest = |data: &Path| {
        let mut c = cairn(data);
        c.arg("ingest").arg(&docs).arg("--prune");
        c
    };
    // The uninterrupted runs: v1, then v2 over it.
    materialize(&docs, false);
    let base = tmp.path().join("base");
    ok(ingest(&base));
    let base_seq = catalog_seq(&base);
    assert_eq!(base_seq, 6);
    let after_v1 = observe(&base);
    let reference = tmp.path().join("reference");
    copy_dir(&base, &reference);
    materialize(&docs, true);
    ok(ingest(&reference));
    assert_eq!(
        catalog_seq(&reference),
        base_seq + 6,
        "4 upserts, 2 deletes"
    );
    let after_v2 = observe(&reference);
    assert_ne!(after_v1["content"], after_v2["content"]);
    // An uninterrupted rebuild: the same content, and BM25 scores without
    // the replaced chunks' statistics (tantivy counts a deleted document in
    // its segment's statistics until the segment is merged away, so a
    // rebuilt index scores a little differently from one that saw the
    // deletes).
    let rebuilt = tmp.path().join("rebuilt");
    copy_dir(&reference, &rebuilt);
    let mut c = cairn(&rebuilt);
    c.args(["index", "rebuild"]);
    ok(c);
    let after_rebuild = observe(&rebuilt);
    assert_eq!(after_rebuild["content"], after_v2["content"]);

    use Start::*;
    let s = |points, start, seq_after| Scenario {
        points,
        start,
        seq_after,
    };
    let scenarios = vec![
        // Inside the catalog's transactions of a v2 ingest: rolled back...
        s(&["catalog.apply.mid@1"], V1, Some(base_seq)),
        s(&["catalog.apply.mid@3"], V1, Some(base_seq + 2)),
        s(&["catalog.apply.mid@5"], V1, Some(base_seq + 4)),
        s(&["catalog.apply.commit@2"], V1, Some(base_seq + 1)),
        s(&["catalog.apply.commit@4"], V1, Some(base_seq + 3)),
        s(&["catalog.apply.commit@6"], V1, Some(base_seq + 5)),
        // ... or kept, with the indexes behind.
        s(&["catalog.apply.committed@1"], V1, Some(base_seq + 1)),
        s(&["catalog.apply.committed@4"], V1, Some(base_seq + 4)),
        s(&["catalog.apply.committed@6"], V1, Some(base_seq + 6)),
        // The catch-up after it: fed, BM25 mid-commit, graph mid-save.
        s(&["index.catchup.fed"], V1, None),
        s(&["bm25.commit.prepared"], V1, None),
        s(&["bm25.commit.done"], V1, None),
        s(&["hnsw.save.written"], V1, None),
        s(&["hnsw.save.renamed"], V1, None),
        // A catch-up at the next open, killed in turn.
        s(
            &["catalog.apply.committed@6", "index.catchup.fed"],
            V1,
            None,
        ),
        s(
            &["catalog.apply.committed@6", "bm25.commit.prepared"],
            V1,
            None,
        ),
        s(
            &["catalog.apply.committed@6", "hnsw.save.written"],
            V1,
            None,
        ),
        s(&["index.catchup.fed", "hnsw.save.renamed"], V1, None),
        // Tombstones pruned once the indexes hold the deletes durably.
        s(&["", "catalog.prune"], V1, None),
        // The first ingest into an empty collection (its graph is saved
        // within the catch-up).
        s(&["catalog.apply.commit@3"], Empty, Some(2)),
        s(&["index.catchup.fed"], Empty, None),
        s(&["hnsw.save.written"], Empty, None),
        s(&["hnsw.save.renamed"], Empty, None),
        s(&["bm25.commit.done"], Empty, None),
        // `cairn index rebuild`.
        s(&["index.reset"], Rebuild, None),
        s(&["index.catchup.fed"], Rebuild, None),
        // The rebuild's first BM25 commit is the one that empties it:
        // killed there, the old BM25 index stands (and scores as before).
        s(&["bm25.commit.prepared@1"], Rebuild, None),
        s(&["bm25.commit.prepared@2"], Rebuild, None),
        s(&["hnsw.save.written"], Rebuild, None),
        s(&["hnsw.save.renamed"], Rebuild, None),
    ];
    let kills: usize = scenarios
        .iter()
        .map(|s| s.points.iter().filter(|p| !p.is_empty()).count())
        .sum();
    assert!(kills >= 20, "{kills} kill points");

    let outcomes = Mutex::new(Vec::new());
    let run = |i: usize, sc: &Scenario| {
        let data = tmp.path().join(format!("killed-{i}"));
        let expected = match sc.start {
            Empty => &after_v1,
            V1 => {
                copy_dir(&base, &data);
                &after_v2
            }
            Rebuild => {
                copy_dir(&reference, &data);
                if sc.points == ["bm25.commit.prepared@1"] {
                    &after_v2
                } else {
                    &after_rebuild
                }
            }
        };
        for point in sc.points {
            let run = if sc.start == Rebuild {
                let mut c = cairn(&data);
                c.args(["index", "rebuild"]);
                c
            } else {
                ingest(&data)
            };
            if point.is_empty() {
                ok(run);
            } else {
                killed_at(run, point);
            }
        }
        if let Some(seq) = sc.seq_after {
            assert_eq!(
                catalog_seq(&data),
                seq,
                "{:?}: the kill left the catalog at another sequence",
                sc.points
            );
        }
        // Mend: the plain run.
        if sc.start == Rebuild {
            let mut c = cairn(&data);
            c.args(["index", "check"]);
            ok(c);
        } else {
            ok(ingest(&data));
        }
        let got = observe(&data);
        assert_eq!(
            &got, expected,
            "{:?} from {:?}: the re-run differs from an uninterrupted run",
            sc.points, sc.start
        );
        outcomes.lock().unwrap().push(format!(
            "{:?} {:?}: killed, re-run equal",
            sc.start, sc.points
        ));
    };
    let run_all = |phase: &[(usize, &Scenario)]| {
        let next = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..2 {
                scope.spawn(|| {
                    while let Some(&(i, sc)) = phase.get(next.fetch_add(1, Ordering::Relaxed)) {
                        run(i, sc);
                    }
                });
            }
        });
    };
    let indexed: Vec<(usize, &Scenario)> = scenarios.iter().enumerate().collect();
    let (first, empty): (Vec<_>, Vec<_>) = indexed.into_iter().partition(|(_, s)| s.start != Empty);
    run_all(&first);
    materialize(&docs, false);
    run_all(&empty);
    let outcomes = outcomes.into_inner().unwrap();
    assert_eq!(outcomes.len(), scenarios.len());
    eprintln!("{kills} kills at named points:\n{}", outcomes.join("\n"));
}
