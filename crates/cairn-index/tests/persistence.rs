//! What the indexes write and when: a small catch-up does not rewrite the
//! HNSW graph (searches see it at once; the disk at the next due save or
//! when the indexes close), a crash before that save loses nothing (the
//! next open re-adds the catalog's newer chunks), and a graph full of
//! removed vectors is rebuilt from the catalog's live ones.

use cairn_core::config::IndexConfig;
use cairn_core::NoProgress;
use cairn_index::Indexes;
use std::path::Path;

mod common;
use common::{open_catalog, upsert, Rng, DIM};

fn config() -> IndexConfig {
    IndexConfig {
        exact_threshold: 0,
        ..IndexConfig::default()
    }
}

fn manifest_seq(index_dir: &Path) -> u64 {
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(index_dir.join("hnsw/hnsw.json")).unwrap()).unwrap();
    m["applied_seq"].as_u64().unwrap()
}

fn graph_mtime(index_dir: &Path) -> std::time::SystemTime {
    std::fs::metadata(index_dir.join("hnsw/hnsw.graph"))
        .unwrap()
        .modified()
        .unwrap()
}

fn ids(scored: Vec<cairn_core::Scored>) -> Vec<u64> {
    scored.iter().map(|s| s.id).collect()
}

/// On `queries` random queries, HNSW (searched wide) finds the exact top
/// 10: a recall@10 of at least 0.95 on average (HNSW is approximate).
fn assert_hnsw_is_exact(idx: &Indexes, cat: &cairn_store::Catalog, rng: &mut Rng, queries: usize) {
    let mut found = 0;
    for _ in 0..queries {
        let q = rng.unit_vector();
        let exact = ids(idx.exact(cat, &q, 10).unwrap());
        let hnsw = ids(idx.hnsw(&q, 10, Some(400)).unwrap());
        found += hnsw.iter().filter(|id| exact.contains(id)).count();
    }
    let recall = found as f64 / (10 * queries) as f64;
    assert!(recall >= 0.95, "recall@10 {recall}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn small_catch_ups_do_not_rewrite_the_graph_and_a_crash_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let cat_path = tmp.path().join("catalog.sqlite");
    let index_dir = tmp.path().join("index");
    let mut cat = open_catalog(&cat_path);
    let mut rng = Rng(11);
    upsert(&mut cat, &mut rng, 0..50, 10);
    let idx = Indexes::open(&index_dir, DIM, &config(), &cat, &NoProgress).unwrap();
    // The first build is saved.
    let built = cat.last_seq().unwrap();
    assert_eq!(manifest_seq(&index_dir), built);
    let mtime = graph_mtime(&index_dir);

    // Ten small batches: each is searchable at once, none rewrites the file.
    for d in 50..60 {
        upsert(&mut cat, &mut rng, d..d + 1, 10);
        let c = idx.catch_up(&cat, &NoProgress).unwrap();
        assert!(!c.saved, "{c:?}");
        assert_eq!(idx.applied_seq(), cat.last_seq().unwrap());
        let hits = idx.bm25(&format!("doc{d}"), 1).unwrap();
        assert_eq!(hits.len(), 1, "doc{d}");
    }
    assert_eq!(idx.vectors(), 600);
    assert_eq!(
        manifest_seq(&index_dir),
        built,
        "the graph on disk is older"
    );
    assert_eq!(graph_mtime(&index_dir), mtime, "and was not rewritten");

    // A crash now leaves the files as they are: a copy of them is what the
    // next process would find. It starts from the saved graph and re-adds
    // the 100 newer chunks from the catalog.
    let crashed = tmp.path().join("crashed");
    copy_dir(&index_dir, &crashed);
    let after = Indexes::open(&crashed, DIM, &config(), &cat, &NoProgress).unwrap();
    assert_eq!(after.vectors(), 600);
    assert_eq!(after.applied_seq(), cat.last_seq().unwrap());
    assert_hnsw_is_exact(&after, &cat, &mut rng, 20);
    assert_hnsw_is_exact(&idx, &cat, &mut rng, 20);

    // Closing the indexes writes what the disk lacks.
    drop(idx);
    assert_eq!(manifest_seq(&index_dir), cat.last_seq().unwrap());
}

#[test]
fn a_graph_of_removed_vectors_is_compacted() {
    let tmp = tempfile::tempdir().unwrap();
    let cat_path = tmp.path().join("catalog.sqlite");
    let index_dir = tmp.path().join("index");
    let mut cat = open_catalog(&cat_path);
    let mut rng = Rng(5);
    upsert(&mut cat, &mut rng, 0..200, 5);
    let idx = Indexes::open(&index_dir, DIM, &config(), &cat, &NoProgress).unwrap();
    // Replace every document twice, catching up after each round: 2,000
    // removed vectors against 1,000 live ones.
    let mut compactions = 0;
    for _ in 0..2 {
        upsert(&mut cat, &mut rng, 0..200, 5);
        let c = idx.catch_up(&cat, &NoProgress).unwrap();
        compactions += c.compacted as usize;
    }
    assert_eq!(
        compactions, 1,
        "compacted once the removed passed the bound"
    );
    assert_eq!(idx.vectors(), 1000);
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(index_dir.join("hnsw/hnsw.json")).unwrap()).unwrap();
    assert!(m["removed"].as_u64().unwrap() < 1000, "{m}");
    assert_eq!(m["applied_seq"].as_u64(), Some(cat.last_seq().unwrap()));
    // Searches agree with the exact scan over the live vectors.
    assert_hnsw_is_exact(&idx, &cat, &mut rng, 10);
    assert!(!index_dir.join("hnsw.compacting").exists());
}
