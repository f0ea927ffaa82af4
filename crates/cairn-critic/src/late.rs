//! Late interaction (ColBERT-style MaxSim) with the embedding model's own
//! token vectors, as a critic: each token of the text (a question or a
//! claim) is matched with its most similar token of the passage, and the
//! raw score is the mean of those best cosines. Nothing is trained and no
//! token vectors are stored: the passages are encoded when judged (all of a
//! call's passages in one forward pass), which is what a rerank of the
//! fused top 20 costs per query (EVALUATION.md, "Late interaction (MaxSim)
//! reranking with the embedding model").
//!
//! The relevance of a passage to a question reads the passage as it was
//! embedded, its heading path then its text ([`cairn_core::embedding_text`]),
//! when the caller has the heading ([`Critic::reads_heading`]); the variant
//! (question cut at 64 tokens, passage at 256, punctuation kept, the pure
//! MaxSim order of the fused top 20) was fixed on the two development sets
//! before the held-out one was run.

use cairn_core::{Calibration, Critic, CriticError, Embedder, Judgement, TokenVectors};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Tokens read of a question (special tokens counted).
pub const QUERY_TOKENS: usize = 64;
/// Tokens read of a passage or a claim (special tokens counted; the
/// model's window when smaller).
pub const PASSAGE_TOKENS: usize = 256;
/// Texts per forward pass (a rerank's 20 passages are one).
const BATCH: usize = 32;
/// Token matrices kept between calls (grading, refining and checking an
/// answer look at the same passages); about 0.4 MB each at 256 tokens.
const CACHE_ENTRIES: usize = 256;

/// Token matrices by (tokens read, text).
type TokenCache = HashMap<(usize, String), Arc<TokenVectors>>;

/// The mean over `query`'s tokens of the best cosine with a token of
/// `passage` (both with unit rows); 0 when either has no token.
pub fn maxsim(query: &TokenVectors, passage: &TokenVectors) -> f32 {
    let (nq, np) = (query.rows(), passage.rows());
    if nq == 0 || np == 0 || query.dim != passage.dim {
        return 0.0;
    }
    let mut sum = 0f32;
    for i in 0..nq {
        let q = query.row(i);
        let mut best = f32::NEG_INFINITY;
        for j in 0..np {
            let d: f32 = q.iter().zip(passage.row(j)).map(|(a, b)| a * b).sum();
            best = best.max(d);
        }
        sum += best;
    }
    sum / nq as f32
}

/// The embedding model's token vectors as critic.
pub struct LateInteractionCritic {
    embedder: Arc<dyn Embedder>,
    relevance: Calibration,
    support: Calibration,
    cache: Mutex<TokenCache>,
}

impl std::fmt::Debug for LateInteractionCritic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LateInteractionCritic")
            .field("model", &self.embedder.model_id())
            .field("relevance", &self.relevance)
            .field("support", &self.support)
            .finish()
    }
}

impl LateInteractionCritic {
    pub fn new(
        embedder: Arc<dyn Embedder>,
        relevance: Calibration,
        support: Calibration,
    ) -> LateInteractionCritic {
        LateInteractionCritic {
            embedder,
            relevance,
            support,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn err(&self, e: impl std::fmt::Display) -> CriticError {
        CriticError {
            critic: "late-interaction".into(),
            reason: e.to_string(),
        }
    }

    /// Token vectors of `texts` cut at `max` tokens, from the cache where
    /// possible, the rest in forward passes of up to [`BATCH`] texts.
    fn tokens(&self, texts: &[&str], max: usize) -> Result<Vec<Arc<TokenVectors>>, CriticError> {
        let mut out: Vec<Option<Arc<TokenVectors>>> = {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            texts
                .iter()
                .map(|t| cache.get(&(max, t.to_string())).cloned())
                .collect()
        };
        let mut missing: Vec<String> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (t, v) in texts.iter().zip(&out) {
            if v.is_none() && !index.contains_key(t) {
                index.insert(t, missing.len());
                missing.push(t.to_string());
            }
        }
        if missing.is_empty() {
            return Ok(out.into_iter().map(|v| v.expect("cached")).collect());
        }
        let mut made: Vec<Arc<TokenVectors>> = Vec::with_capacity(missing.len());
        for batch in missing.chunks(BATCH) {
            let m = self
                .embedder
                .embed_tokens(batch, max)
                .map_err(|e| self.err(e))?;
            if m.len() != batch.len() {
                return Err(self.err(format!(
                    "{} token matrices for {} texts",
                    m.len(),
                    batch.len()
                )));
            }
            made.extend(m.into_iter().map(Arc::new));
        }
        {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() + made.len() > CACHE_ENTRIES {
                cache.clear();
            }
            for (t, v) in missing.iter().zip(&made).take(CACHE_ENTRIES) {
                cache.insert((max, t.clone()), v.clone());
            }
        }
        for (slot, t) in out.iter_mut().zip(texts) {
            if slot.is_none() {
                *slot = Some(made[index[t]].clone());
            }
        }
        Ok(out.into_iter().map(|v| v.expect("filled")).collect())
    }
}

impl Critic for LateInteractionCritic {
    fn name(&self) -> &str {
        "late-interaction"
    }

    /// Relevance: the question (64 tokens) against the passage (256);
    /// support: the claim against the passage, both up to 256 tokens.
    fn raw(&self, judgement: Judgement, pairs: &[(&str, &str)]) -> Result<Vec<f32>, CriticError> {
        if pairs.is_empty() {
            return Ok(vec![]);
        }
        let text_tokens = match judgement {
            Judgement::Relevance => QUERY_TOKENS,
            Judgement::Support => PASSAGE_TOKENS,
        };
        let texts: Vec<&str> = pairs.iter().map(|p| p.0).collect();
        let passages: Vec<&str> = pairs.iter().map(|p| p.1).collect();
        let q = self.tokens(&texts, text_tokens)?;
        let p = self.tokens(&passages, PASSAGE_TOKENS)?;
        Ok(q.iter().zip(&p).map(|(a, b)| maxsim(a, b)).collect())
    }

    fn calibration(&self, judgement: Judgement) -> Calibration {
        match judgement {
            Judgement::Relevance => self.relevance,
            Judgement::Support => self.support,
        }
    }

    fn reads_heading(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_core::EmbedError;

    fn m(rows: &[&[f32]]) -> TokenVectors {
        let dim = rows[0].len();
        TokenVectors::normalized(dim, rows.iter().flat_map(|r| r.iter().copied()).collect())
    }

    #[test]
    fn maxsim_is_the_mean_of_each_query_tokens_best_cosine() {
        let q = m(&[&[1.0, 0.0], &[0.0, 2.0]]);
        // Rows are scaled to unit length.
        assert_eq!(q.row(1), &[0.0, 1.0]);
        let p = m(&[&[1.0, 1.0], &[0.0, 1.0], &[-1.0, 0.0]]);
        // Token 1 of q: best is p[0] (cos 45° = 0.7071); token 2: p[1] (1).
        let want = (std::f32::consts::FRAC_1_SQRT_2 + 1.0) / 2.0;
        assert!((maxsim(&q, &p) - want).abs() < 1e-6, "{}", maxsim(&q, &p));
        // Not symmetric: p's tokens against q.
        let back = (std::f32::consts::FRAC_1_SQRT_2 + 1.0 + 0.0) / 3.0;
        assert!((maxsim(&p, &q) - back).abs() < 1e-6);
        // A passage holding every query token scores 1; adding tokens to it
        // never lowers the score.
        assert!((maxsim(&q, &q) - 1.0).abs() < 1e-6);
        let more = m(&[&[1.0, 0.0], &[0.0, 1.0], &[0.5, -0.5]]);
        assert!(maxsim(&q, &more) >= maxsim(&q, &q) - 1e-6);
        // Empty sides and mismatched dimensions score 0.
        assert_eq!(maxsim(&TokenVectors::default(), &p), 0.0);
        assert_eq!(maxsim(&q, &m(&[&[1.0, 0.0, 0.0]])), 0.0);
    }

    /// Token vectors from the letters of words: a real function of the
    /// text, so the critic's plumbing (cuts, cache, order) is exercised.
    struct Letters {
        calls: Mutex<Vec<usize>>,
    }

    impl Embedder for Letters {
        fn dim(&self) -> usize {
            26
        }
        fn model_id(&self) -> &str {
            "letters"
        }
        fn embed_passages(&self, _: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
            unreachable!()
        }
        fn embed_query(&self, _: &str) -> Result<Vec<f32>, EmbedError> {
            unreachable!()
        }
        fn count_tokens(&self, t: &str) -> usize {
            t.split_whitespace().count()
        }
        fn max_tokens(&self) -> usize {
            256
        }
        fn embed_tokens(
            &self,
            texts: &[String],
            max: usize,
        ) -> Result<Vec<TokenVectors>, EmbedError> {
            self.calls.lock().unwrap().push(texts.len());
            Ok(texts
                .iter()
                .map(|t| {
                    let mut data = vec![];
                    for w in t.split_whitespace().take(max - 2) {
                        let mut v = vec![0f32; 26];
                        for c in w.to_lowercase().bytes().filter(u8::is_ascii_lowercase) {
                            v[(c - b'a') as usize] += 1.0;
                        }
                        data.extend(v);
                    }
                    TokenVectors::normalized(26, data)
                })
                .collect())
        }
    }

    #[test]
    fn the_critic_scores_pairs_in_order_encodes_each_text_once_and_maps_monotonically() {
        let emb = Arc::new(Letters {
            calls: Mutex::new(vec![]),
        });
        let cal = Calibration { a: 12.0, b: -9.0 };
        let c = LateInteractionCritic::new(emb.clone(), cal, cal);
        assert!(c.reads_heading());
        let q = "bridge opened when";
        let pairs = [
            (q, "the bridge opened in 1987"),
            (q, "unrelated text about cats"),
            (q, "the bridge opened in 1987"),
        ];
        let raw = c.raw(Judgement::Relevance, &pairs).unwrap();
        assert_eq!(raw[0], raw[2]);
        assert!(raw[0] > raw[1], "{raw:?}");
        // One pass for the question, one for the two distinct passages.
        assert_eq!(*emb.calls.lock().unwrap(), vec![1, 2]);
        // Cached: nothing encoded again.
        c.raw(Judgement::Relevance, &pairs).unwrap();
        assert_eq!(emb.calls.lock().unwrap().len(), 2);
        // The probabilities keep the raw order (the map is increasing).
        let p = c.score(Judgement::Relevance, &pairs).unwrap();
        assert!(p[0] > p[1]);
        let mut xs: Vec<f32> = (0..=20).map(|i| i as f32 / 20.0).collect();
        xs.sort_by(f32::total_cmp);
        let ps: Vec<f32> = xs.iter().map(|&x| cal.apply(x)).collect();
        assert!(ps.windows(2).all(|w| w[0] < w[1]), "{ps:?}");
        assert!(ps.iter().all(|p| (0.0..=1.0).contains(p)));
    }

    #[test]
    fn an_embedder_without_token_vectors_is_a_clear_error() {
        struct Pooled;
        impl Embedder for Pooled {
            fn dim(&self) -> usize {
                2
            }
            fn model_id(&self) -> &str {
                "pooled"
            }
            fn embed_passages(&self, _: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
                unreachable!()
            }
            fn embed_query(&self, _: &str) -> Result<Vec<f32>, EmbedError> {
                unreachable!()
            }
            fn count_tokens(&self, _: &str) -> usize {
                1
            }
            fn max_tokens(&self) -> usize {
                8
            }
        }
        let cal = Calibration { a: 1.0, b: 0.0 };
        let c = LateInteractionCritic::new(Arc::new(Pooled), cal, cal);
        let e = c.raw(Judgement::Support, &[("a", "b")]).unwrap_err();
        assert!(
            e.to_string()
                .contains("late interaction needs the onnx backend"),
            "{e}"
        );
        assert!(e.to_string().contains("late-interaction"), "{e}");
    }
}
