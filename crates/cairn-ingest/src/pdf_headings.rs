//! Headings of a PDF without bookmarks, from the sizes its lines are set
//! in: the size that carries most of the text is the body's; short lines
//! set clearly larger are headings, the largest size the outermost level.
//! A heading set over two or three lines is one heading. A size whose
//! lines carry more text than the body, or that runs on for more than
//! three lines at a time, is a text block set large (a slide, a cover),
//! not a heading.
//!
//! Decided from the document's own sizes only: no font name, weight or
//! rule written for one producer.

use std::collections::HashMap;

/// A line is a heading when set at least this much larger than the body,
/// and at least [`MIN_STEP`] points larger.
const MIN_RATIO: f32 = 1.12;
const MIN_STEP: f32 = 0.8;
/// Heading levels kept (the largest sizes); smaller heading sizes are
/// read as body text.
const MAX_LEVELS: usize = 4;
/// A heading is at most this many lines, words and characters.
const MAX_LINES: usize = 3;
const MAX_WORDS: usize = 16;
const MAX_CHARS: usize = 160;

/// One heading: its level (0 = outermost), its text as a path step, and
/// the lines it was set on, as the page's text shows them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Heading {
    pub(crate) level: usize,
    pub(crate) text: String,
    pub(crate) lines: Vec<String>,
}

/// Sizes are compared in half points.
fn bucket(size: f32) -> i32 {
    (size * 2.0).round() as i32
}

fn short(line: &str) -> bool {
    line.chars().count() <= MAX_CHARS
        && line.split_whitespace().count() <= MAX_WORDS
        && line.chars().any(char::is_alphabetic)
}

/// The headings each page shows, in order, from every page's lines and
/// sizes (`None`: a page with no text layer read, such as a scan).
pub(crate) fn detect(pages: &[Option<&[crate::pdf::Line]>]) -> Vec<Vec<Heading>> {
    let mut out = vec![Vec::new(); pages.len()];
    // Characters set at each size, over the document.
    let mut chars: HashMap<i32, usize> = HashMap::new();
    for (line, size) in pages.iter().flatten().flat_map(|p| p.iter()) {
        *chars.entry(bucket(*size)).or_default() += line.chars().count();
    }
    let Some((&body, &body_chars)) = chars.iter().max_by_key(|&(&size, &n)| (n, -size)) else {
        return out;
    };
    let body_size = body as f32 / 2.0;
    let is_large = |size: f32| size >= body_size * MIN_RATIO && size - body_size >= MIN_STEP;

    // Runs of consecutive lines at one large size, per page.
    let mut runs: Vec<(usize, i32, Vec<String>)> = Vec::new();
    for (p, page) in pages.iter().enumerate() {
        let Some(lines) = page else { continue };
        let mut i = 0;
        while i < lines.len() {
            let size = lines[i].1;
            if !is_large(size) {
                i += 1;
                continue;
            }
            let b = bucket(size);
            let mut j = i;
            while j < lines.len() && bucket(lines[j].1) == b {
                j += 1;
            }
            runs.push((p, b, lines[i..j].iter().map(|(t, _)| t.clone()).collect()));
            i = j;
        }
    }
    // A size is a heading size when its lines carry less text than the
    // body and most of its runs look like headings.
    let mut by_size: HashMap<i32, (usize, usize, usize)> = HashMap::new();
    for (_, b, lines) in &runs {
        let e = by_size.entry(*b).or_default();
        e.0 += lines.iter().map(|l| l.chars().count()).sum::<usize>();
        e.1 += 1;
        if lines.len() <= MAX_LINES && short(&lines.join(" ")) {
            e.2 += 1;
        }
    }
    let mut sizes: Vec<i32> = by_size
        .iter()
        .filter(|&(_, &(text, runs, headed))| text < body_chars && headed * 2 > runs)
        .map(|(&b, _)| b)
        .collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    sizes.truncate(MAX_LEVELS);

    for (p, b, lines) in runs {
        let Some(level) = sizes.iter().position(|&s| s == b) else {
            continue;
        };
        let text = norm(&lines.join(" "));
        if lines.len() > MAX_LINES || !short(&text) {
            continue;
        }
        out[p].push(Heading { level, text, lines });
    }
    out
}

/// A line as compared between what the glyphs showed and the page's text
/// after cleaning: ligatures unfolded, accents composed, spaces collapsed.
fn norm(line: &str) -> String {
    crate::pdf_clean::normalise(line)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Where each of `headings` starts in `page` (the page's text after
/// cleaning): the byte offset of the line holding its first line, in
/// order. A heading whose line is not found (cleaning took it out as a
/// running header, say) is left out.
pub(crate) fn locate<'h>(page: &str, headings: &'h [Heading]) -> Vec<(usize, &'h Heading)> {
    let mut found = Vec::new();
    let mut next = 0;
    let mut offset = 0;
    for line in page.split('\n') {
        let here = norm(line);
        if !here.is_empty() {
            // The next heading, or one a little later when one was lost.
            if let Some(k) = headings[next..]
                .iter()
                .take(4)
                .position(|h| h.lines.first().is_some_and(|l| norm(l) == here))
            {
                found.push((offset, &headings[next + k]));
                next += k + 1;
                if next == headings.len() {
                    break;
                }
            }
        }
        offset += line.len() + 1;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(lines: &[(&str, f32)]) -> Vec<(String, f32)> {
        lines.iter().map(|&(t, s)| (t.to_string(), s)).collect()
    }

    #[test]
    fn larger_short_lines_are_headings_by_level() {
        let p1 = page(&[
            ("A Field Guide to Herons", 24.0),
            ("1 Where herons live", 16.0),
            ("Herons wade in shallow water and stand", 10.0),
            ("still for a long time before they strike.", 10.0),
            ("1.1 Estuaries", 12.5),
            ("Estuaries give them fish at every tide and", 10.0),
            ("mud flats to walk on between the channels.", 10.0),
        ]);
        let p2 = page(&[
            ("They nest in colonies called heronries,", 10.0),
            ("2 What herons eat and how they catch", 16.0),
            ("it in the shallows", 16.0),
            ("Fish, frogs and small mammals, taken with", 10.0),
            ("a fast strike of the bill.", 10.0),
        ]);
        let h = detect(&[Some(&p1), None, Some(&p2)]);
        let got: Vec<Vec<(usize, &str)>> = h
            .iter()
            .map(|p| p.iter().map(|h| (h.level, h.text.as_str())).collect())
            .collect();
        assert_eq!(
            got,
            vec![
                vec![
                    (0, "A Field Guide to Herons"),
                    (1, "1 Where herons live"),
                    (2, "1.1 Estuaries")
                ],
                vec![],
                vec![(1, "2 What herons eat and how they catch it in the shallows")],
            ]
        );
        assert_eq!(h[2][0].lines.len(), 2);
    }

    #[test]
    fn text_set_large_throughout_is_not_a_heading() {
        // A slide: most text large; a long run at one size; a size barely
        // above the body; numbers alone.
        let p = page(&[
            ("Quarterly results", 28.0),
            ("Revenue grew in every region this quarter", 20.0),
            ("Costs fell as the new plant came online", 20.0),
            ("Margins are the best in five years", 20.0),
            ("and the outlook for next year is steady", 20.0),
            ("footnote set a hair larger than the body text", 10.5),
            ("42", 18.0),
            ("body text line one that is long enough to weigh", 10.0),
            ("body text line two that is long enough to weigh", 10.0),
            ("body text line three that is long enough to weigh", 10.0),
            ("body text line four that is long enough to weigh", 10.0),
        ]);
        let h = detect(&[Some(&p)]);
        let got: Vec<&str> = h[0].iter().map(|h| h.text.as_str()).collect();
        assert_eq!(got, ["Quarterly results"]);
        // Only body text: no headings at all.
        let plain = page(&[("just text", 10.0), ("more text", 10.0)]);
        assert!(detect(&[Some(&plain)])[0].is_empty());
        assert!(detect(&[]).is_empty());
    }

    #[test]
    fn headings_are_found_in_the_cleaned_page() {
        let hs = vec![
            Heading {
                level: 0,
                text: "Ofﬁce hours".into(),
                lines: vec!["Ofﬁce hours".into()],
            },
            Heading {
                level: 1,
                text: "Lost heading".into(),
                lines: vec!["Lost heading".into()],
            },
            Heading {
                level: 1,
                text: "Two words".into(),
                lines: vec!["Two  words".into()],
            },
        ];
        let page = "Intro line\nOffice hours\nbody\n\nTwo words\nmore body";
        let at: Vec<(usize, &str)> = locate(page, &hs)
            .into_iter()
            .map(|(o, h)| (o, h.text.as_str()))
            .collect();
        assert_eq!(at, [(11, "Ofﬁce hours"), (30, "Two words")]);
        assert_eq!(&page[30..39], "Two words");
    }
}
