//! The embedding model as critic: the cosine similarity of the two texts'
//! vectors, calibrated to a probability. For support, a claim is compared
//! with each sentence of the passage as well as with the whole passage and
//! the best match counts, because one sentence of a long passage is what
//! supports a claim and the whole passage's vector dilutes it.

use crate::sentences;
use cairn_core::{Calibration, Critic, CriticError, Embedder, Judgement};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Vectors kept between calls (questions and passages recur: grading,
/// refining and checking an answer look at the same passages).
const CACHE_ENTRIES: usize = 8192;

/// Vectors by (embedded as a query, text).
type VectorCache = HashMap<(bool, String), Arc<Vec<f32>>>;

/// The embedding model as critic.
pub struct EmbeddingCritic {
    embedder: Arc<dyn Embedder>,
    relevance: Calibration,
    support: Calibration,
    cache: Mutex<VectorCache>,
}

impl std::fmt::Debug for EmbeddingCritic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingCritic")
            .field("model", &self.embedder.model_id())
            .field("relevance", &self.relevance)
            .field("support", &self.support)
            .finish()
    }
}

impl EmbeddingCritic {
    pub fn new(
        embedder: Arc<dyn Embedder>,
        relevance: Calibration,
        support: Calibration,
    ) -> EmbeddingCritic {
        EmbeddingCritic {
            embedder,
            relevance,
            support,
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn err(&self, e: impl std::fmt::Display) -> CriticError {
        CriticError {
            critic: "embedding".into(),
            reason: e.to_string(),
        }
    }

    /// Vectors for `texts` (`query`: embedded as a query), from the cache
    /// where possible, the rest in one batch.
    fn vectors(&self, texts: &[&str], query: bool) -> Result<Vec<Arc<Vec<f32>>>, CriticError> {
        let mut out: Vec<Option<Arc<Vec<f32>>>> = {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            texts
                .iter()
                .map(|t| cache.get(&(query, t.to_string())).cloned())
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
        if !missing.is_empty() {
            let vecs = if query {
                missing
                    .iter()
                    .map(|t| self.embedder.embed_query(t))
                    .collect::<Result<Vec<_>, _>>()
            } else {
                self.embedder.embed_passages(&missing)
            }
            .map_err(|e| self.err(e))?;
            let vecs: Vec<Arc<Vec<f32>>> = vecs.into_iter().map(Arc::new).collect();
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() + vecs.len() > CACHE_ENTRIES {
                cache.clear();
            }
            for (t, v) in missing.iter().zip(&vecs) {
                cache.insert((query, t.clone()), v.clone());
            }
            for (slot, t) in out.iter_mut().zip(texts) {
                if slot.is_none() {
                    *slot = Some(vecs[index[t]].clone());
                }
            }
        }
        Ok(out.into_iter().map(|v| v.expect("filled")).collect())
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    // The embedder returns unit-length vectors.
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

impl Critic for EmbeddingCritic {
    fn name(&self) -> &str {
        "embedding"
    }

    fn raw(
        &self,
        judgement: Judgement,
        pairs: &[(&str, &str)],
    ) -> std::result::Result<Vec<f32>, CriticError> {
        if pairs.is_empty() {
            return Ok(vec![]);
        }
        let texts: Vec<&str> = pairs.iter().map(|p| p.0).collect();
        match judgement {
            Judgement::Relevance => {
                let q = self.vectors(&texts, true)?;
                let passages: Vec<&str> = pairs.iter().map(|p| p.1).collect();
                let p = self.vectors(&passages, false)?;
                Ok(q.iter().zip(&p).map(|(a, b)| cosine(a, b)).collect())
            }
            Judgement::Support => {
                let claims = self.vectors(&texts, false)?;
                // Every passage and each of its sentences, embedded once.
                let mut parts: Vec<&str> = Vec::new();
                let mut spans = Vec::with_capacity(pairs.len());
                for (_, passage) in pairs {
                    let start = parts.len();
                    parts.push(passage);
                    let sents = sentences::split_str(passage);
                    if sents.len() > 1 {
                        parts.extend(sents);
                    }
                    spans.push(start..parts.len());
                }
                let vecs = self.vectors(&parts, false)?;
                Ok(claims
                    .iter()
                    .zip(spans)
                    .map(|(c, span)| {
                        vecs[span]
                            .iter()
                            .map(|v| cosine(c, v))
                            .fold(f32::NEG_INFINITY, f32::max)
                    })
                    .collect())
            }
        }
    }

    fn calibration(&self, judgement: Judgement) -> Calibration {
        match judgement {
            Judgement::Relevance => self.relevance,
            Judgement::Support => self.support,
        }
    }
}
