//! Building heading-path sections from a stream of headings.

use cairn_core::{Document, Format, Section};

/// Collects sections while a loader writes its text: call [`heading`] for
/// every heading met (with the byte span of the heading in the text), then
/// [`finish`] with the final text.
///
/// The heading itself is not part of any section; a section runs from the end
/// of one heading to the start of the next. Sections holding only whitespace
/// are dropped.
///
/// [`heading`]: SectionBuilder::heading
/// [`finish`]: SectionBuilder::finish
pub(crate) struct SectionBuilder {
    /// A fixed outermost heading, never popped.
    root: Option<String>,
    /// Open headings, outermost first: (level, title).
    stack: Vec<(u32, String)>,
    start: usize,
    sections: Vec<Section>,
}

impl SectionBuilder {
    pub(crate) fn new() -> Self {
        SectionBuilder {
            root: None,
            stack: Vec::new(),
            start: 0,
            sections: Vec::new(),
        }
    }

    /// Start with an outermost heading (an HTML `<title>`) that later
    /// headings nest under; one that repeats it replaces it when shorter.
    pub(crate) fn with_root(title: String) -> Self {
        let mut b = SectionBuilder::new();
        b.root = Some(title);
        b
    }

    fn path(&self) -> Vec<String> {
        self.root
            .iter()
            .chain(self.stack.iter().map(|(_, t)| t))
            .filter(|t| !t.is_empty())
            .cloned()
            .collect()
    }

    fn close(&mut self, text: &str, end: usize) {
        let end = end.min(text.len());
        let start = self.start.min(end);
        if text
            .get(start..end)
            .is_some_and(|s| s.chars().any(|c| !c.is_whitespace()))
        {
            let headings = self.path();
            self.sections.push(Section {
                start,
                end,
                headings,
            });
        }
    }

    /// A heading of `level` (0 = document title, 1 = outermost section) titled `title` occupies
    /// `text[h_start..h_end]`.
    pub(crate) fn heading(
        &mut self,
        text: &str,
        level: u32,
        title: String,
        h_start: usize,
        h_end: usize,
    ) {
        self.close(text, h_start);
        while self.stack.last().is_some_and(|(l, _)| *l >= level) {
            self.stack.pop();
        }
        // A heading that repeats the title ("Setup" under "Setup — The
        // Manual") takes its place: the shorter name, without the site's
        // suffix, is the one kept.
        // A heading that repeats one already on the path ("3.2. Setup >
        // 3.2. Setup") is not pushed.
        if self.root.as_ref().is_some_and(|r| same_title(r, &title)) {
            if let Some(root) = self.root.as_mut().filter(|r| title.len() < r.len()) {
                *root = title;
            }
        } else if !self.stack.iter().any(|(_, t)| same_title(t, &title)) {
            self.stack.push((level, title));
        }
        self.start = h_end.max(h_start).min(text.len());
    }

    pub(crate) fn finish(mut self, text: &str) -> Vec<Section> {
        self.close(text, text.len());
        self.sections
    }
}

/// A document of `format` from paragraphs in order, each `(text, heading
/// level)`: joined by blank lines, blank ones left out, and each heading
/// starting a section (DOCX, ODT).
pub(crate) fn from_paragraphs(
    format: Format,
    paragraphs: impl IntoIterator<Item = (String, Option<u32>)>,
    warnings: Vec<String>,
) -> Document {
    let mut text = String::new();
    let mut builder = SectionBuilder::new();
    for (para, level) in paragraphs {
        let body = para.trim_end();
        if body.trim().is_empty() {
            continue;
        }
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        let start = text.len();
        text.push_str(body);
        if let Some(level) = level {
            builder.heading(&text, level, clean_title(body), start, text.len());
        }
    }
    let sections = builder.finish(&text);
    Document {
        format,
        text,
        sections,
        warnings,
    }
}

/// Whether two headings name the same thing: equal up to case and spacing,
/// or one is the other followed by a separator and more (a `<title>` such as
/// "Setup — Manual" against the heading "Setup").
pub(crate) fn same_title(a: &str, b: &str) -> bool {
    let (a, b) = (a.to_lowercase(), b.to_lowercase());
    let (a, b) = (clean_title(&a), clean_title(&b));
    if a.is_empty() || b.is_empty() {
        return false;
    }
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if short == long {
        return true;
    }
    long.starts_with(&short)
        && short.chars().filter(|c| c.is_alphanumeric()).count() >= 3
        && long[short.len()..]
            .trim_start()
            .starts_with(['—', '–', '-', '|', ':', '·', '»'])
}

/// Collapse runs of whitespace into single spaces and trim; for heading titles.
pub(crate) fn clean_title(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_push_and_pop() {
        let text = "A\nintro\nB\nbee\nC\ncee\nD\ndee";
        let pos = |s: &str| text.find(s).unwrap();
        let mut b = SectionBuilder::new();
        b.heading(text, 1, "A".into(), pos("A"), pos("A") + 1);
        b.heading(text, 2, "B".into(), pos("B"), pos("B") + 1);
        b.heading(text, 3, "C".into(), pos("C"), pos("C") + 1);
        b.heading(text, 2, "D".into(), pos("D"), pos("D") + 1);
        let s = b.finish(text);
        let paths: Vec<_> = s.iter().map(|s| s.headings.join(" > ")).collect();
        assert_eq!(paths, ["A", "A > B", "A > B > C", "A > D"]);
        assert_eq!(&text[s[0].start..s[0].end], "\nintro\n");
    }

    #[test]
    fn repeated_titles_are_not_nested() {
        let text = "3.2. Setup\nbody\n3.2. Setup\nmore\nPart\nend";
        let pos = |s: &str, from: usize| from + text[from..].find(s).unwrap();
        let mut b = SectionBuilder::with_root("3.2. Setup — The Manual".into());
        let h1 = pos("3.2. Setup", 0);
        b.heading(text, 1, "3.2. Setup".into(), h1, h1 + 10);
        let h2 = pos("3.2. Setup", h1 + 1);
        b.heading(text, 2, "3.2.  SETUP".into(), h2, h2 + 10);
        let p = pos("Part", 0);
        b.heading(text, 3, "Part".into(), p, p + 4);
        let paths: Vec<_> = b
            .finish(text)
            .iter()
            .map(|s| s.headings.join(" > "))
            .collect();
        assert_eq!(paths, ["3.2. Setup", "3.2. Setup", "3.2. Setup > Part"]);
        assert!(!same_title("Setup", "Setups"));
        assert!(!same_title("Setup", "Setup and teardown"));
        assert!(same_title("Setup", "setup | Site"));
    }
}
