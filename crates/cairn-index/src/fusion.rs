//! Fusing the dense and BM25 lists.
//!
//! - [`score_fusion`] (the default, `search.fusion = "score"`): a weighted sum
//!   of each list's scores divided by that list's best score, so that both
//!   live in (0, 1] for every query; a passage missing from a list gets that
//!   list's lowest normalised score among its candidates.
//! - [`reciprocal_rank_fusion`] (`"rrf"`): `score(d) = Σ_m w_m / (k + rank_m(d))`,
//!   ranks from 1; it uses ranks only, so how far ahead the best passage of
//!   a list is does not count.
//!
//! EVALUATION.md compares them on three QA sets.

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

/// Fuse scored lists by a weighted sum of max-normalised scores. Each list
/// is `(weight, hits best-first)`; a list's scores are divided by its best
/// score (a list whose best score is not positive counts as empty), and a
/// passage that a list does not hold gets that list's lowest normalised
/// score. Ties are broken by the smaller chunk id.
pub fn score_fusion(lists: &[(f32, &[Scored])]) -> Vec<Scored> {
    let normalised: Vec<(f32, HashMap<ChunkId, f32>, f32)> = lists
        .iter()
        .map(|(weight, hits)| {
            let best = hits
                .iter()
                .map(|h| h.score)
                .fold(f32::NEG_INFINITY, f32::max);
            if !best.is_finite() || best <= 0.0 {
                return (*weight, HashMap::new(), 0.0);
            }
            let map: HashMap<ChunkId, f32> = hits.iter().map(|h| (h.id, h.score / best)).collect();
            let floor = map.values().copied().fold(f32::INFINITY, f32::min);
            (*weight, map, floor.max(0.0))
        })
        .collect();
    let mut ids: Vec<ChunkId> = normalised
        .iter()
        .flat_map(|(_, m, _)| m.keys().copied())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let mut out: Vec<Scored> = ids
        .into_iter()
        .map(|id| Scored {
            id,
            score: normalised
                .iter()
                .map(|(w, m, floor)| w * m.get(&id).copied().unwrap_or(*floor))
                .sum(),
        })
        .collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.id.cmp(&b.id)));
    out
}

/// How a search fuses its dense and BM25 lists and caps documents: the
/// `[search]` settings, in the one place a single node and a cluster's
/// coordinator both fuse through.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fusion {
    pub dense_weight: f32,
    pub bm25_weight: f32,
    pub rrf_k: f32,
    /// Reciprocal-rank fusion instead of score fusion (`search.fusion = "rrf"`).
    pub rrf: bool,
    /// Candidates per list before fusion.
    pub candidates: usize,
    /// At most this many passages of one document (0: no cap).
    pub max_per_document: usize,
}

impl Fusion {
    /// The fusion the `[search]` section describes.
    pub fn from_config(s: &cairn_core::config::SearchConfig) -> Fusion {
        Fusion {
            dense_weight: s.dense_weight,
            bm25_weight: s.bm25_weight,
            rrf_k: s.rrf_k,
            rrf: s.fusion == "rrf",
            candidates: s.candidates,
            max_per_document: s.max_per_document,
        }
    }

    /// The ranked list of a search in `mode` from its dense and BM25
    /// candidate lists (each best first; the one the mode does not use may
    /// be empty): one list as it is, or both fused (each cut to
    /// `candidates.max(k)` first).
    pub fn fuse(
        &self,
        mode: cairn_core::SearchMode,
        dense: &[Scored],
        bm25: &[Scored],
        k: usize,
    ) -> Vec<Scored> {
        use cairn_core::SearchMode;
        match mode {
            SearchMode::Dense => dense.to_vec(),
            SearchMode::Bm25 => bm25.to_vec(),
            SearchMode::Hybrid => {
                let n = self.candidates.max(k);
                let lists = [
                    (self.dense_weight, &dense[..dense.len().min(n)]),
                    (self.bm25_weight, &bm25[..bm25.len().min(n)]),
                ];
                if self.rrf {
                    reciprocal_rank_fusion(&lists, self.rrf_k)
                } else {
                    score_fusion(&lists)
                }
            }
        }
    }

    /// The first `k` of `ranked` under the per-document cap
    /// ([`cap_per_document`] with `max_per_document`).
    pub fn cap<D: Eq + Hash>(
        &self,
        ranked: &[Scored],
        k: usize,
        doc_of: impl Fn(ChunkId) -> Option<D>,
    ) -> Vec<Scored> {
        cap_per_document(ranked, k, self.max_per_document, doc_of)
    }
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
    use cairn_core::SearchMode;

    fn s(ids: &[u64]) -> Vec<Scored> {
        ids.iter().map(|&id| Scored { id, score: 0.0 }).collect()
    }

    #[test]
    fn the_settings_pick_the_fusion_and_the_mode_the_lists() {
        let scored = |v: &[(u64, f32)]| -> Vec<Scored> {
            v.iter().map(|&(id, score)| Scored { id, score }).collect()
        };
        // Score fusion favours 2 (near the best in both lists by score);
        // reciprocal-rank fusion favours 1 (first in one list, third in
        // the other, against 2's second and second).
        let dense = scored(&[(1, 1.0), (2, 0.99), (3, 0.1)]);
        let bm25 = scored(&[(3, 10.0), (2, 9.9), (1, 0.5)]);
        let mut f = Fusion::from_config(&cairn_core::config::SearchConfig::default());
        f.candidates = 10;
        let ids = |v: Vec<Scored>| v.iter().map(|s| s.id).collect::<Vec<_>>();
        f.rrf = false;
        assert_eq!(ids(f.fuse(SearchMode::Hybrid, &dense, &bm25, 3))[0], 2);
        f.rrf = true;
        f.rrf_k = 1.0;
        let rrf = ids(f.fuse(SearchMode::Hybrid, &dense, &bm25, 3));
        assert_ne!(rrf[0], 2, "{rrf:?}");
        assert_eq!(ids(f.fuse(SearchMode::Dense, &dense, &bm25, 3)), [1, 2, 3]);
        assert_eq!(ids(f.fuse(SearchMode::Bm25, &dense, &bm25, 3)), [3, 2, 1]);
        // Hybrid cuts each list to `candidates.max(k)` first.
        f.candidates = 1;
        f.rrf = false;
        let cut = ids(f.fuse(SearchMode::Hybrid, &dense, &bm25, 1));
        assert_eq!(cut.len(), 2, "{cut:?}");
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

    fn scored(pairs: &[(u64, f32)]) -> Vec<Scored> {
        pairs
            .iter()
            .map(|&(id, score)| Scored { id, score })
            .collect()
    }

    #[test]
    fn score_fusion_weighs_how_far_ahead_a_passage_is() {
        // Dense barely prefers 1 over 2; BM25 strongly prefers 2.
        let dense = scored(&[(1, 0.62), (2, 0.60), (3, 0.30)]);
        let bm25 = scored(&[(2, 20.0), (1, 5.0), (4, 6.0)]);
        let fused = score_fusion(&[(1.0, &dense), (1.0, &bm25)]);
        let ids: Vec<u64> = fused.iter().map(|h| h.id).collect();
        assert_eq!(ids, [2, 1, 4, 3]);
        // 2: 0.60/0.62 + 1. 4 is missing from dense, so it gets dense's floor
        // 0.30/0.62; 3 is missing from BM25 and gets BM25's floor 5/20.
        assert!((fused[0].score - (0.60 / 0.62 + 1.0)).abs() < 1e-6);
        assert!((fused[2].score - (0.30 / 0.62 + 0.3)).abs() < 1e-6);
        assert!((fused[3].score - (0.30 / 0.62 + 0.25)).abs() < 1e-6);
        // RRF on the same lists ties 1 and 2 (first and second in each).
        let rrf = reciprocal_rank_fusion(&[(1.0, &dense), (1.0, &bm25)], 10.0);
        assert_eq!(rrf[0].score, rrf[1].score);
        // Weights: dense alone decides when BM25 weighs nothing.
        let fused = score_fusion(&[(1.0, &dense), (0.0, &bm25)]);
        assert_eq!(fused[0].id, 1);
        // An empty or non-positive list adds nothing.
        let fused = score_fusion(&[(1.0, &dense), (1.0, &scored(&[(9, 0.0)]))]);
        assert_eq!(fused.iter().map(|h| h.id).collect::<Vec<_>>(), [1, 2, 3]);
        assert!(score_fusion(&[(1.0, &[]), (1.0, &[])]).is_empty());
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
