//! What a PDF's text layer carries that its reader never reads as text:
//! running headers and footers and page numbers (the same line, up to its
//! numbers, at the top or bottom of many pages), words split by a hyphen at
//! a line's end, and typographic ligatures (`ﬁ`, `ﬂ`, …) that a search for
//! "file" would not match. Applied to the pages of one document at once,
//! since a running header is only known by its repeats.

use std::collections::HashMap;

/// Lines looked at, at each end of a page, for running headers and footers.
const EDGE_LINES: usize = 3;

/// A line shape seen at a page edge on at least this share of the pages
/// (and on at least [`MIN_PAGES`] of them) is a running header or footer.
const MIN_SHARE: f64 = 0.2;
const MIN_PAGES: usize = 3;

/// A line's shape: lower-cased, digits and roman numerals folded, spaces
/// collapsed, so "Chapter 3: Shell Builtins 41" and "... 42" are one shape.
fn shape(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for word in line.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        let w = word.to_lowercase();
        let number = w
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_punctuation())
            && w.chars().any(|c| c.is_ascii_digit());
        if number || is_roman(&w) {
            out.push('#');
        } else {
            out.push_str(&w);
        }
    }
    out
}

fn is_roman(w: &str) -> bool {
    !w.is_empty() && w.len() <= 6 && w.chars().all(|c| "ivxlc".contains(c))
}

/// A line that is only a page number ("12", "- 12 -", "xiv", "Page 3",
/// "3 of 40").
fn is_page_number(line: &str) -> bool {
    let s = shape(line);
    let s = s.trim_matches(|c: char| c == '-' || c == ' ');
    s == "#" || s == "page #" || s == "# of #" || s == "page # of #"
}

/// The first and last `EDGE_LINES` non-blank lines of a page, each with
/// its place (0, 1, 2 from the top; -1, -2, -3 from the bottom): a running
/// header or footer keeps its place from page to page.
fn edges(lines: &[&str]) -> Vec<(usize, i32)> {
    let filled: Vec<usize> = (0..lines.len())
        .filter(|&i| !lines[i].trim().is_empty())
        .collect();
    let mut out: Vec<(usize, i32)> = filled
        .iter()
        .take(EDGE_LINES)
        .enumerate()
        .map(|(k, &i)| (i, k as i32))
        .collect();
    for (k, &i) in filled.iter().rev().take(EDGE_LINES).enumerate() {
        out.push((i, -(k as i32) - 1));
    }
    out
}

/// Remove running headers, footers and page numbers from `pages` (each a
/// page's text, lines separated by `\n`; `None` pages are left alone).
/// Returns how many lines went.
pub(crate) fn strip_running_lines(pages: &mut [Option<String>]) -> usize {
    let n = pages.iter().filter(|p| p.is_some()).count();
    if n < MIN_PAGES {
        return 0;
    }
    // On how many pages each shape sits at an edge.
    let mut seen: HashMap<(i32, String), usize> = HashMap::new();
    for page in pages.iter().flatten() {
        let lines: Vec<&str> = page.split('\n').collect();
        let mut shapes: Vec<(i32, String)> = edges(&lines)
            .into_iter()
            .map(|(i, place)| (place, shape(lines[i])))
            .collect();
        shapes.sort();
        shapes.dedup();
        for s in shapes {
            *seen.entry(s).or_insert(0) += 1;
        }
    }
    let bar = ((n as f64 * MIN_SHARE).ceil() as usize).max(MIN_PAGES);
    let mut removed = 0;
    for page in pages.iter_mut().flatten() {
        let lines: Vec<&str> = page.split('\n').collect();
        let mut drop: Vec<usize> = edges(&lines)
            .into_iter()
            .filter(|&(i, place)| {
                let s = shape(lines[i]);
                !s.is_empty()
                    && (is_page_number(lines[i])
                        || seen.get(&(place, s)).copied().unwrap_or(0) >= bar)
            })
            .map(|(i, _)| i)
            .collect();
        drop.sort_unstable();
        drop.dedup();
        if drop.is_empty() {
            continue;
        }
        removed += drop.len();
        let kept: Vec<&str> = lines
            .iter()
            .enumerate()
            .filter(|(i, _)| !drop.contains(i))
            .map(|(_, l)| *l)
            .collect();
        *page = collapse_blank_runs(&kept.join("\n"));
    }
    removed
}

/// At most one blank line in a row, none at the ends.
fn collapse_blank_runs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = false;
    for line in text.split('\n') {
        if line.trim().is_empty() {
            blank = !out.is_empty();
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank { "\n\n" } else { "\n" });
        }
        blank = false;
        out.push_str(line);
    }
    out
}

/// The words of a document, to tell a word a typesetter split at a line's
/// end ("docu-" "mentation": joined) from a compound that broke at its own
/// hyphen ("self-" "contained": kept whole, with its hyphen).
#[derive(Debug, Default)]
pub(crate) struct Vocabulary {
    /// Every word, lower-cased, without the punctuation around it.
    words: std::collections::HashSet<String>,
    /// Every word with a hyphen inside it ("self-contained").
    compounds: std::collections::HashSet<String>,
}

fn bare(word: &str) -> &str {
    word.trim_matches(|c: char| !c.is_alphanumeric())
}

impl Vocabulary {
    pub(crate) fn of<'a>(pages: impl IntoIterator<Item = &'a str>) -> Vocabulary {
        let mut v = Vocabulary::default();
        for word in pages.into_iter().flat_map(str::split_whitespace) {
            let w = bare(word).to_lowercase();
            if w.is_empty() {
                continue;
            }
            if w.contains('-') {
                v.compounds.insert(w);
            } else {
                v.words.insert(w);
            }
        }
        v
    }

    /// Whether `head-` at a line's end and `tail` on the next are the
    /// compound `head-tail`: the document writes it so elsewhere and never
    /// writes `headtail`. Otherwise the split is a typesetter's.
    fn is_compound(&self, head: &str, tail: &str) -> bool {
        let (head, tail) = (bare(head).to_lowercase(), bare(tail).to_lowercase());
        self.compounds.contains(&format!("{head}-{tail}"))
            && !self.words.contains(&format!("{head}{tail}"))
    }
}

/// Join words split by a hyphen at a line's end ("inter-\nnational" →
/// "international\n"): a letter, `-` ending the line, and a lower-case
/// letter starting the next. A compound that the document writes with its
/// hyphen elsewhere (and never without) keeps it ("self-contained").
/// The rest of the next line stays on its line.
pub(crate) fn join_hyphenated(text: &str, vocabulary: &Vocabulary) -> String {
    let lines: Vec<&str> = text.split('\n').collect();
    let mut out = String::with_capacity(text.len());
    let mut carry = String::new();
    for (i, line) in lines.iter().enumerate() {
        let mut line: String = if carry.is_empty() {
            (*line).to_string()
        } else {
            let l = std::mem::take(&mut carry);
            let trimmed = line.trim_start();
            // The rest of the split word comes up to the first space.
            let end = trimmed.find(char::is_whitespace).unwrap_or(trimmed.len());
            let rest = trimmed[end..].trim_start();
            let mut joined = l;
            if vocabulary.is_compound(&joined, &trimmed[..end]) {
                joined.push('-');
            }
            joined.push_str(&trimmed[..end]);
            if !rest.is_empty() {
                joined.push('\n');
                joined.push_str(rest);
            }
            joined
        };
        let next_lower = lines
            .get(i + 1)
            .and_then(|n| n.trim_start().chars().next())
            .is_some_and(|c| c.is_lowercase());
        let splits = {
            let mut cs = line.chars().rev();
            cs.next() == Some('-')
                && cs.next().is_some_and(|c| c.is_alphabetic())
                && !line.ends_with("--")
        };
        if splits && next_lower {
            line.pop();
            // The word's first half goes on with the next line's first word.
            let (head, word) = match line.rfind(char::is_whitespace) {
                Some(p) => (line[..=p].to_string(), line[p + 1..].to_string()),
                None => (String::new(), line.clone()),
            };
            if !out.is_empty() || !head.is_empty() {
                out.push_str(&head);
            }
            carry = word;
            // `out` continues with the joined word on the next round.
            continue;
        }
        out.push_str(&line);
        if i + 1 < lines.len() {
            out.push('\n');
        }
    }
    out.push_str(&carry);
    out
}

/// [`unligature`], then Unicode's composed forms (NFC: "e" and a combining
/// acute as "é").
pub(crate) fn normalise(text: &str) -> std::borrow::Cow<'_, str> {
    use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};
    let plain = unligature(text);
    if is_nfc_quick(plain.chars()) == IsNormalized::Yes {
        return plain;
    }
    std::borrow::Cow::Owned(plain.nfc().collect())
}

/// Typographic ligatures to their letters, and the circumflex and tilde
/// accents that stand alone (not set over a letter, which the page reader
/// composes) to the ASCII `^` and `~` they print as: Type 1 fonts name a
/// caret "circumflex" (U+02C6), and a search for `^C` or `~/.bashrc`
/// should find them.
pub(crate) fn unligature(text: &str) -> std::borrow::Cow<'_, str> {
    if !text
        .chars()
        .any(|c| ('\u{FB00}'..='\u{FB06}').contains(&c) || c == '\u{2C6}' || c == '\u{2DC}')
    {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\u{FB00}' => out.push_str("ff"),
            '\u{FB01}' => out.push_str("fi"),
            '\u{FB02}' => out.push_str("fl"),
            '\u{FB03}' => out.push_str("ffi"),
            '\u{FB04}' => out.push_str("ffl"),
            '\u{FB05}' | '\u{FB06}' => out.push_str("st"),
            '\u{2C6}' => out.push('^'),
            '\u{2DC}' => out.push('~'),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_headers_footers_and_page_numbers_go() {
        let bodies = [
            "The alias builtin defines a name for a command.\nWithout arguments it prints the list.",
            "Arrays may be indexed or associative.\nAny element may be referenced.",
            "Job control suspends and resumes processes.\nThe shell keeps a table of jobs.",
            "Readline edits the command line.\nIts bindings live in the inputrc file.",
            "History expansion recalls earlier lines.\nAn exclamation mark starts it.",
            "Here documents feed a block of lines.\nThe delimiter ends the block.",
        ];
        let mut pages: Vec<Option<String>> = bodies
            .iter()
            .enumerate()
            .map(|(n, body)| {
                Some(format!(
                    "Chapter 4: Shell Builtin Commands {}\n{body}\n- {} -",
                    40 + n,
                    n + 1
                ))
            })
            .collect();
        let removed = strip_running_lines(&mut pages);
        assert_eq!(removed, 12);
        assert_eq!(pages[2].as_deref(), Some(bodies[2]));
    }

    #[test]
    fn lines_that_differ_stay() {
        let mut pages: Vec<Option<String>> = ["Alpha one", "Beta two", "Gamma three", "Delta four"]
            .iter()
            .map(|s| Some(format!("{s}\nSee also the index")))
            .collect();
        // The repeated last line goes; the differing first lines stay.
        assert_eq!(strip_running_lines(&mut pages), 4);
        assert_eq!(pages[0].as_deref(), Some("Alpha one"));
        // Too few pages to tell: nothing goes.
        let mut two = vec![Some("Head\nx".to_string()), Some("Head\ny".to_string())];
        assert_eq!(strip_running_lines(&mut two), 0);
    }

    #[test]
    fn hyphenated_line_ends_are_joined() {
        let none = Vocabulary::default();
        assert_eq!(
            join_hyphenated("the inter-\nnational standard\nsays", &none),
            "the international\nstandard\nsays"
        );
        // A capital after the hyphen, or a dash, is not a split word.
        assert_eq!(join_hyphenated("GNU-\nLinux", &none), "GNU-\nLinux");
        assert_eq!(join_hyphenated("a --\nb", &none), "a --\nb");
        assert_eq!(join_hyphenated("com-\nmand", &none), "command");
    }

    #[test]
    fn compounds_the_document_writes_keep_their_hyphen() {
        let pages = [
            "a self-contained tree, (self-contained) again",
            "a built-in type and the builtin module; re-\nenter",
            "long com-\nmand, self-\ncontained. built-\nin",
        ];
        let v = Vocabulary::of(pages);
        assert_eq!(
            join_hyphenated(pages[2], &v),
            "long command,\nself-contained.\nbuiltin",
            "written whole elsewhere: joined; only with its hyphen: kept"
        );
        // Seen nowhere: the typesetter's split, joined.
        assert_eq!(join_hyphenated("re-\nenter", &v), "reenter");
    }

    #[test]
    fn ligatures_become_letters() {
        assert_eq!(unligature("the \u{FB01}le \u{FB02}ag"), "the file flag");
        assert_eq!(unligature("\u{2C6}C and \u{2DC}/bin"), "^C and ~/bin");
        assert!(matches!(unligature("plain"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(normalise("Cafe\u{301} \u{FB01}n"), "Caf\u{E9} fin");
        assert!(matches!(
            normalise("Caf\u{E9}"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
