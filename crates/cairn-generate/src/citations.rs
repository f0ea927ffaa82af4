//! Citations: `[n]` markers in an answer, mapped back to the numbered
//! sources of its prompt. Markers may be grouped (`[1, 3]`, `[1][2]`); a
//! number with no source is removed from the text and reported.

use crate::prompt::Source;
use serde::{Deserialize, Serialize};

/// A source the answer cites.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Citation {
    /// The marker number: `[n]` in the answer.
    pub n: usize,
    pub doc: String,
    pub heading: String,
    pub start: u64,
    pub end: u64,
    pub text: String,
    /// The PDF page the cited source starts on; absent for other formats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
}

/// The answer with its markers resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The answer with markers that point to no source removed.
    pub answer: String,
    /// Cited sources, in order of first mention.
    pub citations: Vec<Citation>,
    /// Marker numbers that pointed to no source, in order of appearance.
    pub dropped: Vec<usize>,
}

/// A marker found in the text: its byte range and the numbers inside.
#[derive(Debug, PartialEq)]
struct Marker {
    start: usize,
    end: usize,
    numbers: Vec<usize>,
}

/// Find `[n]` and `[n, m, ...]` markers (also `[n;m]`, `[Source n]`).
fn markers(text: &str) -> Vec<Marker> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'[' {
            i += 1;
            continue;
        }
        let Some(close) = text[i + 1..].find(']').map(|c| i + 1 + c) else {
            break;
        };
        let inner = text[i + 1..close].trim();
        let inner = inner
            .strip_prefix("Source")
            .or_else(|| inner.strip_prefix("source"))
            .unwrap_or(inner)
            .trim();
        let parts: Vec<&str> = inner
            .split([',', ';'])
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        let numbers: Option<Vec<usize>> = if parts.is_empty() || inner.len() > 40 {
            None
        } else {
            parts
                .iter()
                .map(|p| {
                    if p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit()) {
                        p.parse().ok()
                    } else {
                        None
                    }
                })
                .collect()
        };
        match numbers {
            Some(numbers) => {
                out.push(Marker {
                    start: i,
                    end: close + 1,
                    numbers,
                });
                i = close + 1;
            }
            None => i += 1,
        }
    }
    out
}

/// Resolve the markers of `answer` against `sources`.
pub fn resolve(answer: &str, sources: &[Source]) -> Resolved {
    let mut text = String::with_capacity(answer.len());
    let mut citations: Vec<Citation> = Vec::new();
    let mut dropped = Vec::new();
    let mut last = 0;
    for m in markers(answer) {
        text.push_str(&answer[last..m.start]);
        last = m.end;
        let mut kept = Vec::new();
        for n in m.numbers {
            match sources.iter().find(|s| s.n == n) {
                Some(s) => {
                    if !kept.contains(&n) {
                        kept.push(n);
                    }
                    if !citations.iter().any(|c| c.n == n) {
                        citations.push(Citation {
                            n,
                            doc: s.doc.clone(),
                            heading: s.heading.clone(),
                            start: s.start,
                            end: s.end,
                            text: s.text.clone(),
                            page: s.page,
                        });
                    }
                }
                None => dropped.push(n),
            }
        }
        if !kept.is_empty() {
            let list: Vec<String> = kept.iter().map(|n| n.to_string()).collect();
            text.push('[');
            text.push_str(&list.join(", "));
            text.push(']');
        } else if text.ends_with(' ') && answer[last..].starts_with(['.', ',', ';', ':', ' ']) {
            // "fact [9]." → "fact."
            text.pop();
        }
    }
    text.push_str(&answer[last..]);
    Resolved {
        answer: text,
        citations,
        dropped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(n: usize, doc: &str) -> Source {
        Source {
            n,
            doc: doc.into(),
            heading: format!("h{n}"),
            start: 10 * n as u64,
            end: 10 * n as u64 + 5,
            text: format!("text {n}"),
            chunks: vec![n as u64],
            score: 1.0,
            page: None,
        }
    }

    #[test]
    fn finds_single_grouped_and_adjacent_markers() {
        let m = markers("a [1] b [2, 3] c [4][5] [Source 6] [x] [] [12345] [1.5]");
        let nums: Vec<Vec<usize>> = m.into_iter().map(|m| m.numbers).collect();
        assert_eq!(nums, vec![vec![1], vec![2, 3], vec![4], vec![5], vec![6]]);
    }

    #[test]
    fn maps_markers_to_sources_in_order_of_first_mention() {
        let sources = vec![src(1, "a.md"), src(2, "b.md")];
        let r = resolve("B holds [2]. A holds [1]; both [1, 2].", &sources);
        assert_eq!(r.answer, "B holds [2]. A holds [1]; both [1, 2].");
        assert_eq!(
            r.citations.iter().map(|c| c.n).collect::<Vec<_>>(),
            vec![2, 1]
        );
        assert_eq!(r.citations[0].doc, "b.md");
        assert_eq!((r.citations[0].start, r.citations[0].end), (20, 25));
        assert!(r.dropped.is_empty());
    }

    #[test]
    fn markers_without_a_source_are_dropped_and_reported() {
        let sources = vec![src(1, "a.md")];
        let r = resolve("It is 42 [7]. Also [1, 9] and [3][1].", &sources);
        assert_eq!(r.answer, "It is 42. Also [1] and [1].");
        assert_eq!(r.dropped, vec![7, 9, 3]);
        assert_eq!(r.citations.len(), 1);
    }

    #[test]
    fn text_without_markers_is_unchanged() {
        let r = resolve("No sources [here] at all, a[i] too.", &[src(1, "a")]);
        assert_eq!(r.answer, "No sources [here] at all, a[i] too.");
        assert!(r.citations.is_empty());
        assert!(r.dropped.is_empty());
    }

    #[test]
    fn unicode_around_markers_is_safe() {
        let r = resolve("Größe [1] — naïve [2", &[src(1, "a")]);
        assert_eq!(r.answer, "Größe [1] — naïve [2");
        assert_eq!(r.citations.len(), 1);
    }
}
