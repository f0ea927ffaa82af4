//! Reciprocal-rank fusion: `score(d) = Σ_m w_m / (k + rank_m(d))`, ranks from 1.
//!
//! Fusion works on ranks, not raw scores, so cosine similarities and BM25
//! scores (which live on different scales) combine without calibration.

use cairn_core::{ChunkId, Scored};
use std::collections::HashMap;

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
    fn empty_lists_fuse_to_nothing() {
        assert!(reciprocal_rank_fusion(&[(1.0, &[]), (1.0, &[])], 60.0).is_empty());
    }
}
