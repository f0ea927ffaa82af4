//! Cross-document boilerplate: blocks of lines that many documents of a
//! collection repeat (a site's navigation, headers and footers, breadcrumbs,
//! a chapter's table of contents on every page of the chapter) are left out
//! of a document's sections, so that they reach neither the chunks nor BM25.
//!
//! Nothing here knows a site. A line is *repeated* when at least `need`
//! documents of the collection contain it (after whitespace and case are
//! normalised, see [`cairn_core::lines`]), where `need` is the larger of the
//! configured minimum (`ingest.boilerplate_min_docs`, 3 by default) and 1% of
//! the collection. Lines with no letter or digit are neutral. A run of
//! repeated lines (neutral lines inside it do not break it) is boilerplate
//! when it holds two or more repeated lines, or when it is the first or the
//! last text of the document: a single repeated line in the middle of unique
//! text ("New in version 3.2.") is content and stays.
//!
//! The document's text is not changed (chunk spans stay exact); only its
//! sections are cut around the boilerplate. A document that would be left
//! with no text is kept whole: three copies of one file are not boilerplate
//! of each other.

use cairn_core::lines::{line_key, lines_with_ranges};
use cairn_core::{Document, Section};
use std::ops::Range;

/// How many documents must repeat a line before it can be boilerplate.
#[derive(Debug, Clone, Copy)]
pub struct BoilerplateRule {
    /// The configured minimum (0 turns detection off).
    pub min_docs: u32,
    /// Documents in the collection (after this ingest).
    pub collection_docs: u64,
}

impl BoilerplateRule {
    /// The document count at which a line counts as repeated, or `None` when
    /// detection is off.
    pub fn need(&self) -> Option<u32> {
        if self.min_docs == 0 {
            return None;
        }
        let one_percent = self.collection_docs.div_ceil(100);
        Some(
            self.min_docs
                .max(u32::try_from(one_percent).unwrap_or(u32::MAX)),
        )
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    /// No letter or digit.
    Neutral,
    Repeated,
    Unique,
}

/// Cut `doc`'s sections around its boilerplate blocks. `docs_with` gives the
/// number of the collection's documents that contain a line key. Returns
/// how many lines were left out (0 when none, or when leaving them out would
/// leave the document without text).
pub fn strip(doc: &mut Document, rule: BoilerplateRule, docs_with: impl Fn(u64) -> u32) -> usize {
    let Some(need) = rule.need() else {
        return 0;
    };
    // The lines that sections cover, in order. Headings sit between
    // sections and are not listed.
    let mut lines: Vec<(Range<usize>, Class)> = Vec::new();
    for s in &doc.sections {
        let Some(body) = doc.text.get(s.start..s.end) else {
            continue;
        };
        for (r, line) in lines_with_ranges(body) {
            let class = match line_key(line) {
                None => Class::Neutral,
                Some(k) if docs_with(k) >= need => Class::Repeated,
                Some(_) => Class::Unique,
            };
            lines.push((s.start + r.start..s.start + r.end, class));
        }
    }
    let first_unique = lines.iter().position(|(_, c)| *c == Class::Unique);
    let last_unique = lines.iter().rposition(|(_, c)| *c == Class::Unique);
    let Some((first_unique, last_unique)) = first_unique.zip(last_unique) else {
        return 0; // nothing would be left
    };

    let mut cut: Vec<Range<usize>> = Vec::new();
    let mut removed = 0;
    let mut i = 0;
    while i < lines.len() {
        if lines[i].1 != Class::Repeated {
            i += 1;
            continue;
        }
        // A run of repeated lines, neutral ones inside it included.
        let start = i;
        let mut end = i; // last repeated line of the run
        let mut repeated = 0;
        let mut j = i;
        while j < lines.len() && lines[j].1 != Class::Unique {
            if lines[j].1 == Class::Repeated {
                repeated += 1;
                end = j;
            }
            j += 1;
        }
        let at_edge = start < first_unique || end > last_unique;
        if repeated >= 2 || at_edge {
            cut.push(lines[start].0.start..lines[end].0.end);
            removed += repeated;
        }
        i = j;
    }
    if cut.is_empty() {
        return 0;
    }
    doc.sections = cut_sections(&doc.text, &doc.sections, &cut);
    removed
}

/// `sections` with the byte ranges of `cut` (in order, disjoint) taken out;
/// pieces holding only whitespace are dropped.
fn cut_sections(text: &str, sections: &[Section], cut: &[Range<usize>]) -> Vec<Section> {
    let mut out = Vec::with_capacity(sections.len());
    for s in sections {
        let mut from = s.start;
        for c in cut.iter().filter(|c| c.end > s.start && c.start < s.end) {
            push_piece(text, &mut out, s, from, c.start.max(s.start));
            from = c.end.min(s.end);
        }
        push_piece(text, &mut out, s, from, s.end);
    }
    out
}

fn push_piece(text: &str, out: &mut Vec<Section>, s: &Section, start: usize, end: usize) {
    if start < end
        && text
            .get(start..end)
            .is_some_and(|t| t.chars().any(|c| !c.is_whitespace()))
    {
        out.push(Section {
            start,
            end,
            headings: s.headings.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_core::lines::document_line_keys;
    use cairn_core::Format;
    use std::collections::HashMap;

    fn doc(text: &str) -> Document {
        Document {
            format: Format::Text,
            text: text.into(),
            sections: vec![Section {
                start: 0,
                end: text.len(),
                headings: vec!["Page".into()],
            }],
            warnings: vec![],
        }
    }

    /// Line document counts over `texts`, as the catalog keeps them.
    fn counts(texts: &[&str]) -> HashMap<u64, u32> {
        let mut df = HashMap::new();
        for t in texts {
            for k in document_line_keys(t) {
                *df.entry(k).or_insert(0) += 1;
            }
        }
        df
    }

    fn kept(d: &Document) -> String {
        d.sections
            .iter()
            .map(|s| d.text[s.start..s.end].trim())
            .collect::<Vec<_>>()
            .join(" | ")
    }

    const RULE: BoilerplateRule = BoilerplateRule {
        min_docs: 3,
        collection_docs: 4,
    };

    #[test]
    fn navigation_and_tables_of_contents_go_content_stays() {
        let pages = [
            "Home Docs Download\nSearch\nAlpha is the first letter.\nNew in version 3.2.\nIt is used a lot.\nContents\nOne\nTwo\nPrev Up Next",
            "Home Docs Download\nSearch\nBeta comes second.\nContents\nOne\nTwo\nPrev Up Next",
            "home  docs download\nsearch\nGamma is third.\nNew in version 3.2.\nmore gamma\nContents\nOne\nTwo\nPrev Up Next",
            "Delta.\nNew in version 3.2.\nend of delta",
        ];
        let df = counts(&pages);
        let get = |k| df.get(&k).copied().unwrap_or(0);
        let mut d = doc(pages[0]);
        let removed = strip(&mut d, RULE, get);
        assert_eq!(
            kept(&d),
            "Alpha is the first letter.\nNew in version 3.2.\nIt is used a lot."
        );
        assert_eq!(
            removed,
            2 + 4,
            "the header run; the contents and footer run"
        );
        // The text itself is untouched: spans stay exact.
        assert_eq!(d.text, pages[0]);
        // A single repeated line in the middle of content stays.
        let mut d = doc(pages[3]);
        strip(&mut d, RULE, get);
        assert_eq!(kept(&d), "Delta.\nNew in version 3.2.\nend of delta");
    }

    #[test]
    fn below_the_threshold_or_off_nothing_goes() {
        let pages = ["Nav bar\nMenu\nfirst", "Nav bar\nMenu\nsecond"];
        let df = counts(&pages);
        let mut d = doc(pages[0]);
        assert_eq!(strip(&mut d, RULE, |k| df.get(&k).copied().unwrap_or(0)), 0);
        let off = BoilerplateRule {
            min_docs: 0,
            ..RULE
        };
        assert_eq!(strip(&mut d, off, |_| 100), 0);
        // 1% of a big collection raises the bar above the minimum.
        let big = BoilerplateRule {
            min_docs: 3,
            collection_docs: 1000,
        };
        assert_eq!(big.need(), Some(10));
    }

    #[test]
    fn identical_copies_are_kept_whole() {
        let text = "Same page\nsame words";
        let df = counts(&[text, text, text]);
        let mut d = doc(text);
        assert_eq!(strip(&mut d, RULE, |k| df.get(&k).copied().unwrap_or(0)), 0);
        assert_eq!(kept(&d), "Same page\nsame words");
    }

    #[test]
    fn cuts_keep_each_pieces_heading() {
        let text = "Top nav\nMenu\nintro\nbody text";
        let mut d = doc(text);
        d.sections = vec![
            Section {
                start: 0,
                end: 19,
                headings: vec!["A".into()],
            },
            Section {
                start: 19,
                end: text.len(),
                headings: vec!["A".into(), "B".into()],
            },
        ];
        let df = counts(&[text, "Top nav\nMenu\nx", "Top nav\nMenu\ny"]);
        strip(&mut d, RULE, |k| df.get(&k).copied().unwrap_or(0));
        let got: Vec<_> = d
            .sections
            .iter()
            .map(|s| (d.text[s.start..s.end].trim(), s.headings.join(">")))
            .collect();
        assert_eq!(got, [("intro", "A".into()), ("body text", "A>B".into())]);
    }
}
