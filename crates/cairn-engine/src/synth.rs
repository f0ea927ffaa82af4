//! Training data from the collection itself, before anyone has rated an
//! answer: questions for sampled passages, each passage the question's
//! positive, and hard negatives (passages of other documents that the
//! search ranks high for the question).
//!
//! Two kinds of questions:
//! - **heading** questions, from the passage's heading path ("What is Class
//!   Objects in A First Look at Classes?"), with no model;
//! - **generated** questions, written by the generator from the passage's
//!   text (when one is given).
//!
//! A question is kept only if the search finds its passage again among the
//! top `within` (round-trip filtering): a question its own passage does not
//! answer well enough to be found is noise. The documents are split into a
//! training part and a held-out part, by document, so that nothing learned
//! from a document is scored on it.

use crate::{Engine, EngineError, Result};
use cairn_core::{ChunkId, Progress, SearchMode, StoredChunk};
use cairn_generate::{ChatMessage, Flow, Generator, Sampling};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};

/// What [`synthesize`] samples and keeps.
#[derive(Debug, Clone)]
pub struct SynthOptions {
    /// Passages sampled per document.
    pub per_document: usize,
    /// Share of the documents held out (0 to 1, exclusive of 1).
    pub held_out: f64,
    /// Hard negatives per question (passages of other documents).
    pub negatives: usize,
    /// A question is kept when its passage is among the search's top this many.
    pub within: usize,
    /// The search that checks the round trip and finds the negatives.
    pub mode: SearchMode,
    /// Sampling, templates and the split follow from it.
    pub seed: u64,
    /// Passages shorter than this (characters) are not sampled.
    pub min_chars: usize,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions {
            per_document: 2,
            held_out: 0.2,
            negatives: 4,
            within: 10,
            mode: SearchMode::Hybrid,
            seed: 0,
            min_chars: 200,
        }
    }
}

impl SynthOptions {
    /// Every field in range, or an error naming it.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(EngineError::Invalid(m));
        if self.per_document == 0 {
            return bad("per_document (--per-doc) must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.held_out) || self.held_out.is_nan() {
            return bad(format!(
                "held_out (--held-out) must be at least 0 and below 1, not {}",
                self.held_out
            ));
        }
        if self.negatives == 0 {
            return bad("negatives (--negatives) must be at least 1".into());
        }
        if self.within == 0 {
            return bad("within (--within) must be at least 1".into());
        }
        Ok(())
    }
}

/// How a question was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QuestionKind {
    Heading,
    Generated,
    /// A user's question whose answer was rated up (`cairn improve` adds
    /// them; see [`crate::feedback_examples`]).
    Feedback,
}

/// Which part of the data an example belongs to (by its document).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train,
    HeldOut,
}

/// One training example: `query`, `positive`, `negatives` are the shape
/// sentence-transformers and `cairn feedback export --format retrieval`
/// use; the rest says where it came from.
#[derive(Debug, Clone, Serialize)]
pub struct SynthExample {
    pub query: String,
    pub positive: Vec<String>,
    pub negatives: Vec<String>,
    pub kind: QuestionKind,
    pub split: Split,
    /// The positive passage's document and chunk id.
    pub doc: String,
    pub chunk: ChunkId,
    pub heading: String,
    /// The positive's rank in the round-trip search (1 = first).
    pub rank: usize,
    pub negative_chunks: Vec<ChunkId>,
    pub negative_docs: Vec<String>,
}

/// Counts of what [`synthesize`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SynthReport {
    pub documents: usize,
    pub held_out_documents: usize,
    /// Passages sampled (long enough, `per_document` per document at most).
    pub sampled: usize,
    /// Questions written, by kind.
    pub heading_questions: usize,
    pub generated_questions: usize,
    /// Generator replies that were not a usable question.
    pub generated_unusable: usize,
    /// Questions dropped: the same wording twice; the passage not within
    /// the top `within`; no passage of another document to be a negative.
    pub duplicates: usize,
    pub not_found_again: usize,
    pub no_negatives: usize,
    pub kept: usize,
    pub train: usize,
    pub held_out: usize,
    /// Kept questions by kind.
    pub kept_heading: usize,
    pub kept_generated: usize,
    pub generator: Option<String>,
}

/// Headings that name no topic a question could be about.
const GENERIC_HEADINGS: &[&str] = &[
    "contents",
    "table of contents",
    "navigation",
    "index",
    "footnotes",
    "notes",
    "see also",
    "introduction",
    "overview",
    "summary",
    "references",
    "previous topic",
    "next topic",
    "this page",
    "quick search",
];

/// A heading segment as a topic: section numbers ("9.3.2."), pilcrows and
/// surrounding punctuation removed. `None` when nothing a question could be
/// about is left.
pub fn topic(segment: &str) -> Option<String> {
    let s = segment.trim().trim_end_matches(['¶', '#', ':']).trim();
    let s = s.trim_start_matches(|c: char| c.is_ascii_digit() || c == '.' || c == ' ');
    let s = s.trim();
    let letters = s.chars().filter(|c| c.is_alphabetic()).count();
    if letters < 3 || s.chars().count() > 80 {
        return None;
    }
    if GENERIC_HEADINGS.contains(&s.to_lowercase().as_str()) {
        return None;
    }
    Some(s.to_string())
}

/// A question from a heading path (`Title > Section > …`), the template
/// picked by `pick`; `None` when the path names no topic.
pub fn heading_question(heading: &str, pick: u64) -> Option<String> {
    let parts: Vec<String> = heading.split(" > ").filter_map(topic).collect();
    let last = parts.last()?;
    // A heading that already asks ("How do I …?", "Why …") is the question.
    let lower = last.to_lowercase();
    if last.ends_with('?')
        || [
            "how ", "why ", "what ", "when ", "which ", "can ", "should ",
        ]
        .iter()
        .any(|w| lower.starts_with(w))
    {
        let q = last.trim_end_matches('?');
        return Some(format!("{q}?"));
    }
    let parent = parts
        .iter()
        .rev()
        .nth(1)
        .filter(|p| !p.eq_ignore_ascii_case(last));
    Some(match (pick % 4, parent) {
        (0, _) => format!("What is {last}?"),
        (1, Some(p)) => format!("What does the documentation say about {last} in {p}?"),
        (1, None) => format!("What does the documentation say about {last}?"),
        (2, _) => format!("How do I use {last}?"),
        (_, Some(p)) => format!("{last} ({p})"),
        (_, None) => format!("Explain {last}."),
    })
}

/// The generator's reply as one question, or `None` when it is not one
/// (no question mark, too short or too long, or the passage copied).
pub fn clean_generated(reply: &str, passage: &str) -> Option<String> {
    let line = reply.lines().map(str::trim).find(|l| !l.is_empty())?;
    let mut q = line;
    for prefix in ["Question:", "question:", "Q:", "Q."] {
        if let Some(rest) = q.strip_prefix(prefix) {
            q = rest.trim();
        }
    }
    let q = q
        .trim_start_matches(|c: char| c.is_ascii_digit() || c == '.' || c == ')' || c == '-')
        .trim()
        .trim_matches(['"', '“', '”', '\'', '*', '`'])
        .trim();
    let end = q.find('?')?;
    let q = &q[..=end];
    let words = q.split_whitespace().count();
    if !(4..=40).contains(&words) {
        return None;
    }
    // A copied sentence is not a question about the passage.
    if passage.contains(q.trim_end_matches('?')) && words > 8 {
        return None;
    }
    Some(q.to_string())
}

/// FNV-1a, 64 bits: a stable hash for sampling and splitting (the same
/// data on any machine and any run with the same seed).
fn fnv(seed: u64, parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325 ^ seed.wrapping_mul(0x9E3779B97F4A7C15);
    for p in parts {
        for b in *p {
            h ^= *b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// The held-out documents: the `held_out` share of `docs` (at least one when
/// the share is above 0 and there are two or more documents; never all),
/// chosen by a hash of the seed and the document, so that adding a document
/// moves no other document between the parts.
pub fn held_out_documents(docs: &[String], held_out: f64, seed: u64) -> HashSet<String> {
    if held_out <= 0.0 || docs.len() < 2 {
        return HashSet::new();
    }
    let mut ranked: Vec<(u64, &String)> = docs
        .iter()
        .map(|d| (fnv(seed, &[b"split", d.as_bytes()]), d))
        .collect();
    ranked.sort();
    let n = ((docs.len() as f64 * held_out).round() as usize).clamp(1, docs.len() - 1);
    ranked.into_iter().take(n).map(|(_, d)| d.clone()).collect()
}

/// Up to `per_document` passages of each document, at least `min_chars`
/// long, picked by a hash of the seed and the chunk id; by document, then
/// chunk id.
fn sample(chunks: Vec<StoredChunk>, opts: &SynthOptions) -> BTreeMap<String, Vec<StoredChunk>> {
    let mut by_doc: BTreeMap<String, Vec<StoredChunk>> = BTreeMap::new();
    for c in chunks {
        if c.text.chars().count() >= opts.min_chars {
            by_doc.entry(c.doc.clone()).or_default().push(c);
        }
    }
    for list in by_doc.values_mut() {
        list.sort_by_key(|c| fnv(opts.seed, &[b"sample", &c.id.to_le_bytes()]));
        list.truncate(opts.per_document);
        list.sort_by_key(|c| c.id);
    }
    by_doc
}

/// What a generated question must look like, for generators that enforce
/// a grammar: a question word, then one line ending in a question mark.
const QUESTION_GRAMMAR: &str = r#"root ::= start [^?\n]+ "?"
start ::= "What " | "How " | "Why " | "When " | "Which " | "Where " | "Who " | "Can " | "Does " | "Do " | "Is " | "Are " | "Should "
"#;

/// Ask the generator for one question that `passage` answers: one worked
/// example first (small models copy the form of an answer far better than
/// they follow an instruction), then the passage.
fn generate_question(
    generator: &dyn Generator,
    passage: &StoredChunk,
    seed: u64,
) -> Result<String> {
    let text: String = passage.text.chars().take(1200).collect();
    let ask = |p: &str| format!("Passage:\n{p}\n\nWrite one question that this passage answers.");
    let messages = [
        ChatMessage::system(
            "You write the question a user of the documentation would ask, which the passage answers. Reply with the question only, on one line.",
        ),
        ChatMessage::user(ask(
            "To create a virtual environment, decide upon a directory where you want to place it, and run the venv module as a script with the directory path: python -m venv tutorial-env",
        )),
        ChatMessage::assistant("How do I create a virtual environment?"),
        ChatMessage::user(ask(&text)),
    ];
    let sampling = Sampling {
        temperature: 0.0,
        max_tokens: 48,
        stop: vec!["\n".into()],
        seed: seed as u32,
        grammar: generator
            .supports_grammar()
            .then(|| QUESTION_GRAMMAR.to_string()),
        ..Sampling::default()
    };
    let mut sink = |_: &str| Flow::Continue;
    let g = generator.generate(&messages, &sampling, &mut sink)?;
    Ok(g.text)
}

/// Every live chunk of the collection, then questions, round trips and
/// negatives as [`SynthOptions`] says. Examples come by document, then
/// chunk, heading question before generated.
pub fn synthesize(
    engine: &Engine,
    generator: Option<&dyn Generator>,
    opts: &SynthOptions,
    progress: &dyn Progress,
) -> Result<(Vec<SynthExample>, SynthReport)> {
    opts.check()?;
    let chunks = engine.all_chunks()?;
    if chunks.is_empty() {
        return Err(EngineError::Invalid(format!(
            "collection `{}` has no passages to write questions for: ingest documents first",
            engine.config().collection
        )));
    }
    let docs: Vec<String> = {
        let set: std::collections::BTreeSet<&String> = chunks.iter().map(|c| &c.doc).collect();
        set.into_iter().cloned().collect()
    };
    let held = held_out_documents(&docs, opts.held_out, opts.seed);
    let sampled = sample(chunks, opts);
    let mut report = SynthReport {
        documents: docs.len(),
        held_out_documents: held.len(),
        sampled: sampled.values().map(Vec::len).sum(),
        generator: generator.map(|g| g.model_name().to_string()),
        ..Default::default()
    };
    let per_passage = if generator.is_some() { 2 } else { 1 };
    progress.begin("writing questions", (report.sampled * per_passage) as u64);
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let pool = (opts.within.max(opts.negatives * 3)).max(20);
    for (doc, passages) in &sampled {
        let split = if held.contains(doc) {
            Split::HeldOut
        } else {
            Split::Train
        };
        for p in passages {
            let mut questions = Vec::new();
            let pick = fnv(opts.seed, &[b"template", &p.id.to_le_bytes()]);
            if let Some(q) = heading_question(&p.heading, pick) {
                report.heading_questions += 1;
                questions.push((q, QuestionKind::Heading));
            }
            progress.advance(1);
            if let Some(g) = generator {
                let reply = generate_question(g, p, opts.seed)?;
                match clean_generated(&reply, &p.text) {
                    Some(q) => {
                        report.generated_questions += 1;
                        questions.push((q, QuestionKind::Generated));
                    }
                    None => {
                        tracing::debug!(chunk = p.id, reply, "not a usable question");
                        report.generated_unusable += 1;
                    }
                }
                progress.advance(1);
            }
            for (query, kind) in questions {
                if !seen.insert(query.to_lowercase()) {
                    report.duplicates += 1;
                    continue;
                }
                let hits = engine.search(&query, pool, opts.mode)?;
                let Some(rank) = hits
                    .iter()
                    .position(|h| h.chunk == p.id)
                    .map(|i| i + 1)
                    .filter(|r| *r <= opts.within)
                else {
                    report.not_found_again += 1;
                    continue;
                };
                let negatives: Vec<_> = hits
                    .iter()
                    .filter(|h| h.doc != p.doc)
                    .take(opts.negatives)
                    .collect();
                if negatives.is_empty() {
                    report.no_negatives += 1;
                    continue;
                }
                match kind {
                    QuestionKind::Heading => report.kept_heading += 1,
                    QuestionKind::Generated => report.kept_generated += 1,
                    // (not written here)
                    QuestionKind::Feedback => {}
                }
                match split {
                    Split::Train => report.train += 1,
                    Split::HeldOut => report.held_out += 1,
                }
                report.kept += 1;
                out.push(SynthExample {
                    query,
                    positive: vec![p.text.clone()],
                    negatives: negatives.iter().map(|h| h.text.clone()).collect(),
                    kind,
                    split,
                    doc: p.doc.clone(),
                    chunk: p.id,
                    heading: p.heading.clone(),
                    rank,
                    negative_chunks: negatives.iter().map(|h| h.chunk).collect(),
                    negative_docs: negatives.iter().map(|h| h.doc.clone()).collect(),
                });
            }
        }
    }
    progress.end();
    Ok((out, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_drop_numbers_pilcrows_and_generic_headings() {
        assert_eq!(
            topic("9.3.2. Class Objects¶").as_deref(),
            Some("Class Objects")
        );
        assert_eq!(
            topic("  Data Structures ").as_deref(),
            Some("Data Structures")
        );
        assert_eq!(topic("Table of Contents"), None);
        assert_eq!(topic("1.2."), None);
        assert_eq!(topic("x"), None);
    }

    #[test]
    fn heading_questions_use_the_deepest_topic_and_keep_questions() {
        let h = "9. Classes > 9.3. A First Look at Classes > 9.3.2. Class Objects";
        assert_eq!(heading_question(h, 0).unwrap(), "What is Class Objects?");
        assert_eq!(
            heading_question(h, 1).unwrap(),
            "What does the documentation say about Class Objects in A First Look at Classes?"
        );
        assert_eq!(
            heading_question(h, 2).unwrap(),
            "How do I use Class Objects?"
        );
        assert_eq!(
            heading_question(h, 3).unwrap(),
            "Class Objects (A First Look at Classes)"
        );
        assert_eq!(
            heading_question("FAQ > How do I read a file?", 0).unwrap(),
            "How do I read a file?"
        );
        assert_eq!(heading_question("Contents > Index", 0), None);
        assert_eq!(heading_question("", 0), None);
    }

    #[test]
    fn generated_replies_are_cleaned_or_refused() {
        let passage = "The with statement closes the file when the block ends.";
        assert_eq!(
            clean_generated(
                "Question: \"How do I make sure a file is closed?\"\n",
                passage
            )
            .as_deref(),
            Some("How do I make sure a file is closed?")
        );
        assert_eq!(
            clean_generated("1. What closes the file after a with block? Extra", passage)
                .as_deref(),
            Some("What closes the file after a with block?")
        );
        assert_eq!(clean_generated("The with statement.", passage), None);
        assert_eq!(clean_generated("Why?", passage), None);
        assert_eq!(clean_generated("", passage), None);
        let copied = "Does the with statement close the file when the block ends?";
        let long = "Does the with statement close the file when the block ends? yes";
        assert_eq!(
            clean_generated(long, &format!("x {} y", copied.trim_end_matches('?'))),
            None
        );
    }

    #[test]
    fn the_split_is_by_document_stable_and_never_all_or_nothing() {
        let docs: Vec<String> = (0..20).map(|i| format!("d{i}.md")).collect();
        let a = held_out_documents(&docs, 0.2, 7);
        assert_eq!(a.len(), 4);
        assert_eq!(a, held_out_documents(&docs, 0.2, 7));
        assert_ne!(a, held_out_documents(&docs, 0.2, 8));
        // A new document moves no other one between the parts.
        let mut more = docs.clone();
        more.push("new.md".into());
        let b = held_out_documents(&more, 0.2, 7);
        assert!(a.iter().filter(|d| !b.contains(*d)).count() <= 1);
        assert_eq!(held_out_documents(&docs[..2], 0.01, 7).len(), 1);
        assert_eq!(held_out_documents(&docs[..2], 0.99, 7).len(), 1);
        assert!(held_out_documents(&docs, 0.0, 7).is_empty());
        assert!(held_out_documents(&docs[..1], 0.5, 7).is_empty());
    }

    #[test]
    fn options_out_of_range_are_named() {
        let bad = |f: fn(&mut SynthOptions)| {
            let mut o = SynthOptions::default();
            f(&mut o);
            o.check().unwrap_err().to_string()
        };
        assert!(bad(|o| o.held_out = 1.0).contains("--held-out"));
        assert!(bad(|o| o.held_out = -0.1).contains("--held-out"));
        assert!(bad(|o| o.per_document = 0).contains("--per-doc"));
        assert!(bad(|o| o.negatives = 0).contains("--negatives"));
        assert!(bad(|o| o.within = 0).contains("--within"));
        assert!(SynthOptions::default().check().is_ok());
    }
}
