//! Searches never wait for a catch-up, and concurrent catch-ups index every
//! chunk exactly once. Real catalogs (SQLite in a temporary directory) hold a
//! few thousand chunks with seeded random unit vectors and texts drawn from a
//! small vocabulary; nothing here measures time.

use cairn_core::config::IndexConfig;
use cairn_core::{NoProgress, Progress, Seq};
use cairn_index::Indexes;
use cairn_store::{Catalog, Op};
use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::time::Duration;

const K: usize = 10;

mod common;
use common::{open_catalog, upsert, Rng, DIM};

fn config() -> IndexConfig {
    IndexConfig {
        // Dense search goes through HNSW at any size.
        exact_threshold: 0,
        ..IndexConfig::default()
    }
}

/// Mean recall@10 of HNSW against the exact scan.
fn recall(idx: &Indexes, cat: &Catalog, rng: &mut Rng, queries: usize) -> f64 {
    let mut total = 0.0;
    for _ in 0..queries {
        let q = rng.unit_vector();
        let truth: HashSet<u64> = idx
            .exact(cat, &q, K)
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect();
        let got = idx.hnsw(&q, K, None).unwrap();
        assert_eq!(got.len(), K);
        total += got.iter().filter(|s| truth.contains(&s.id)).count() as f64 / K as f64;
    }
    total / queries as f64
}

#[test]
fn indexes_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Indexes>();
    send_sync::<cairn_index::vector::HnswIndex>();
    send_sync::<cairn_index::bm25::Bm25Index>();
}

/// What the searching thread saw.
#[derive(Debug)]
struct Answer {
    dense: usize,
    exact: usize,
    bm25: usize,
    applied_seq: Seq,
}

/// Progress whose `advance` (called by the catch-up between batches, with the
/// writer's locks held) asks another thread to search and waits for the
/// answer. A search blocked behind the catch-up would never answer.
struct Probe {
    ask: Mutex<mpsc::Sender<Vec<f32>>>,
    answers: Mutex<mpsc::Receiver<Result<Answer, String>>>,
    rng: Mutex<Rng>,
    seen: Mutex<Vec<Answer>>,
    failures: Mutex<Vec<String>>,
}

impl Progress for Probe {
    fn begin(&self, _phase: &str, _total: u64) {}

    fn advance(&self, n: u64) {
        if n == 0 {
            return;
        }
        let query = self.rng.lock().unwrap().unit_vector();
        self.ask.lock().unwrap().send(query).unwrap();
        match self
            .answers
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(30))
        {
            Ok(Ok(answer)) => self.seen.lock().unwrap().push(answer),
            Ok(Err(e)) => self.failures.lock().unwrap().push(e),
            Err(e) => self.failures.lock().unwrap().push(format!(
                "no answer from the searching thread within 30 s ({e}): \
                 a search waited for the catch-up"
            )),
        }
    }

    fn end(&self) {}
}

impl Probe {
    fn take(&self) -> (Vec<Answer>, Vec<String>) {
        (
            std::mem::take(&mut *self.seen.lock().unwrap()),
            std::mem::take(&mut *self.failures.lock().unwrap()),
        )
    }
}

#[test]
fn searches_never_wait_for_a_catch_up() {
    let tmp = tempfile::tempdir().unwrap();
    let cat_path = tmp.path().join("catalog.sqlite");
    let mut cat = open_catalog(&cat_path);
    let mut rng = Rng(0x5EED);
    // 500 chunks indexed (and committed) before the catch-up under test, so
    // that BM25 has answers while it runs.
    upsert(&mut cat, &mut rng, 0..10, 50);
    let idx = Arc::new(
        Indexes::open(&tmp.path().join("index"), DIM, &config(), &cat, &NoProgress).unwrap(),
    );
    let seq0 = cat.last_seq().unwrap();
    assert_eq!(idx.applied_seq(), seq0);
    assert_eq!(idx.vectors(), 500);
    // 3500 more: four batches of at most 1024 for the HNSW graph.
    upsert(&mut cat, &mut rng, 10..80, 50);
    let total = cat.stats().unwrap().chunks;
    assert_eq!(total, 4000);

    // The searching thread, with its own connection to the catalog.
    let (ask, questions) = mpsc::channel::<Vec<f32>>();
    let (reply, answers) = mpsc::channel();
    let searcher = {
        let idx = Arc::clone(&idx);
        let cat = Catalog::open(&cat_path).unwrap();
        std::thread::spawn(move || {
            for query in questions {
                let answer = (|| -> cairn_index::Result<Answer> {
                    Ok(Answer {
                        dense: idx.dense(&cat, &query, K)?.len(),
                        exact: idx.exact(&cat, &query, K)?.len(),
                        bm25: idx.bm25("w1 w2 w3 doc4", K)?.len(),
                        applied_seq: idx.applied_seq(),
                    })
                })();
                if reply.send(answer.map_err(|e| e.to_string())).is_err() {
                    break;
                }
            }
        })
    };
    // Meanwhile another thread searches without pause, at varying breadths.
    let stop = Arc::new(AtomicBool::new(false));
    let searches = Arc::new(AtomicUsize::new(0));
    let hammer = {
        let (idx, stop, searches) = (Arc::clone(&idx), Arc::clone(&stop), Arc::clone(&searches));
        std::thread::spawn(move || -> Vec<String> {
            let mut rng = Rng(99);
            let mut errors = vec![];
            while !stop.load(Ordering::Relaxed) {
                let q = rng.unit_vector();
                let ef = 16 + (rng.next() % 100) as usize;
                if let Err(e) = idx.hnsw(&q, K, Some(ef)) {
                    errors.push(e.to_string());
                }
                if let Err(e) = idx.bm25("w5 w6", K) {
                    errors.push(e.to_string());
                }
                let _ = (idx.vectors(), idx.bm25_docs(), idx.hnsw_memory());
                searches.fetch_add(1, Ordering::Relaxed);
            }
            errors
        })
    };

    let probe = Probe {
        ask: Mutex::new(ask),
        answers: Mutex::new(answers),
        rng: Mutex::new(Rng(7)),
        seen: Mutex::new(vec![]),
        failures: Mutex::new(vec![]),
    };
    let caught = idx.catch_up(&cat, &probe).unwrap();
    assert_eq!((caught.from, caught.added), (seq0, 3500));
    let (seen, failures) = probe.take();
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(seen.len(), 4, "one search per batch: {seen:?}");
    for a in &seen {
        assert_eq!((a.dense, a.exact), (K, K), "{a:?}");
        assert!(a.bm25 > 0, "{a:?}");
        // The catch-up has not finished: its sequence is not applied yet.
        assert_eq!(a.applied_seq, seq0, "{a:?}");
    }
    assert_eq!(idx.applied_seq(), cat.last_seq().unwrap());
    assert_eq!(idx.vectors() as u64, total);
    assert_eq!(idx.bm25_docs(), total);
    let r = recall(&idx, &cat, &mut Rng(1234), 50);
    assert!(r >= 0.95, "recall@10 after the catch-up: {r}");

    // A rebuild starts from empty indexes; searches go on all along.
    let rebuilt = idx.rebuild(&cat, &probe).unwrap();
    assert!(rebuilt.rebuilt);
    assert_eq!((rebuilt.from, rebuilt.added), (0, total));
    let (seen, failures) = probe.take();
    assert!(failures.is_empty(), "{failures:?}");
    assert_eq!(seen.len(), 4, "{seen:?}");
    for a in &seen {
        assert_eq!((a.dense, a.exact), (K, K), "{a:?}");
        assert_eq!(a.applied_seq, 0, "{a:?}");
    }
    assert_eq!(idx.applied_seq(), cat.last_seq().unwrap());
    assert_eq!(idx.vectors() as u64, total);
    assert_eq!(idx.bm25_docs(), total);
    let r = recall(&idx, &cat, &mut Rng(4321), 50);
    assert!(r >= 0.95, "recall@10 after the rebuild: {r}");

    stop.store(true, Ordering::Relaxed);
    let errors = hammer.join().unwrap();
    assert!(errors.is_empty(), "searches failed: {errors:?}");
    assert!(searches.load(Ordering::Relaxed) > 0);
    drop(probe);
    searcher.join().unwrap();
}

#[test]
fn concurrent_catch_ups_index_every_chunk_once() {
    let tmp = tempfile::tempdir().unwrap();
    let cat_path = tmp.path().join("catalog.sqlite");
    let index_dir = tmp.path().join("index");
    let mut cat = open_catalog(&cat_path);
    let mut rng = Rng(42);
    upsert(&mut cat, &mut rng, 0..20, 40);
    let idx = Indexes::open(&index_dir, DIM, &config(), &cat, &NoProgress).unwrap();
    assert_eq!(idx.vectors(), 800);
    // New documents, replaced ones (their old chunks become tombstones) and
    // a deleted one, all pending.
    upsert(&mut cat, &mut rng, 20..80, 40);
    upsert(&mut cat, &mut rng, 5..10, 30);
    cat.apply(
        Op::Delete {
            path: "/root/doc3.txt".into(),
        },
        None,
    )
    .unwrap();
    let live = cat.stats().unwrap().chunks;
    assert_eq!(live, 80 * 40 - 5 * 10 - 40);
    let last = cat.last_seq().unwrap();

    let start = Barrier::new(2);
    let results: Vec<_> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (idx, start, cat_path) = (&idx, &start, &cat_path);
                s.spawn(move || {
                    let cat = Catalog::open(cat_path).unwrap();
                    start.wait();
                    idx.catch_up(&cat, &NoProgress).unwrap()
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    // One did the work, the other found nothing left to do.
    let mut added: Vec<u64> = results.iter().map(|c| c.added).collect();
    added.sort();
    assert_eq!(added, [0, 60 * 40 + 5 * 30], "{results:?}");
    assert!(results.iter().all(|c| c.to == last), "{results:?}");
    assert_eq!(idx.applied_seq(), last);
    assert_eq!(idx.vectors() as u64, live);
    assert_eq!(idx.bm25_docs(), live);
    // Deleted and replaced chunks are gone from both indexes.
    assert!(idx.bm25("doc3", 100).unwrap().is_empty());
    let live_ids: HashSet<u64> = {
        let mut ids = HashSet::new();
        cat.for_each_vector(|id, _| {
            ids.insert(id);
        })
        .unwrap();
        ids
    };
    for _ in 0..20 {
        let q = rng.unit_vector();
        for hit in idx.hnsw(&q, 50, None).unwrap() {
            assert!(live_ids.contains(&hit.id), "stale chunk {}", hit.id);
        }
    }
    let r = recall(&idx, &cat, &mut Rng(5), 50);
    assert!(r >= 0.95, "recall@10: {r}");

    // Reopened from disk: the saved state is complete, nothing to redo.
    drop(idx);
    let idx = Indexes::open(&index_dir, DIM, &config(), &cat, &NoProgress).unwrap();
    assert_eq!(idx.applied_seq(), last);
    assert_eq!(idx.vectors() as u64, live);
    assert_eq!(idx.bm25_docs(), live);
    assert_eq!(idx.catch_up(&cat, &NoProgress).unwrap().added, 0);
}

/// A read-only open beside a writer that has not caught up: the indexes on
/// disk plus the catalog's newer chunks and deletions give what a writer
/// gives after its catch-up (the same ids and BM25 scores), without a lock,
/// without writing a file, and while the writer holds its indexes open.
#[test]
fn a_read_only_open_sees_the_catalog_beyond_the_saved_indexes() {
    let tmp = tempfile::tempdir().unwrap();
    let cat_path = tmp.path().join("catalog.sqlite");
    let index_dir = tmp.path().join("index");
    let mut cat = open_catalog(&cat_path);
    let mut rng = Rng(7);
    upsert(&mut cat, &mut rng, 0..30, 10);
    let writer = Indexes::open(&index_dir, DIM, &config(), &cat, &NoProgress).unwrap();
    let saved = writer.applied_seq();
    let doc4: HashSet<u64> = cat
        .chunks(&(0..2_000).collect::<Vec<_>>())
        .unwrap()
        .into_iter()
        .filter(|c| c.doc == "doc4.txt")
        .map(|c| c.id)
        .collect();
    assert_eq!(doc4.len(), 10);
    assert!(!writer.bm25("doc4", K).unwrap().is_empty());
    // Pending: new documents, a replaced one (twice: the first
    // replacement's chunks are added and deleted after the save), a deleted
    // one.
    upsert(&mut cat, &mut rng, 30..40, 10);
    upsert(&mut cat, &mut rng, 2..3, 5);
    upsert(&mut cat, &mut rng, 2..3, 4);
    cat.apply(
        Op::Delete {
            path: "/root/doc4.txt".into(),
        },
        None,
    )
    .unwrap();
    let live = cat.stats().unwrap().chunks;
    let files = |dir: &Path| -> Vec<(String, std::time::SystemTime)> {
        let mut v: Vec<_> = walk(dir)
            .into_iter()
            .map(|p| {
                let m = std::fs::metadata(&p).unwrap().modified().unwrap();
                (p.to_string_lossy().to_string(), m)
            })
            .collect();
        v.sort();
        v
    };
    let before = files(&index_dir);

    let reader_cat = Catalog::open_reader(&cat_path).unwrap();
    let ro = Indexes::open_read_only(&index_dir, DIM, &config(), &reader_cat, &NoProgress).unwrap();
    assert!(ro.is_read_only());
    assert_eq!(ro.applied_seq(), saved, "the files on disk are as saved");
    assert_eq!(ro.vectors() as u64, live);
    assert_eq!(ro.bm25_docs(), live);
    assert_eq!(files(&index_dir), before, "a read-only open writes nothing");
    assert!(matches!(
        ro.catch_up(&reader_cat, &NoProgress),
        Err(cairn_index::IndexError::ReadOnly(_))
    ));

    // The writer catches up (it still can: the reader took no lock), and
    // both must then agree.
    writer.catch_up(&cat, &NoProgress).unwrap();
    for q in ["doc33 w1 w2", "doc4 w17", "doc2 w5 w9 w200", "doc12 w3"] {
        let a = writer.bm25(q, K).unwrap();
        let b = ro.bm25(q, K).unwrap();
        assert_eq!(
            a.iter().map(|s| s.id).collect::<Vec<_>>(),
            b.iter().map(|s| s.id).collect::<Vec<_>>(),
            "{q}"
        );
        for (x, y) in a.iter().zip(&b) {
            assert!(
                (x.score - y.score).abs() < 1e-4,
                "{q}: {} vs {}",
                x.score,
                y.score
            );
        }
        assert!(b.iter().all(|s| !doc4.contains(&s.id)));
    }
    // The new documents are found, the deleted one is not.
    let new_doc: HashSet<u64> = reader_cat
        .chunks(&(0..2_000).collect::<Vec<_>>())
        .unwrap()
        .into_iter()
        .filter(|c| c.doc == "doc35.txt")
        .map(|c| c.id)
        .collect();
    assert_eq!(new_doc.len(), 10);
    let hits = ro.bm25("doc35", K).unwrap();
    assert!(hits.iter().all(|s| new_doc.contains(&s.id)) && !hits.is_empty());
    assert!(
        ro.bm25("doc4", K).unwrap().is_empty(),
        "deleted chunks stay out"
    );
    for _ in 0..20 {
        let q = rng.unit_vector();
        let a: Vec<u64> = writer
            .exact(&cat, &q, K)
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect();
        let b: Vec<u64> = ro
            .exact(&reader_cat, &q, K)
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(a, b);
        let got: HashSet<u64> = ro
            .hnsw(&q, K, Some(200))
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect();
        assert!(got.iter().all(|id| !doc4.contains(id)));
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
