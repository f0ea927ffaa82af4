//! Extractive answers: the sentences of the retrieved passages that best
//! answer the question, verbatim, each with the passage it came from and
//! its exact span. No generator is involved, so this answers in the time of
//! one batch of embeddings, and says nothing that the documents do not.

use crate::sentences;
use crate::Result;
use cairn_core::{Critic, Judgement};
use serde::Serialize;
use std::collections::HashSet;

/// A sentence taken from a passage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Extract {
    /// The passage's number (1-based, as in the sources list).
    pub source: usize,
    /// The sentence, exactly as in the passage.
    pub text: String,
    /// Character offsets of the sentence in the passage.
    pub start: usize,
    pub end: usize,
    /// The blended score it was chosen by.
    pub score: f32,
    /// Its parts: the sentence's own relevance probability, its passage's,
    /// and the share of the question's keywords it contains.
    pub sentence: f32,
    pub passage: f32,
    pub keywords: f32,
}

/// How many sentences, and how relevant they must be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExtractOptions {
    /// The most sentences in an answer.
    pub max_sentences: usize,
    /// Weight of the passage's relevance in a sentence's score (the rest is
    /// the sentence's own): a sentence read alone loses the context that
    /// says what it is about.
    pub passage_weight: f32,
    /// Weight of the share of the question's keywords that the sentence
    /// contains (a sentence that names what was asked about usually answers
    /// it; chosen on the Python docs set, EVALUATION.md).
    pub keyword_weight: f32,
    /// Sentences scoring below this are left out; none left means no answer.
    pub min_score: f32,
}

impl Default for ExtractOptions {
    fn default() -> Self {
        ExtractOptions {
            max_sentences: 5,
            passage_weight: 0.5,
            keyword_weight: 1.0,
            min_score: 0.0,
        }
    }
}

/// Candidate sentences of a passage: byte ranges, at least three words,
/// at most 800 bytes. A sentence that introduces what follows (it ends in
/// `:`, as before a command or a list) takes the next sentence with it.
fn candidates(passage: &str) -> Vec<std::ops::Range<usize>> {
    let split = sentences::split(passage);
    let mut out: Vec<std::ops::Range<usize>> = Vec::with_capacity(split.len());
    for (i, r) in split.iter().enumerate() {
        if passage[r.clone()].ends_with(':') {
            if let Some(next) = split.get(i + 1) {
                out.push(r.start..next.end);
                continue;
            }
        }
        out.push(r.clone());
    }
    out.into_iter()
        .filter(|r| {
            let s = &passage[r.clone()];
            s.len() <= 800 && s.split_whitespace().count() >= 3
        })
        .collect()
}

/// The best sentences of `passages` for `question`, best first. `passage_relevance`
/// holds the critic's relevance probability of each whole passage (as graded
/// before); sentences are scored with the critic's relevance judgement.
pub fn extract(
    question: &str,
    passages: &[&str],
    passage_relevance: &[f32],
    critic: &dyn Critic,
    opts: &ExtractOptions,
) -> Result<Vec<Extract>> {
    let mut cands: Vec<(usize, std::ops::Range<usize>)> = Vec::new();
    let mut seen = HashSet::new();
    for (i, p) in passages.iter().enumerate() {
        for r in candidates(p) {
            // Overlapping chunks repeat sentences: keep the first.
            let key: String = p[r.clone()]
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase();
            if seen.insert(key) {
                cands.push((i, r));
            }
        }
    }
    let pairs: Vec<(&str, &str)> = cands
        .iter()
        .map(|(i, r)| (question, &passages[*i][r.clone()]))
        .collect();
    let probs = critic.score(Judgement::Relevance, &pairs)?;
    let w = opts.passage_weight.clamp(0.0, 1.0);
    let kw = crate::crag::keyword_set(question);
    let mut scored: Vec<Extract> = cands
        .into_iter()
        .zip(probs)
        .map(|((i, r), p)| {
            let passage = passages[i];
            let context = passage_relevance.get(i).copied().unwrap_or(p);
            let start = passage[..r.start].chars().count();
            let text = passage[r.clone()].to_string();
            let keywords = crate::crag::share_found(&kw, &[text.as_str()]);
            Extract {
                source: i + 1,
                start,
                end: start + text.chars().count(),
                text,
                score: w * context + (1.0 - w) * p + opts.keyword_weight * keywords,
                sentence: p,
                passage: context,
                keywords,
            }
        })
        .filter(|e| e.score >= opts.min_score)
        .collect();
    scored.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.source.cmp(&b.source))
            .then(a.start.cmp(&b.start))
    });
    scored.truncate(opts.max_sentences);
    Ok(scored)
}

/// The extracts as an answer: one sentence a line, each with its marker.
pub fn render(extracts: &[Extract]) -> String {
    extracts
        .iter()
        .map(|e| {
            let one_line: String = e.text.split_whitespace().collect::<Vec<_>>().join(" ");
            format!("{one_line} [{}]", e.source)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::WordOverlap;
    use cairn_core::Calibration;

    const OVERLAP: WordOverlap = WordOverlap(Calibration { a: 1.0, b: 0.0 });

    #[test]
    fn picks_verbatim_sentences_with_exact_offsets() {
        let passages = [
            "Ünïcode first. The join function ignores previous segments when a segment is absolute. Other text here.",
            "Unrelated words only here. Nothing about it at all.",
            "Ünïcode first. The join function ignores previous segments when a segment is absolute. Repeated.",
        ];
        let q = "Which segments does join ignore when absolute?";
        let ex = extract(
            q,
            &passages,
            &[0.9, 0.1, 0.9],
            &OVERLAP,
            &ExtractOptions::default(),
        )
        .unwrap();
        assert_eq!(ex[0].source, 1);
        assert!(ex[0].text.starts_with("The join function ignores"));
        // Offsets are characters into the passage, and the text is that slice.
        let chars: Vec<char> = passages[0].chars().collect();
        let slice: String = chars[ex[0].start..ex[0].end].iter().collect();
        assert_eq!(slice, ex[0].text);
        // The repeat from the overlapping third passage is not offered again.
        assert_eq!(ex.iter().filter(|e| e.text == ex[0].text).count(), 1);
        assert!(ex.len() <= 5);
        assert!(render(&ex).starts_with(
            "The join function ignores previous segments when a segment is absolute. [1]"
        ));
    }

    #[test]
    fn an_introduction_takes_what_it_introduces() {
        let p = "To make one, run the module:\n\npython -m venv env\n\nThen activate it.";
        let c: Vec<&str> = candidates(p).into_iter().map(|r| &p[r]).collect();
        assert_eq!(
            c,
            [
                "To make one, run the module:\n\npython -m venv env",
                "python -m venv env",
                "Then activate it."
            ]
        );
    }

    #[test]
    fn min_score_can_leave_nothing() {
        let ex = extract(
            "zebra migration patterns?",
            &["The join function ignores segments."],
            &[0.0],
            &OVERLAP,
            &ExtractOptions {
                min_score: 0.3,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(ex.is_empty());
    }
}
