//! Fusion after gathering: every shard returns its own dense and BM25
//! lists; the coordinator merges each list across shards by score, then
//! fuses the two merged lists exactly as a single node fuses its own.
//! Dense scores are cosines, comparable across shards, so merged dense
//! results equal a single node's. BM25 scores use the term statistics of
//! all shards summed (the search's first round, see
//! `Cluster::search`), so merged BM25 lists equal a single node's too, and
//! so does the fused order.

use crate::wire::{Candidates, ShardHit, ShardReply};
use cairn_core::{Hit, Scored, SearchMode};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// A merged hit: which shard it came from, its cosine to the query.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterHit {
    #[serde(flatten)]
    pub hit: Hit,
    pub shard: u32,
    pub cosine: f32,
}

/// Fusion settings (the `[search]` section), shared with a single node.
pub use cairn_index::fusion::Fusion;

fn key(shard: u32, chunk: u64) -> u64 {
    ((shard as u64) << 48) | (chunk & ((1 << 48) - 1))
}

fn ranked(list: Vec<(u64, f32)>) -> Vec<Scored> {
    let mut list = list;
    // Ties broken by key, so the order does not depend on arrival order.
    list.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    list.into_iter()
        .map(|(id, score)| Scored { id, score })
        .collect()
}

/// Merge the shards' replies into the top `k`.
pub fn merge(replies: &[ShardReply], k: usize, mode: SearchMode, f: &Fusion) -> Vec<ClusterHit> {
    let mut by_key: HashMap<u64, (&ShardHit, u32)> = HashMap::new();
    let mut dense = Vec::new();
    let mut bm25 = Vec::new();
    for r in replies {
        for h in &r.dense {
            let id = key(r.shard, h.hit.chunk);
            by_key.insert(id, (h, r.shard));
            dense.push((id, h.hit.score));
        }
        for h in &r.bm25 {
            let id = key(r.shard, h.hit.chunk);
            by_key.entry(id).or_insert((h, r.shard));
            bm25.push((id, h.hit.score));
        }
    }
    let dense = ranked(dense);
    let bm25 = ranked(bm25);
    let out = f.fuse(mode, &dense, &bm25, k);
    let out = f.cap(&out, k, |id| {
        by_key.get(&id).map(|(h, _)| h.hit.doc.as_str())
    });
    out.iter()
        .enumerate()
        .filter_map(|(i, s)| {
            by_key.get(&s.id).map(|(h, shard)| ClusterHit {
                hit: Hit {
                    rank: i + 1,
                    score: s.score,
                    ..h.hit.clone()
                },
                shard: *shard,
                cosine: h.cosine,
            })
        })
        .collect()
}

/// Phase 1 of a two-phase search: fuse every shard's candidate lists (ids
/// and scores, no texts) into the top `k`, as `(shard, chunk, fused
/// score)`, best first. The same order [`merge`] gives for the same lists:
/// the same keys, the same tie-break and the same fusion; the per-document
/// cap counts by (shard, document id), each document living on one shard,
/// as a single node counts by document id.
pub fn fuse_candidates(
    lists: &[(u32, Candidates)],
    k: usize,
    mode: SearchMode,
    f: &Fusion,
) -> Vec<(u32, u64, f32)> {
    let mut at: HashMap<u64, (u32, u64)> = HashMap::new();
    let mut docs: HashMap<u64, (u32, u64)> = HashMap::new();
    let mut dense = Vec::new();
    let mut bm25 = Vec::new();
    for (shard, c) in lists {
        for (list, out) in [(&c.dense, &mut dense), (&c.bm25, &mut bm25)] {
            for x in list {
                let id = key(*shard, x.chunk);
                at.insert(id, (*shard, x.chunk));
                if let Some(d) = x.doc {
                    docs.insert(id, (*shard, d));
                }
                out.push((id, x.score));
            }
        }
    }
    let out = f.fuse(mode, &ranked(dense), &ranked(bm25), k);
    let out = f.cap(&out, k, |id| docs.get(&id).copied());
    out.iter()
        .filter_map(|s| at.get(&s.id).map(|&(shard, chunk)| (shard, chunk, s.score)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(chunk: u64, score: f32, doc: &str) -> ShardHit {
        ShardHit {
            hit: Hit {
                rank: 0,
                score,
                doc: doc.into(),
                chunk,
                heading: String::new(),
                start: 0,
                end: 1,
                text: doc.into(),
                page: None,
            },
            cosine: score,
        }
    }

    fn reply(shard: u32, dense: Vec<ShardHit>, bm25: Vec<ShardHit>) -> ShardReply {
        ShardReply {
            node: "n".into(),
            shard,
            applied: 1,
            dense,
            bm25,
            error: None,
            took_ms: 0.0,
            bm25_stats: None,
            documents: None,
            document_text: None,
        }
    }

    const F: Fusion = Fusion {
        dense_weight: 1.0,
        bm25_weight: 1.0,
        rrf_k: 60.0,
        rrf: true,
        candidates: 50,
        max_per_document: 0,
    };

    #[test]
    fn dense_merge_is_a_global_sort_by_cosine() {
        let r = [
            reply(0, vec![hit(1, 0.9, "a"), hit(2, 0.5, "b")], vec![]),
            reply(1, vec![hit(1, 0.7, "c"), hit(2, 0.6, "d")], vec![]),
        ];
        let m = merge(&r, 3, SearchMode::Dense, &F);
        let docs: Vec<&str> = m.iter().map(|h| h.hit.doc.as_str()).collect();
        assert_eq!(docs, ["a", "c", "d"]);
        assert_eq!(m[1].shard, 1);
        assert_eq!(m.iter().map(|h| h.hit.rank).collect::<Vec<_>>(), [1, 2, 3]);
    }

    #[test]
    fn same_chunk_id_on_two_shards_stays_two_hits() {
        let r = [
            reply(0, vec![hit(7, 0.9, "a")], vec![]),
            reply(1, vec![hit(7, 0.8, "b")], vec![]),
        ];
        assert_eq!(merge(&r, 10, SearchMode::Dense, &F).len(), 2);
    }

    #[test]
    fn the_per_document_cap_applies_across_shards() {
        // Document "a" has the three best passages, on two shards.
        let r = [
            reply(0, vec![hit(1, 0.9, "a"), hit(2, 0.85, "a")], vec![]),
            reply(1, vec![hit(1, 0.8, "a"), hit(2, 0.5, "b")], vec![]),
        ];
        let capped = Fusion {
            max_per_document: 2,
            ..F
        };
        let docs = |f: &Fusion| {
            merge(&r, 3, SearchMode::Dense, f)
                .iter()
                .map(|h| h.hit.doc.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(docs(&F), ["a", "a", "a"]);
        assert_eq!(docs(&capped), ["a", "a", "b"]);
    }

    /// The two-phase fusion (ids and scores) ranks exactly as the one-phase
    /// merge (whole hits) of the same lists: same chunks, order and scores,
    /// in every mode, with and without the per-document cap, with tied
    /// scores and chunks in both lists.
    #[test]
    fn fusing_candidates_equals_merging_hits() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for round in 0..40 {
            let mut replies = Vec::new();
            let mut lists = Vec::new();
            for shard in 0..3u32 {
                let (dense_len, bm25_len) = (1 + next(20), next(20));
                let mut list = |len: u64| {
                    let mut hits = Vec::new();
                    let mut seen = std::collections::HashSet::new();
                    for _ in 0..len {
                        let chunk = next(40);
                        if !seen.insert(chunk) {
                            continue;
                        }
                        // Coarse scores: ties across shards and within one.
                        let score = next(8) as f32 / 4.0;
                        let doc = chunk / 5;
                        hits.push((chunk, score, doc));
                    }
                    hits.sort_by(|a, b| b.1.total_cmp(&a.1));
                    hits
                };
                let (dense, bm25) = (list(dense_len), list(bm25_len));
                let as_hits = |l: &[(u64, f32, u64)]| -> Vec<ShardHit> {
                    l.iter()
                        .map(|&(c, s, d)| {
                            let mut h = hit(c, s, &format!("s{shard}/d{d}"));
                            h.hit.text = format!("text of {shard}.{c}");
                            h
                        })
                        .collect()
                };
                let as_candidates = |l: &[(u64, f32, u64)]| -> Vec<crate::wire::Candidate> {
                    l.iter()
                        .map(|&(chunk, score, doc)| crate::wire::Candidate {
                            chunk,
                            score,
                            doc: Some(doc),
                        })
                        .collect()
                };
                replies.push(reply(shard, as_hits(&dense), as_hits(&bm25)));
                lists.push((
                    shard,
                    Candidates {
                        dense: as_candidates(&dense),
                        bm25: as_candidates(&bm25),
                    },
                ));
            }
            for mode in [SearchMode::Dense, SearchMode::Bm25, SearchMode::Hybrid] {
                for cap in [0, 1, 2] {
                    let f = Fusion {
                        max_per_document: cap,
                        candidates: 12,
                        ..F
                    };
                    let k = 1 + (round % 10);
                    let one: Vec<(u32, u64, u32)> = merge(&replies, k, mode, &f)
                        .iter()
                        .map(|h| (h.shard, h.hit.chunk, h.hit.score.to_bits()))
                        .collect();
                    let two: Vec<(u32, u64, u32)> = fuse_candidates(&lists, k, mode, &f)
                        .into_iter()
                        .map(|(s, c, score)| (s, c, score.to_bits()))
                        .collect();
                    assert_eq!(one, two, "round {round}, {mode:?}, cap {cap}, k {k}");
                    assert!(!two.is_empty() || mode == SearchMode::Bm25);
                }
            }
        }
    }

    #[test]
    fn hybrid_fuses_the_merged_lists() {
        // "b" is second in both merged lists, "a" first dense only, "c" first BM25 only.
        let r = [
            reply(
                0,
                vec![hit(1, 0.9, "a"), hit(2, 0.8, "b")],
                vec![hit(2, 5.0, "b")],
            ),
            reply(1, vec![], vec![hit(3, 9.0, "c")]),
        ];
        let m = merge(&r, 3, SearchMode::Hybrid, &F);
        assert_eq!(m[0].hit.doc, "b", "{m:?}");
        assert_eq!(m.len(), 3);
    }
}
