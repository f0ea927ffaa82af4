//! Cited answers to fine-tune the generator on (`cairn train generator`):
//! the exact prompt an answer is generated from, and an answer in the form
//! the pipeline wants, short prose whose sentences end with their source's
//! marker.
//!
//! - **From synthetic questions** (`cairn train data`): the question's
//!   passages are retrieved as `cairn ask` retrieves them (with `within`
//!   above their number, the question's own passage takes the last place
//!   when the search ranks it lower, among its first `within`) and
//!   numbered as its prompt numbers them; the critic picks the sources' best sentences
//!   (the extractive answer). The example is kept only when the best one is
//!   in the source holding the question's own passage: the critic's choice
//!   and the question's origin agree. Its sentences from that source, at
//!   most `sentences`, each with the source's marker, are the answer.
//! - **From up-rated answers** (the feedback log): the prompt is rebuilt
//!   from the passages the answer was given; the answer is kept, word for
//!   word, when each of its citations still names the passage it named.

use crate::{Engine, Result};
use cairn_core::{ChunkId, Critic, Judgement, Scored};
use cairn_critic::extract::{self, ExtractOptions};
use cairn_generate::prompt::{self, Instructions};
use cairn_generate::{ChatMessage, Flow, Generator, Sampling};
use cairn_store::Rating;
use serde::Serialize;

/// One example: the prompt's messages and the answer to learn.
#[derive(Debug, Clone, Serialize)]
pub struct CitedExample {
    pub question: String,
    pub messages: Vec<ChatMessage>,
    pub answer: String,
    /// `synthetic` or `feedback`.
    pub origin: &'static str,
    /// The document of the passage the answer cites first.
    pub doc: String,
    /// The markers (1-based) of the sources an answer to it should cite:
    /// the question's own passage, or those the up-rated answer cited.
    pub gold: Vec<usize>,
}

/// Why a question gave no example.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// Its passage is not among the search's first `within` (or did not
    /// fit the prompt).
    NotRetrieved,
    /// The critic's best sentence is in another source, or none qualifies.
    NotVerified,
}

/// Markers after sentences: "… is nine [1]." (before the full stop, as
/// the prompt's worked example writes them).
pub fn cite_sentence(sentence: &str, n: usize) -> String {
    let one: String = sentence.split_whitespace().collect::<Vec<_>>().join(" ");
    let body = one.trim_end_matches(['.', ':', ';', ',']);
    format!("{body} [{n}].")
}

/// How a synthetic question's example is built.
#[derive(Debug, Clone, Copy)]
pub struct CitedOptions {
    /// Passages in the prompt.
    pub passages: usize,
    /// The question's passage must be among the search's first this many.
    pub within: usize,
    /// Tokens kept free for the answer when the prompt is built.
    pub answer_tokens: usize,
    /// The most sentences in the answer.
    pub sentences: usize,
}

/// The example for a synthetic `question` whose passage is `positive`:
/// `passages` passages retrieved (its passage among the first `within`),
/// the prompt built for an answer of `answer_tokens`, at most `sentences`
/// sentences.
pub fn synthetic_example(
    engine: &Engine,
    generator: &dyn Generator,
    question: &str,
    positive: ChunkId,
    o: &CitedOptions,
) -> Result<std::result::Result<CitedExample, Skipped>> {
    let CitedOptions {
        passages,
        within,
        answer_tokens,
        sentences,
    } = *o;
    let mode = engine.config().search.mode;
    let passages = passages.max(1);
    let mut hits = engine.search(question, passages.max(within), mode)?;
    let Some(at) = hits.iter().position(|h| h.chunk == positive) else {
        return Ok(Err(Skipped::NotRetrieved));
    };
    if at >= passages {
        // Ranked lower: it takes the last place in the prompt.
        hits.swap(passages - 1, at);
    }
    hits.truncate(passages);
    let sources = prompt::merge_overlapping(&hits);
    let p = prompt::build_from(
        generator,
        &[],
        question,
        &sources,
        answer_tokens,
        Instructions::Normal,
    )?;
    let Some(gold) = p.sources.iter().position(|s| s.chunks.contains(&positive)) else {
        return Ok(Err(Skipped::NotRetrieved));
    };
    let critic: &dyn Critic = engine.critic();
    let texts: Vec<&str> = p.sources.iter().map(|s| s.text.as_str()).collect();
    let pairs: Vec<(&str, &str)> = texts.iter().map(|t| (question, *t)).collect();
    let relevance = critic
        .score(Judgement::Relevance, &pairs)
        .map_err(cairn_critic::CriticError::from)?;
    let ex = extract::extract(
        question,
        &texts,
        &relevance,
        critic,
        &ExtractOptions {
            max_sentences: sentences.max(1) * 3,
            ..ExtractOptions::default()
        },
    )?;
    match ex.first() {
        Some(best) if best.source == gold + 1 => {}
        _ => return Ok(Err(Skipped::NotVerified)),
    }
    let answer = ex
        .iter()
        .filter(|e| e.source == gold + 1)
        .take(sentences.max(1))
        .map(|e| cite_sentence(&e.text, gold + 1))
        .collect::<Vec<_>>()
        .join(" ");
    Ok(Ok(CitedExample {
        question: question.to_string(),
        messages: p.messages,
        answer,
        origin: "synthetic",
        doc: p.sources[gold].doc.clone(),
        gold: vec![gold + 1],
    }))
}

/// Examples from the answers users rated up, newest rating per answer:
/// each with the prompt rebuilt from the passages it was given, kept when
/// every citation of the answer names the same passage again. Returns the
/// examples and how many up-rated answers were left out.
pub fn feedback_cited_examples(
    engine: &Engine,
    generator: &dyn Generator,
    answer_tokens: usize,
) -> Result<(Vec<CitedExample>, usize)> {
    let rated = crate::feedback::rated_answers(engine)?;
    let mut out = Vec::new();
    let mut skipped = 0;
    for r in rated.iter().filter(|r| r.rating == Rating::Up) {
        let a = &r.answer;
        let ranked: Vec<Scored> = a
            .retrieved
            .iter()
            .enumerate()
            .map(|(i, &id)| Scored {
                id,
                score: a.scores.get(i).copied().unwrap_or(0.0),
            })
            .collect();
        let hits = engine.hits(&ranked)?;
        if a.citations.is_empty() || hits.len() != ranked.len() {
            skipped += 1;
            continue;
        }
        let sources = prompt::merge_overlapping(&hits);
        let p = prompt::build_from(
            generator,
            &[],
            &a.question,
            &sources,
            answer_tokens,
            Instructions::Normal,
        )?;
        let same = a.citations.iter().all(|(n, id)| {
            p.sources
                .get(n.wrapping_sub(1))
                .is_some_and(|s| s.chunks.contains(id))
        });
        if !same {
            skipped += 1;
            continue;
        }
        let first = a.citations[0].0;
        out.push(CitedExample {
            question: a.question.clone(),
            messages: p.messages,
            answer: a.answer.trim().to_string(),
            origin: "feedback",
            doc: p.sources[first - 1].doc.clone(),
            gold: {
                let mut g: Vec<usize> = a.citations.iter().map(|(n, _)| *n).collect();
                g.sort_unstable();
                g.dedup();
                g
            },
        });
    }
    Ok((out, skipped))
}

/// How a generator answers held-out examples: see [`score_answers`].
#[derive(Debug, Clone, Serialize)]
pub struct AnswerScore {
    /// Examples answered.
    pub examples: usize,
    /// Share of answers that cite one of the example's gold sources.
    pub cited: f64,
    /// Mean token F1 of the answers (markers left out) against the
    /// examples' answers.
    pub f1: f64,
    /// The answers, in the examples' order.
    pub answers: Vec<String>,
}

/// Answers each example's prompt with `generator` (greedy or as `sampling`
/// says; with its adapter, if it names one) and grades the answers: the
/// share that cite one of the example's gold sources, and their token F1
/// against the example's answer.
pub fn score_answers(
    generator: &dyn Generator,
    examples: &[CitedExample],
    sampling: &Sampling,
    progress: &dyn cairn_core::Progress,
) -> Result<AnswerScore> {
    let (mut cited, mut f1) = (0usize, 0f64);
    let mut answers = Vec::with_capacity(examples.len());
    for e in examples {
        let mut sink = |_: &str| Flow::Continue;
        let g = generator.generate(&e.messages, sampling, &mut sink)?;
        let (markers, plain) = cairn_critic::support::strip_markers(&g.text);
        if markers.iter().any(|m| e.gold.contains(m)) {
            cited += 1;
        }
        let (_, reference) = cairn_critic::support::strip_markers(&e.answer);
        f1 += token_f1(&plain, &reference);
        answers.push(g.text.trim().to_string());
        progress.advance(1);
    }
    let n = examples.len().max(1) as f64;
    Ok(AnswerScore {
        examples: examples.len(),
        cited: cited as f64 / n,
        f1: f1 / n,
        answers,
    })
}

/// Token F1 of two texts (lower-cased words, as bags).
fn token_f1(a: &str, b: &str) -> f64 {
    let words = |s: &str| -> Vec<String> {
        s.split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect()
    };
    let (a, b) = (words(a), words(b));
    if a.is_empty() || b.is_empty() {
        return if a.is_empty() && b.is_empty() {
            1.0
        } else {
            0.0
        };
    }
    let mut counts = std::collections::HashMap::<&str, i64>::new();
    for w in &b {
        *counts.entry(w).or_default() += 1;
    }
    let mut common = 0usize;
    for w in &a {
        if let Some(c) = counts.get_mut(w.as_str()) {
            if *c > 0 {
                *c -= 1;
                common += 1;
            }
        }
    }
    if common == 0 {
        return 0.0;
    }
    let p = common as f64 / a.len() as f64;
    let r = common as f64 / b.len() as f64;
    2.0 * p * r / (p + r)
}

#[cfg(test)]
mod tests {
    use super::{cite_sentence, token_f1};

    #[test]
    fn token_f1_counts_shared_words_once_each() {
        assert_eq!(token_f1("the cat sat", "the cat sat"), 1.0);
        assert_eq!(token_f1("dog", "the cat"), 0.0);
        // "the the" against "the cat": one shared word, p = 1/2, r = 1/2.
        assert!((token_f1("The the", "the cat.") - 0.5).abs() < 1e-9);
        assert_eq!(token_f1("", ""), 1.0);
        assert_eq!(token_f1("x", ""), 0.0);
    }

    #[test]
    fn markers_go_before_the_full_stop() {
        assert_eq!(cite_sentence("Tom is nine.", 1), "Tom is nine [1].");
        assert_eq!(cite_sentence("  Run\n  this:", 2), "Run this [2].");
        assert_eq!(cite_sentence("No stop", 3), "No stop [3].");
    }
}
