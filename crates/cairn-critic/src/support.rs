//! Per-sentence support (Self-RAG's check): an answer is split into
//! sentences, each is scored against every source, and gets the sources that
//! support it. A `[n]` marker that points at a source that does not support
//! its sentence is replaced by the one that does; a sentence that no source
//! supports is marked unsupported and keeps no marker.

use crate::sentences;
use crate::Result;
use cairn_core::{Critic, Judgement};
use serde::{Deserialize, Serialize};

/// One sentence of an answer and what supports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SentenceSupport {
    /// The sentence as shown, its markers corrected.
    pub text: String,
    /// Numbers (1-based) of the sources that support it.
    pub citations: Vec<usize>,
    /// The critic's probability that the best source supports it.
    pub support: f32,
    /// Whether a source supports it (`support >= threshold`). Always true
    /// for a line that states nothing (an introduction ending in `:`, a
    /// heading, one or two words), whose `claim` is false.
    pub supported: bool,
    /// False for a line that states nothing.
    pub claim: bool,
    /// A marker of the generated sentence was changed or added.
    pub corrected: bool,
}

/// An answer after the check.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// The answer with every sentence's markers corrected (text between
    /// sentences kept as generated).
    pub answer: String,
    pub sentences: Vec<SentenceSupport>,
}

impl Checked {
    /// Sentences that state something and that no source supports.
    pub fn unsupported(&self) -> usize {
        unsupported(&self.sentences)
    }

    /// The share of claims that are supported (1 when there is none).
    pub fn supported_share(&self) -> f64 {
        supported_share(&self.sentences)
    }
}

/// Of checked sentences: those that state something no source supports.
pub fn unsupported(sentences: &[SentenceSupport]) -> usize {
    sentences.iter().filter(|s| !s.supported).count()
}

/// Of checked sentences: the share of claims that are supported (1 when
/// there is none).
pub fn supported_share(sentences: &[SentenceSupport]) -> f64 {
    let claims = sentences.iter().filter(|s| s.claim).count();
    if claims == 0 {
        return 1.0;
    }
    let ok = sentences.iter().filter(|s| s.claim && s.supported).count();
    ok as f64 / claims as f64
}

/// The marker numbers in `s`, in order, and `s` without them.
pub fn strip_markers(s: &str) -> (Vec<usize>, String) {
    let mut numbers = Vec::new();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s.as_bytes()[i] == b'[' {
            if let Some(len) = sentences::marker_len(&s[i..]) {
                for p in s[i + 1..i + len - 1].split([',', ';']) {
                    if let Ok(n) = p.trim().parse::<usize>() {
                        numbers.push(n);
                    }
                }
                i += len;
                continue;
            }
        }
        let c = s[i..].chars().next().expect("in bounds");
        out.push(c);
        i += c.len_utf8();
    }
    // Tidy the gaps the markers leave: "ignored ." → "ignored.", double spaces.
    let mut tidy = String::with_capacity(out.len());
    for c in out.chars() {
        if matches!(c, '.' | ',' | ';' | ':' | '!' | '?') && tidy.ends_with(' ') {
            tidy.pop();
        }
        if c == ' ' && tidy.ends_with(' ') {
            continue;
        }
        tidy.push(c);
    }
    (numbers, tidy.trim().to_string())
}

/// `sentence` with `citations` as markers before its final punctuation.
fn with_markers(sentence: &str, citations: &[usize]) -> String {
    if citations.is_empty() {
        return sentence.to_string();
    }
    let marks: String = citations.iter().map(|n| format!("[{n}]")).collect();
    let body = sentence.trim_end_matches(['.', '!', '?']);
    let end = &sentence[body.len()..];
    format!("{body} {marks}{end}")
}

/// Whether a sentence states something: not an introduction ending in `:`,
/// a heading, a code block, or one or two words.
fn is_claim(text: &str) -> bool {
    let t = text.trim();
    !(t.ends_with(':')
        || t.starts_with('#')
        || t.starts_with("```")
        || t.split_whitespace().count() <= 2)
}

/// Check `answer` against its numbered `sources` (`sources[0]` is `[1]`):
/// a sentence is supported when the critic's support probability for some
/// source reaches `threshold`.
pub fn check(
    answer: &str,
    sources: &[&str],
    critic: &dyn Critic,
    threshold: f32,
) -> Result<Checked> {
    let ranges = sentences::split(answer);
    let stripped: Vec<(Vec<usize>, String)> = ranges
        .iter()
        .map(|r| strip_markers(&answer[r.clone()]))
        .collect();
    let mut pairs: Vec<(&str, &str)> = Vec::with_capacity(ranges.len() * sources.len());
    for (_, text) in &stripped {
        for s in sources {
            pairs.push((text.as_str(), s));
        }
    }
    let probs = critic.score(Judgement::Support, &pairs)?;
    let mut out = Checked {
        answer: String::with_capacity(answer.len()),
        sentences: Vec::with_capacity(ranges.len()),
    };
    let mut last = 0;
    for (i, ((cited, text), range)) in stripped.into_iter().zip(&ranges).enumerate() {
        let p = &probs[i * sources.len()..(i + 1) * sources.len()];
        let (best, best_p) =
            p.iter()
                .copied()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |acc, (j, x)| {
                        if x > acc.1 {
                            (j, x)
                        } else {
                            acc
                        }
                    },
                );
        let claim = is_claim(&text);
        let supported = !sources.is_empty() && best_p >= threshold;
        let mut keep: Vec<usize> = Vec::new();
        for &n in &cited {
            if n >= 1 && n <= sources.len() && p[n - 1] >= threshold && !keep.contains(&n) {
                keep.push(n);
            }
        }
        let citations = if !claim {
            keep
        } else if keep.is_empty() && supported {
            vec![best + 1]
        } else {
            keep
        };
        let corrected = claim && citations != cited;
        let shown = if claim || !cited.is_empty() {
            with_markers(&text, &citations)
        } else {
            text.clone()
        };
        out.answer.push_str(&answer[last..range.start]);
        out.answer.push_str(&shown);
        last = range.end;
        out.sentences.push(SentenceSupport {
            text: shown,
            citations,
            support: if sources.is_empty() { 0.0 } else { best_p },
            supported: supported || !claim,
            claim,
            corrected,
        });
    }
    out.answer.push_str(&answer[last..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::WordOverlap;
    use cairn_core::Calibration;

    const OVERLAP: WordOverlap = WordOverlap(Calibration { a: 10.0, b: -5.0 });

    const SOURCES: [&str; 2] = [
        "If a segment is an absolute path, all previous segments are ignored.",
        "The default encoding is platform dependent.",
    ];

    #[test]
    fn wrong_markers_are_corrected_and_missing_ones_added() {
        let a = "Previous segments are ignored when a segment is absolute [2]. The default encoding depends on the platform.";
        let c = check(a, &SOURCES, &OVERLAP, 0.5).unwrap();
        assert_eq!(c.sentences.len(), 2);
        assert_eq!(c.sentences[0].citations, [1]);
        assert!(c.sentences[0].corrected && c.sentences[0].supported);
        assert_eq!(c.sentences[1].citations, [2]);
        assert_eq!(
            c.answer,
            "Previous segments are ignored when a segment is absolute [1]. The default encoding depends on the platform [2]."
        );
    }

    #[test]
    fn right_markers_are_kept_and_unsupported_sentences_flagged() {
        let a = "All previous segments are ignored [1].\n\nBananas grow on trees in Ecuador [2].";
        let c = check(a, &SOURCES, &OVERLAP, 0.5).unwrap();
        assert!(!c.sentences[0].corrected);
        assert_eq!(c.sentences[0].citations, [1]);
        let s = &c.sentences[1];
        assert!(s.claim && !s.supported && s.citations.is_empty() && s.corrected);
        assert!(s.support < 0.5);
        // The wrong marker is gone; the paragraph break is kept.
        assert_eq!(
            c.answer,
            "All previous segments are ignored [1].\n\nBananas grow on trees in Ecuador."
        );
        assert_eq!(c.unsupported(), 1);
        assert_eq!(c.supported_share(), 0.5);
    }

    #[test]
    fn introductions_are_not_claims() {
        let c = check(
            "Here is how:\n- previous segments are ignored",
            &SOURCES,
            &OVERLAP,
            0.5,
        )
        .unwrap();
        assert!(!c.sentences[0].claim && c.sentences[0].supported);
        assert!(c.sentences[1].claim && c.sentences[1].supported);
        assert_eq!(c.sentences[1].citations, [1]);
    }

    #[test]
    fn markers_out_of_range_are_dropped() {
        let c = check(
            "All previous segments are ignored [7].",
            &SOURCES,
            &OVERLAP,
            0.5,
        )
        .unwrap();
        assert_eq!(c.sentences[0].citations, [1]);
        assert!(c.sentences[0].corrected);
    }

    #[test]
    fn strip_markers_tidies_the_gaps() {
        assert_eq!(
            strip_markers("It is ignored [1] . Also [2, 3] here [4]."),
            (vec![1, 2, 3, 4], "It is ignored. Also here.".to_string())
        );
        assert_eq!(strip_markers("a[x]b"), (vec![], "a[x]b".to_string()));
    }
}
