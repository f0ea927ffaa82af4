//! Shared by the index tests: seeded random vectors and texts in a real
//! catalog.
#![allow(dead_code)]

use cairn_store::{Catalog, DocumentRecord, NewChunk, Op};
use std::path::Path;

pub const DIM: usize = 32;

/// A seeded generator (64-bit LCG), as the crate's unit tests use.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    pub fn unit_vector(&mut self) -> Vec<f32> {
        let v: Vec<f32> = (0..DIM)
            .map(|_| (self.next() as f32 / (1u64 << 31) as f32) - 0.5)
            .collect();
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / norm).collect()
    }

    pub fn words(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| format!("w{}", self.next() % 300))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Upsert documents `docs` (display path `docN.txt`), each of `per_doc` chunks.
pub fn upsert(cat: &mut Catalog, rng: &mut Rng, docs: std::ops::Range<usize>, per_doc: usize) {
    for d in docs {
        let mut text = String::new();
        let mut chunks = Vec::with_capacity(per_doc);
        for ord in 0..per_doc {
            if !text.is_empty() {
                text.push('\n');
            }
            let chunk = format!("doc{d} {}", rng.words(12));
            let start = text.chars().count() as u64;
            text.push_str(&chunk);
            chunks.push(NewChunk {
                ord: ord as u32,
                start,
                end: start + chunk.chars().count() as u64,
                text: chunk,
                heading: format!("Doc {d} > Part {ord}"),
                vector: rng.unit_vector(),
            });
        }
        let doc = DocumentRecord {
            path: format!("/root/doc{d}.txt"),
            doc: format!("doc{d}.txt"),
            root: "/root".into(),
            hash: format!("{:016x}", rng.next()),
            mtime_ns: 1,
            size: text.len() as u64,
            format: "text".into(),
            text,
        };
        cat.apply(Op::Upsert { doc, chunks }, None).unwrap();
    }
}

pub fn open_catalog(path: &Path) -> Catalog {
    let mut cat = Catalog::open(path).unwrap();
    cat.ensure_embedding_model("default", "random-unit-vectors", DIM)
        .unwrap();
    cat
}
