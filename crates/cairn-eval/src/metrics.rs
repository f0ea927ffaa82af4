//! Ranking metrics with the definitions trec_eval uses (and `pytrec_eval`
//! reproduces): binary or graded relevance, linear gain, log2 discount.

use std::collections::HashMap;

/// Documents in rank order, each once (at its best rank).
pub fn dedup_docs<'a>(ranked: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = std::collections::HashSet::new();
    ranked.into_iter().filter(|d| seen.insert(*d)).collect()
}

/// nDCG@k: `ranked` documents (deduplicated), `qrels` graded relevance
/// (0 = not relevant). Gain is the grade, discount `log2(rank + 1)`; the
/// ideal ordering sorts all judged grades. Zero when nothing is relevant.
pub fn ndcg_at(ranked: &[&str], qrels: &HashMap<String, u32>, k: usize) -> f64 {
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, d)| *qrels.get(*d).unwrap_or(&0) as f64 / ((i + 2) as f64).log2())
        .sum();
    let mut grades: Vec<u32> = qrels.values().copied().filter(|g| *g > 0).collect();
    grades.sort_unstable_by(|a, b| b.cmp(a));
    let idcg: f64 = grades
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, g)| *g as f64 / ((i + 2) as f64).log2())
        .sum();
    if idcg == 0.0 {
        0.0
    } else {
        dcg / idcg
    }
}

/// 1 / rank of the first relevant document within the top `k`, else 0.
pub fn reciprocal_rank_at(ranked: &[&str], relevant: impl Fn(&str) -> bool, k: usize) -> f64 {
    ranked
        .iter()
        .take(k)
        .position(|d| relevant(d))
        .map_or(0.0, |i| 1.0 / (i + 1) as f64)
}

/// The retrieval scores of one question.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RankScores {
    pub hit1: f64,
    pub hit5: f64,
    pub hit10: f64,
    pub mrr10: f64,
    pub ndcg10: f64,
    /// Share of the gold documents found in the top `k` documents.
    pub recall: f64,
}

impl RankScores {
    /// Score a ranked document list against gold document *suffixes*: a
    /// document is relevant when its path ends with one of them (binary
    /// relevance; each gold entry is satisfied at most once). `k` bounds recall.
    pub fn for_gold(ranked: &[&str], gold: &[String], k: usize) -> RankScores {
        // Map each retrieved document to the gold entry it satisfies, once.
        let mut satisfied: HashMap<usize, usize> = HashMap::new(); // gold idx -> rank
        let mut rel_docs: HashMap<String, u32> = HashMap::new();
        for (rank, d) in ranked.iter().enumerate() {
            if let Some(g) =
                (0..gold.len()).find(|i| !satisfied.contains_key(i) && ends_with_path(d, &gold[*i]))
            {
                satisfied.insert(g, rank);
                rel_docs.insert(d.to_string(), 1);
            }
        }
        // Unretrieved gold entries still count in the ideal DCG.
        let mut qrels = rel_docs.clone();
        for (i, _) in gold.iter().enumerate() {
            if !satisfied.contains_key(&i) {
                qrels.insert(format!("\u{0}unretrieved-{i}"), 1);
            }
        }
        let relevant = |d: &str| rel_docs.contains_key(d);
        let hit = |n: usize| f64::from(ranked.iter().take(n).any(|d| relevant(d)) as u8);
        RankScores {
            hit1: hit(1),
            hit5: hit(5),
            hit10: hit(10),
            mrr10: reciprocal_rank_at(ranked, relevant, 10),
            ndcg10: ndcg_at(ranked, &qrels, 10),
            recall: if gold.is_empty() {
                0.0
            } else {
                satisfied.values().filter(|r| **r < k).count() as f64 / gold.len() as f64
            },
        }
    }

    /// Mean of many questions' scores.
    pub fn mean(all: &[RankScores]) -> RankScores {
        let n = all.len().max(1) as f64;
        let mut m = RankScores::default();
        for s in all {
            m.hit1 += s.hit1 / n;
            m.hit5 += s.hit5 / n;
            m.hit10 += s.hit10 / n;
            m.mrr10 += s.mrr10 / n;
            m.ndcg10 += s.ndcg10 / n;
            m.recall += s.recall / n;
        }
        m
    }
}

/// Whether `doc` ends with the path `gold` at a path boundary
/// (`a/library/os.html` ends with `library/os.html`, not with `s.html`).
pub fn ends_with_path(doc: &str, gold: &str) -> bool {
    let gold = gold.trim_start_matches("./");
    doc == gold
        || (doc.ends_with(gold) && {
            let cut = doc.len() - gold.len();
            doc[..cut].ends_with('/') || gold.starts_with('/')
        })
}

fn normalise(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Whether a generated answer contains one of the gold answers
/// (case-insensitive, whitespace normalised).
pub fn answer_matches(answer: &str, golds: &[String]) -> bool {
    let a = normalise(answer);
    golds.iter().any(|g| {
        let g = normalise(g);
        !g.is_empty() && a.contains(&g)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qrels(pairs: &[(&str, u32)]) -> HashMap<String, u32> {
        pairs.iter().map(|(d, g)| (d.to_string(), *g)).collect()
    }

    #[test]
    fn ndcg_matches_hand_computed_values() {
        // Relevant at ranks 1 and 3 of two relevant: (1 + 1/log2 4) / (1 + 1/log2 3)
        let r = ["a", "x", "b"];
        let q = qrels(&[("a", 1), ("b", 1)]);
        let want = (1.0 + 0.5) / (1.0 + 1.0 / 3f64.log2());
        assert!((ndcg_at(&r, &q, 10) - want).abs() < 1e-12);
        // Perfect ranking is 1; nothing relevant is 0; graded gains are linear.
        assert!((ndcg_at(&["b", "a"], &q, 10) - 1.0).abs() < 1e-12);
        assert_eq!(ndcg_at(&["x"], &q, 10), 0.0);
        let g = qrels(&[("a", 2), ("b", 1)]);
        let want = (1.0 + 2.0 / 3f64.log2()) / (2.0 + 1.0 / 3f64.log2());
        assert!((ndcg_at(&["b", "a"], &g, 10) - want).abs() < 1e-12);
        // Cut-off: a relevant document at rank 11 does not count.
        let long: Vec<String> = (0..10).map(|i| format!("n{i}")).collect();
        let mut r: Vec<&str> = long.iter().map(String::as_str).collect();
        r.push("a");
        assert_eq!(ndcg_at(&r, &q, 10), 0.0);
    }

    #[test]
    fn gold_suffixes_hits_mrr_and_recall() {
        let ranked = [
            "docs/library/os.html",
            "docs/library/os.path.html",
            "docs/tutorial/io.html",
        ];
        let gold = vec![
            "library/os.path.html".to_string(),
            "tutorial/io.html".to_string(),
        ];
        let s = RankScores::for_gold(&ranked, &gold, 10);
        assert_eq!(s.hit1, 0.0);
        assert_eq!(s.hit5, 1.0);
        assert_eq!(s.mrr10, 0.5);
        assert_eq!(s.recall, 1.0);
        let want = (1.0 / 3f64.log2() + 0.5) / (1.0 + 1.0 / 3f64.log2());
        assert!((s.ndcg10 - want).abs() < 1e-12, "{}", s.ndcg10);
        // `os.html` is not satisfied by `os.path.html` or `xos.html`.
        assert!(!ends_with_path("docs/library/xos.html", "os.html"));
        assert!(ends_with_path("docs/library/os.html", "os.html"));
        // An unretrieved gold page lowers nDCG and recall.
        let s = RankScores::for_gold(&ranked[..1], &gold, 10);
        assert_eq!((s.hit10, s.recall, s.ndcg10), (0.0, 0.0, 0.0));
        let s = RankScores::for_gold(&ranked[..2], &gold, 10);
        assert_eq!(s.recall, 0.5);
        assert!((s.ndcg10 - (1.0 / 3f64.log2()) / (1.0 + 1.0 / 3f64.log2())).abs() < 1e-12);
    }

    #[test]
    fn documents_count_once_at_their_best_rank() {
        let chunks = ["a", "a", "b", "a", "c"];
        assert_eq!(dedup_docs(chunks), vec!["a", "b", "c"]);
    }

    #[test]
    fn answers_match_case_and_whitespace_insensitively() {
        let gold = vec!["os.makedirs".to_string(), "New in  version 3.8".to_string()];
        assert!(answer_matches("Use OS.makedirs(path) [1]", &gold));
        assert!(answer_matches("it was new in\nversion 3.8.", &gold));
        assert!(!answer_matches("use os.mkdir", &gold));
        assert!(!answer_matches("anything", &["  ".to_string()]));
    }
}
