//! Reciprocal-rank fusion: `score(d) = Σ_m w_m / (k + rank_m(d))`, ranks from 1.
//!
//! Fusion works on ranks, not raw scores, so cosine similarities and BM25
//! scores (which live on different scales) combine without calibration.

use cairn_core::{ChunkId, Scored};
use std::collections::HashMap;
use std::hash::Hash;

/// Fuse ranked lists. Each list is `(weight, hits best-first)`. Ties are
/// broken by the smaller chunk id so results are deterministic.
pub fn reciprocal_rank_fusion(lists: &[(f32, &[Scored])], k: f32) -> Vec<Scored> {
    let mut acc: HashMap<ChunkId, f32> = HashMap::new();
    for (weight, hits) in lists {
        for (rank, hit) in hits.iter().enumerate() {
            *acc.entry(hit.id).or_default() += weight / (k + rank as f32 + 1.0);
        }
    }
    let mut out: Vec<Scored> = acc
        .into_iter()
        .map(|(id, score)| Scored { id, score })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
    out
}

/// The first `k` of `ranked` (best first) with at most `max_per_doc`
/// passages of any one document, so that one document's chunks do not
/// crowd out every other document's best passage. When fewer than `k`
/// passages pass the cap, the held-back ones fill the rest in their order.
/// A passage's rank never gets worse than it was, except for held-back ones;
/// the first passage of each document is never held back. `max_per_doc = 0`
/// turns the cap off. `doc_of` names a passage's document (`None`: unknown,
/// never capped).
pub fn cap_per_document<D: Eq + Hash>(
    ranked: &[Scored],
    k: usize,
    max_per_doc: usize,
    doc_of: impl Fn(ChunkId) -> Option<D>,
) -> Vec<Scored> {
    if max_per_doc == 0 {
        return ranked.iter().take(k).copied().collect();
    }
    let mut per_doc: HashMap<D, usize> = HashMap::new();
    let mut kept = Vec::with_capacity(k);
    let mut held = Vec::new();
    for s in ranked {
        if kept.len() == k {
            break;
        }
        match doc_of(s.id) {
            Some(d) => {
                let n = per_doc.entry(d).or_insert(0);
                if *n < max_per_doc {
                    *n += 1;
                    kept.push(*s);
                } else {
                    held.push(*s);
                }
            }
            None => kept.push(*s),
        }
    }
    let room = k - kept.len();
    kept.extend(held.into_iter().take(room));
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(ids: &[u64]) -> Vec<Scored> {
        ids.iter().map(|&id| Scored { id, score: 0.0 }).collect()
    }

    #[test]
    fn agreement_wins_and_weights_matter() {
        let dense = s(&[1, 2, 3]);
        let bm25 = s(&[3, 4, 1]);
        let fused = reciprocal_rank_fusion(&[(1.0, &dense), (1.0, &bm25)], 60.0);
        let ids: Vec<u64> = fused.iter().map(|h| h.id).collect();
        assert_eq!(&ids[..2], &[1, 3]);
        assert_eq!(ids.len(), 4);
        // With BM25 weighted far above dense, BM25's order wins: 3 (0.1/63 + 5/61),
        // then 1 (0.1/61 + 5/63) just ahead of 4 (5/62), then 2 (0.1/62).
        let fused = reciprocal_rank_fusion(&[(0.1, &dense), (5.0, &bm25)], 60.0);
        assert_eq!(
            fused.iter().map(|h| h.id).collect::<Vec<_>>(),
            vec![3, 1, 4, 2]
        );
        assert!((fused[0].score - (0.1 / 63.0 + 5.0 / 61.0)).abs() < 1e-6);
    }

    #[test]
    fn the_cap_makes_room_for_other_documents() {
        // Chunks 1-4 are document "a", 5 is "b", 6 is "c".
        let doc = |id: u64| {
            Some(if id <= 4 {
                "a"
            } else if id == 5 {
                "b"
            } else {
                "c"
            })
        };
        let ranked = s(&[1, 2, 3, 4, 5, 6]);
        let ids = |v: Vec<Scored>| v.iter().map(|h| h.id).collect::<Vec<_>>();
        assert_eq!(ids(cap_per_document(&ranked, 4, 2, doc)), [1, 2, 5, 6]);
        assert_eq!(ids(cap_per_document(&ranked, 4, 0, doc)), [1, 2, 3, 4]);
        // Too few other documents: the held-back passages fill in, in order.
        assert_eq!(ids(cap_per_document(&ranked, 5, 2, doc)), [1, 2, 5, 6, 3]);
        assert_eq!(
            ids(cap_per_document(&ranked, 6, 1, doc)),
            [1, 5, 6, 2, 3, 4]
        );
        // Unknown documents are not capped.
        assert_eq!(
            ids(cap_per_document(&ranked, 3, 1, |_| None::<&str>)),
            [1, 2, 3]
        );
    }

    #[test]
    fn empty_lists_fuse_to_nothing() {
        assert!(reciprocal_rank_fusion(&[(1.0, &[]), (1.0, &[])], 60.0).is_empty());
    }
}
