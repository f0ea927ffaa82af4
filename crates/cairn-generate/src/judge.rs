//! The generator as judge (`critic.kind = "llm"`): the model is asked
//! whether a passage answers a question, or supports a claim, and the raw
//! score is the log-odds of its first reply token, log P(Yes) − log P(No),
//! read from llama.cpp's logits or from a server's `logprobs`
//! ([`Generator::judge`]). No text is generated, so one pair costs one
//! prompt evaluation.

use crate::{ChatMessage, GenerateError, Generator};
use cairn_core::{Calibration, Critic, CriticError, Judgement};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

/// The instructions of every judgement.
const JUDGE_SYSTEM: &str =
    "You check documents. Read the passage, then answer the question about it with Yes or No only.";

/// Passage characters shown to the judge (about 400 tokens): enough for a
/// chunk, and it keeps one judgement to one short prompt.
const MAX_PASSAGE_CHARS: usize = 1600;

/// Scores kept between calls: grading, refining and checking look at the
/// same pairs.
const CACHE_ENTRIES: usize = 16384;

/// The messages that ask the judge about one pair.
pub fn judge_messages(judgement: Judgement, text: &str, passage: &str) -> Vec<ChatMessage> {
    let passage = clip(passage.trim(), MAX_PASSAGE_CHARS);
    let ask = match judgement {
        Judgement::Relevance => format!(
            "Passage:\n{passage}\n\nQuestion: {}\n\nDoes the passage answer the question? Reply Yes or No.",
            text.trim()
        ),
        Judgement::Support => format!(
            "Passage:\n{passage}\n\nClaim: {}\n\nDoes the passage state or directly support the claim? Reply Yes or No.",
            text.trim()
        ),
    };
    vec![ChatMessage::system(JUDGE_SYSTEM), ChatMessage::user(ask)]
}

/// log(Σ exp(x)), computed stably (−∞ for no values or only −∞): a
/// log-softmax normaliser, or an option's probability over its spellings.
pub(crate) fn log_sum_exp(xs: &[f32]) -> f32 {
    let m = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if m == f32::NEG_INFINITY {
        return m;
    }
    m + xs.iter().map(|&x| (x - m).exp()).sum::<f32>().ln()
}

/// The first `max` bytes of `s`, cut at a character boundary.
fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A generator judging (text, passage) pairs.
pub struct GeneratorCritic {
    generator: Arc<dyn Generator>,
    relevance: Calibration,
    support: Calibration,
    cache: Mutex<HashMap<u64, f32>>,
}

impl std::fmt::Debug for GeneratorCritic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratorCritic")
            .field("model", &self.generator.model_name())
            .field("relevance", &self.relevance)
            .field("support", &self.support)
            .finish()
    }
}

impl GeneratorCritic {
    pub fn new(
        generator: Arc<dyn Generator>,
        relevance: Calibration,
        support: Calibration,
    ) -> GeneratorCritic {
        GeneratorCritic {
            generator,
            relevance,
            support,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Check once, before answering, that the generator can judge at all
    /// (a server without logprobs fails here, not in the middle of an
    /// answer).
    pub fn probe(&self) -> Result<(), GenerateError> {
        self.generator
            .judge(
                &judge_messages(Judgement::Support, "The sky is blue.", "The sky is blue."),
                &["Yes", "No"],
            )
            .map(|_| ())
    }

    fn key(judgement: Judgement, text: &str, passage: &str) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (judgement == Judgement::Relevance).hash(&mut h);
        text.hash(&mut h);
        passage.hash(&mut h);
        h.finish()
    }
}

impl Critic for GeneratorCritic {
    fn name(&self) -> &str {
        "llm"
    }

    fn raw(&self, judgement: Judgement, pairs: &[(&str, &str)]) -> Result<Vec<f32>, CriticError> {
        let keys: Vec<u64> = pairs
            .iter()
            .map(|(t, p)| Self::key(judgement, t, p))
            .collect();
        let mut out: Vec<Option<f32>> = {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            keys.iter().map(|k| cache.get(k).copied()).collect()
        };
        // The pairs not judged before, each once, in one call.
        let mut missing: Vec<usize> = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            if out[i].is_none() && !missing.iter().any(|&m| keys[m] == *k) {
                missing.push(i);
            }
        }
        if !missing.is_empty() {
            let prompts: Vec<Vec<ChatMessage>> = missing
                .iter()
                .map(|&i| judge_messages(judgement, pairs[i].0, pairs[i].1))
                .collect();
            let lps = self
                .generator
                .judge_many(&prompts, &["Yes", "No"])
                .map_err(|e| CriticError {
                    critic: "llm".into(),
                    reason: e.to_string(),
                })?;
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() + missing.len() > CACHE_ENTRIES {
                cache.clear();
            }
            for (&i, lp) in missing.iter().zip(lps) {
                cache.insert(keys[i], lp[0] - lp[1]);
            }
            for (slot, k) in out.iter_mut().zip(&keys) {
                if slot.is_none() {
                    *slot = cache.get(k).copied();
                }
            }
        }
        Ok(out.into_iter().map(|r| r.unwrap_or(f32::NAN)).collect())
    }

    fn calibration(&self, judgement: Judgement) -> Calibration {
        match judgement {
            Judgement::Relevance => self.relevance,
            Judgement::Support => self.support,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Generation, Result, Sampling, TokenSink};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A judge whose answer depends on whether the passage contains the
    /// text's last word: a rule the test can predict, through the real
    /// prompt.
    struct WordJudge {
        calls: AtomicUsize,
    }

    impl Generator for WordJudge {
        fn model_name(&self) -> &str {
            "word-judge"
        }
        fn context_window(&self) -> usize {
            2048
        }
        fn count_tokens(&self, text: &str) -> Result<usize> {
            Ok(text.len() / 4)
        }
        fn generate(
            &self,
            _: &[ChatMessage],
            _: &Sampling,
            _: &mut dyn TokenSink,
        ) -> Result<Generation> {
            unreachable!("a judge does not generate")
        }
        fn judge(&self, messages: &[ChatMessage], options: &[&str]) -> Result<Vec<f32>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            assert_eq!(options, ["Yes", "No"]);
            let user = &messages[1].content;
            let passage = user
                .strip_prefix("Passage:\n")
                .and_then(|r| r.split("\n\n").next())
                .unwrap();
            let line = user
                .lines()
                .find(|l| l.starts_with("Claim: ") || l.starts_with("Question: "))
                .unwrap();
            let word = line
                .split_whitespace()
                .last()
                .unwrap()
                .trim_end_matches(['.', '?']);
            Ok(if passage.contains(word) {
                vec![-0.1, -2.4]
            } else {
                vec![-3.0, -0.05]
            })
        }
    }

    #[test]
    fn raw_scores_are_log_odds_calibrated_and_cached() {
        let g = Arc::new(WordJudge {
            calls: AtomicUsize::new(0),
        });
        let critic = GeneratorCritic::new(
            g.clone(),
            Calibration { a: 1.0, b: 0.0 },
            Calibration { a: 2.0, b: -1.0 },
        );
        let pairs = [
            ("Tom is nine.", "Tom is nine years old."),
            ("Tom is blue.", "Tom is nine years old."),
        ];
        let raw = critic.raw(Judgement::Support, &pairs).unwrap();
        assert!((raw[0] - 2.3).abs() < 1e-6, "{raw:?}");
        assert!((raw[1] + 2.95).abs() < 1e-6, "{raw:?}");
        let p = critic.score(Judgement::Support, &pairs).unwrap();
        let want = 1.0 / (1.0 + (-(2.0 * 2.3 - 1.0f32)).exp());
        assert!((p[0] - want).abs() < 1e-6);
        assert!(p[1] < 0.01);
        // The second call came from the cache.
        assert_eq!(g.calls.load(Ordering::SeqCst), 2);
        // Relevance is another judgement, not a cache hit.
        critic.raw(Judgement::Relevance, &pairs[..1]).unwrap();
        assert_eq!(g.calls.load(Ordering::SeqCst), 3);
        assert_eq!(critic.name(), "llm");
    }

    #[test]
    fn long_passages_are_clipped_at_a_character_boundary() {
        let long = "é".repeat(MAX_PASSAGE_CHARS);
        let m = judge_messages(Judgement::Relevance, "q?", &long);
        assert!(m[1].content.len() < MAX_PASSAGE_CHARS + 200);
        assert!(m[1].content.contains("Question: q?"));
    }

    #[test]
    fn a_generator_without_probabilities_names_the_setting() {
        struct Mute;
        impl Generator for Mute {
            fn model_name(&self) -> &str {
                "mute"
            }
            fn context_window(&self) -> usize {
                2048
            }
            fn count_tokens(&self, _: &str) -> Result<usize> {
                Ok(1)
            }
            fn generate(
                &self,
                _: &[ChatMessage],
                _: &Sampling,
                _: &mut dyn TokenSink,
            ) -> Result<Generation> {
                unreachable!()
            }
        }
        let c = GeneratorCritic::new(
            Arc::new(Mute),
            Calibration { a: 1.0, b: 0.0 },
            Calibration { a: 1.0, b: 0.0 },
        );
        let e = c.probe().unwrap_err().to_string();
        assert!(e.contains("critic.kind"), "{e}");
        let e = c
            .raw(Judgement::Support, &[("a", "b")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("llm critic") && e.contains("critic.kind"), "{e}");
    }
}
