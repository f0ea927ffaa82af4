//! Building one document out of parts: the slides of a deck, the sheets of
//! a workbook, the chapters of a book, the messages of a mailbox and their
//! attachments. Each part's text follows the previous one after a blank
//! line; its sections keep their heading paths under the part's own.

use crate::sections::same_title;
use cairn_core::{Document, Format, Section};

#[derive(Default)]
pub(crate) struct Composer {
    text: String,
    sections: Vec<Section>,
    pub(crate) warnings: Vec<String>,
}

/// `prefix` then `inner`, leaving out an inner heading that repeats the one
/// before it (a chapter's `<title>` under the chapter's own heading).
fn join(prefix: &[String], inner: &[String]) -> Vec<String> {
    let mut out: Vec<String> = prefix.iter().filter(|h| !h.is_empty()).cloned().collect();
    for h in inner {
        if h.is_empty() || out.last().is_some_and(|l| same_title(l, h)) {
            continue;
        }
        out.push(h.clone());
    }
    out
}

impl Composer {
    pub(crate) fn new() -> Self {
        Composer::default()
    }

    fn separate(&mut self) {
        if !self.text.is_empty() && !self.text.ends_with("\n\n") {
            self.text.push_str(if self.text.ends_with('\n') {
                "\n"
            } else {
                "\n\n"
            });
        }
    }

    /// Append `text` as one section under `headings`; whitespace alone adds
    /// nothing.
    pub(crate) fn push_text(&mut self, headings: &[String], text: &str) {
        let body = text.trim_end();
        if body.trim().is_empty() {
            return;
        }
        self.separate();
        let start = self.text.len();
        self.text.push_str(body);
        self.sections.push(Section {
            start,
            end: self.text.len(),
            headings: join(headings, &[]),
        });
    }

    /// Append a loaded document: its text, and its sections shifted, their
    /// heading paths under `prefix`. Its warnings are kept, each prefixed
    /// with `what` when given.
    pub(crate) fn push_doc(&mut self, prefix: &[String], doc: Document, what: Option<&str>) {
        for w in doc.warnings {
            self.warnings.push(match what {
                Some(what) => format!("{what}: {w}"),
                None => w,
            });
        }
        if doc.text.trim().is_empty() {
            return;
        }
        self.separate();
        let offset = self.text.len();
        self.text.push_str(&doc.text);
        for s in doc.sections {
            if s.start > s.end || s.end > doc.text.len() {
                continue;
            }
            self.sections.push(Section {
                start: s.start + offset,
                end: s.end + offset,
                headings: join(prefix, &s.headings),
            });
        }
    }

    pub(crate) fn finish(self, format: Format) -> Document {
        Document {
            format,
            text: self.text,
            sections: self.sections,
            warnings: self.warnings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_follow_each_other_with_their_headings() {
        let mut c = Composer::new();
        c.push_text(&["Slide 1".into()], "Intro\n");
        let inner = Document {
            format: Format::Html,
            text: "Head\nbody text".into(),
            sections: vec![Section {
                start: 5,
                end: 14,
                headings: vec!["Chapter".into(), "Part".into()],
            }],
            warnings: vec!["odd".into()],
        };
        c.push_doc(&["Book".into(), "Chapter".into()], inner, Some("ch1.xhtml"));
        c.push_text(&["x".into()], "  \n ");
        let doc = c.finish(Format::Epub);
        assert_eq!(doc.text, "Intro\n\nHead\nbody text");
        assert_eq!(
            &doc.text[doc.sections[0].start..doc.sections[0].end],
            "Intro"
        );
        assert_eq!(
            &doc.text[doc.sections[1].start..doc.sections[1].end],
            "body text"
        );
        assert_eq!(doc.sections[1].headings, ["Book", "Chapter", "Part"]);
        assert_eq!(doc.warnings, ["ch1.xhtml: odd"]);
    }
}
