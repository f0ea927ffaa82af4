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
    std::fs::metadata(index_dir.join("hnsw/hnsw.usearch"))
        .unwrap()
        .modified()
        .unwrap()
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
    let q = rng.unit_vector();
    let exact: Vec<u64> = after
        .exact(&cat, &q, 10)
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    let hnsw: Vec<u64> = after
        .hnsw(&q, 10, Some(200))
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(exact, hnsw);
    let q = rng.unit_vector();
    let a: Vec<u64> = idx
        .hnsw(&q, 10, Some(200))
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    let b: Vec<u64> = after
        .hnsw(&q, 10, Some(200))
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(a, b, "the reopened copy answers as the live indexes do");

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
    for _ in 0..10 {
        let q = rng.unit_vector();
        let exact: Vec<u64> = idx
            .exact(&cat, &q, 10)
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect();
        let hnsw: Vec<u64> = idx
            .hnsw(&q, 10, Some(200))
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(exact, hnsw);
    }
    assert!(!index_dir.join("hnsw.compacting").exists());
}
