//! Sentence splitting for answers and passages: byte ranges into the text,
//! so that a sentence can be mapped back to its exact span.
//!
//! Boundaries: `.`, `!` or `?` followed by white space and a word that does
//! not start in lower case (closing quotes or brackets and `[n]` citation
//! markers after the punctuation stay with the sentence that ends); a blank
//! line; a list item (`- `, `* `, `• `, `1. `, `1) `) or a Markdown heading
//! at the start of a line; a line that ends with `:`. Not boundaries: a dot
//! inside a word (`os.path.join`, `3.11`, `file.txt`), after a known
//! abbreviation (`e.g.`, `i.e.`, `etc.`, `vs.`, `Dr.`, …) or a single
//! capital initial. A fenced code block (```` ``` ````) is one unit.

use std::ops::Range;

/// Abbreviations after which a dot does not end a sentence (lower case,
/// without the final dot).
const ABBREVIATIONS: &[&str] = &[
    "e.g", "i.e", "etc", "vs", "cf", "mr", "mrs", "ms", "dr", "prof", "st", "no", "fig", "approx",
    "al", "resp", "ca", "incl", "eq", "sec", "ch", "vol", "p", "pp", "jr", "sr", "inc", "ltd",
    "co", "ex", "viz", "esp",
];

/// The sentences of `text` as byte ranges, trimmed of white space, in order,
/// none empty.
pub fn split(text: &str) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    for block in blocks(text) {
        split_block(text, block, &mut out);
    }
    out
}

/// The sentences of `text` as string slices.
pub fn split_str(text: &str) -> Vec<&str> {
    split(text).into_iter().map(|r| &text[r]).collect()
}

/// Lines grouped into blocks that no sentence crosses: paragraphs, list
/// items, headings, fenced code.
fn blocks(text: &str) -> Vec<Range<usize>> {
    let mut blocks = Vec::new();
    let mut cur: Option<Range<usize>> = None;
    let mut in_fence = false;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let start = pos;
        pos += line.len();
        let body = line.trim_end_matches(['\n', '\r']);
        let trimmed = body.trim_start();
        let end = start + body.len();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            if in_fence {
                // The closing fence ends the code block.
                let r = cur.take().map_or(start..end, |c| c.start..end);
                blocks.push(r);
                in_fence = false;
            } else {
                if let Some(c) = cur.take() {
                    blocks.push(c);
                }
                cur = Some(start..end);
                in_fence = true;
            }
            continue;
        }
        if in_fence {
            cur = Some(cur.map_or(start..end, |c| c.start..end));
            continue;
        }
        if trimmed.is_empty() {
            if let Some(c) = cur.take() {
                blocks.push(c);
            }
            continue;
        }
        if starts_item(trimmed) {
            if let Some(c) = cur.take() {
                blocks.push(c);
            }
        }
        cur = Some(cur.map_or(start..end, |c| c.start..end));
        // A heading, or a line introducing a list, ends its block.
        if trimmed.starts_with('#') || body.trim_end().ends_with(':') {
            if let Some(c) = cur.take() {
                blocks.push(c);
            }
        }
    }
    if let Some(c) = cur {
        blocks.push(c);
    }
    blocks
}

/// A list item or a heading starts here.
fn starts_item(line: &str) -> bool {
    if line.starts_with("- ") || line.starts_with("* ") || line.starts_with("• ") {
        return true;
    }
    if line.starts_with('#') {
        return true;
    }
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    digits > 0
        && digits <= 3
        && matches!(line.as_bytes().get(digits), Some(b'.') | Some(b')'))
        && line.as_bytes().get(digits + 1) == Some(&b' ')
}

fn split_block(text: &str, block: Range<usize>, out: &mut Vec<Range<usize>>) {
    let s = &text[block.clone()];
    let fenced = s.trim_start().starts_with("```") || s.trim_start().starts_with("~~~");
    let mut begin = 0;
    if !fenced {
        let bytes = s.as_bytes();
        let mut i = list_marker_len(s);
        while i < bytes.len() {
            let b = bytes[i];
            if matches!(b, b'.' | b'!' | b'?') {
                if let Some(end) = boundary(s, i) {
                    push_trimmed(text, block.start + begin..block.start + end, out);
                    begin = end;
                    i = end;
                    continue;
                }
            }
            i += 1;
        }
    }
    push_trimmed(text, block.start + begin..block.end, out);
}

/// Bytes of a leading list marker, where no boundary may be found (`1. `).
fn list_marker_len(s: &str) -> usize {
    let lead = s.len() - s.trim_start().len();
    let t = s.trim_start();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 && digits <= 3 && matches!(t.as_bytes().get(digits), Some(b'.') | Some(b')')) {
        lead + digits + 1
    } else {
        0
    }
}

/// If the punctuation at `i` ends a sentence, the byte where the sentence
/// ends (after closing quotes, brackets and citation markers).
fn boundary(s: &str, i: usize) -> Option<usize> {
    let bytes = s.as_bytes();
    let mut j = i + 1;
    // Repeated punctuation ("?!", "...").
    while j < bytes.len() && matches!(bytes[j], b'.' | b'!' | b'?') {
        j += 1;
    }
    while j < bytes.len() && matches!(bytes[j], b'"' | b'\'' | b')' | b']') {
        j += 1;
    }
    let mut end = j;
    // Citation markers after the punctuation belong to this sentence.
    loop {
        let ws = s[end..].len() - s[end..].trim_start_matches([' ', '\t']).len();
        let k = end + ws;
        match marker_len(&s[k..]) {
            Some(len) => end = k + len,
            None => break,
        }
    }
    if end == bytes.len() {
        return Some(end);
    }
    let rest = &s[end..];
    let after = rest.trim_start();
    if after.len() == rest.len() {
        return None; // no white space: "os.path", "3.11", "a.b"
    }
    if after.is_empty() {
        return Some(end);
    }
    let next = after.chars().next()?;
    if next.is_lowercase() {
        return None;
    }
    if bytes[i] == b'.' && j == i + 1 {
        // The word before the dot.
        let word_start = s[..i]
            .rfind(|c: char| c.is_whitespace() || c == '(' || c == '"')
            .map_or(0, |p| p + 1);
        let word = &s[word_start..i];
        if word.is_empty() {
            return None;
        }
        let lower = word.to_lowercase();
        if ABBREVIATIONS.contains(&lower.as_str()) {
            return None;
        }
        let mut cs = word.chars();
        if let (Some(c), None) = (cs.next(), cs.next()) {
            if c.is_uppercase() {
                return None; // an initial: "J. Smith"
            }
        }
    }
    Some(end)
}

/// Length of a `[n]` / `[n, m]` marker at the start of `s`.
pub(crate) fn marker_len(s: &str) -> Option<usize> {
    let rest = s.strip_prefix('[')?;
    let close = rest.find(']')?;
    let inner = &rest[..close];
    if inner.is_empty() || inner.len() > 24 {
        return None;
    }
    inner
        .split([',', ';'])
        .all(|p| {
            let p = p.trim();
            !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit())
        })
        .then_some(close + 2)
}

fn push_trimmed(text: &str, r: Range<usize>, out: &mut Vec<Range<usize>>) {
    let s = &text[r.clone()];
    let lead = s.len() - s.trim_start().len();
    let trimmed = s.trim();
    if !trimmed.is_empty() {
        out.push(r.start + lead..r.start + lead + trimmed.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_sentences() {
        assert_eq!(
            split_str("It is ignored. The rest is kept! Is it? Yes."),
            ["It is ignored.", "The rest is kept!", "Is it?", "Yes."]
        );
    }

    #[test]
    fn abbreviations_and_initials_do_not_end_sentences() {
        assert_eq!(
            split_str("Use a tuple, e.g. (1, 2). See Dr. Smith and J. Doe etc. Then stop."),
            [
                "Use a tuple, e.g. (1, 2).",
                "See Dr. Smith and J. Doe etc. Then stop."
            ]
        );
        assert_eq!(
            split_str("Lists, i.e. mutable sequences, grow. Done."),
            ["Lists, i.e. mutable sequences, grow.", "Done."]
        );
    }

    #[test]
    fn dots_inside_words_and_numbers() {
        assert_eq!(
            split_str("Call os.path.join() in 3.11. It returns a str. Read file.txt first."),
            [
                "Call os.path.join() in 3.11.",
                "It returns a str.",
                "Read file.txt first."
            ]
        );
    }

    #[test]
    fn lower_case_after_a_dot_continues() {
        assert_eq!(
            split_str("Values such as 1. and 2. are floats."),
            ["Values such as 1. and 2. are floats."]
        );
    }

    #[test]
    fn markers_stay_with_their_sentence() {
        assert_eq!(
            split_str("It is ignored [1]. The rest is kept. [2] Then [1, 3] more."),
            [
                "It is ignored [1].",
                "The rest is kept. [2]",
                "Then [1, 3] more."
            ]
        );
    }

    #[test]
    fn lists_and_headings() {
        let t = "To create one:\n1. Run python -m venv env.\n2. Activate it. Then install.\n- a bullet\n* another\n# Heading\nText after.";
        assert_eq!(
            split_str(t),
            [
                "To create one:",
                "1. Run python -m venv env.",
                "2. Activate it.",
                "Then install.",
                "- a bullet",
                "* another",
                "# Heading",
                "Text after."
            ]
        );
    }

    #[test]
    fn blank_lines_and_code_blocks() {
        let t =
            "First line\nwraps here\n\nSecond. Third.\n```python\nx = 1. \ny = 2\n```\nAfter code.";
        assert_eq!(
            split_str(t),
            [
                "First line\nwraps here",
                "Second.",
                "Third.",
                "```python\nx = 1. \ny = 2\n```",
                "After code."
            ]
        );
    }

    #[test]
    fn ranges_are_exact_and_unicode_safe() {
        let t = "  Größe ändern. Ça va? Oui… fin.  ";
        for r in split(t) {
            assert_eq!(&t[r.clone()], t[r].trim());
        }
        assert_eq!(split_str(t), ["Größe ändern.", "Ça va?", "Oui… fin."]);
        assert!(split("").is_empty());
        assert!(split(" \n\n ").is_empty());
    }
}
