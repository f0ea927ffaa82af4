//! HTML: visible text only, laid out in lines and paragraphs, with `h1`–`h6`
//! splitting it into heading-path sections.
//!
//! Scripts, styles, forms, navigation (including Sphinx's sidebar, "related"
//! bars, breadcrumbs, footers and `¶` header links) and hidden elements are
//! dropped. The `<title>` is the outermost heading; a heading that repeats it
//! (often without the site's suffix, "Setup" for "Setup — The Manual")
//! replaces it, and the other headings nest under it.

use crate::sections::{clean_title, SectionBuilder};
use crate::text::decode;
use cairn_core::{Document, Format};
use scraper::node::Element;
use scraper::{ElementRef, Html, Node};

/// Elements whose whole subtree is not visible text.
const DROPPED: &[&str] = &[
    "script", "style", "noscript", "template", "nav", "svg", "head", "form", "button", "select",
    "textarea", "iframe", "object", "canvas", "footer", "input", "option", "datalist",
];

/// Class fragments marking navigation chrome (Sphinx themes and the like).
const CHROME_CLASSES: &[&str] = &[
    "sphinxsidebar",
    "related",
    "headerlink",
    "footer",
    "breadcrumb",
];

/// Elements that start a new paragraph (blank line before and after).
const PARAGRAPH: &[&str] = &[
    "p",
    "pre",
    "table",
    "blockquote",
    "ul",
    "ol",
    "dl",
    "section",
    "article",
    "figure",
    "hr",
    "header",
    "main",
    "aside",
    "details",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "fieldset",
];

/// Elements that start a new line.
const LINE: &[&str] = &[
    "div",
    "li",
    "tr",
    "dd",
    "dt",
    "caption",
    "figcaption",
    "summary",
    "address",
    "thead",
    "tbody",
    "tfoot",
    "body",
    "html",
    "center",
    "legend",
    "menu",
];

fn is_dropped(el: &Element) -> bool {
    if DROPPED.contains(&el.name()) {
        return true;
    }
    if el
        .attr("role")
        .is_some_and(|r| r.eq_ignore_ascii_case("navigation"))
        || el
            .attr("aria-hidden")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || el.attr("hidden").is_some()
    {
        return true;
    }
    el.classes()
        .any(|c| CHROME_CLASSES.iter().any(|chrome| c.contains(chrome)))
}

fn heading_level(name: &str) -> Option<u32> {
    match name {
        "h1" => Some(1),
        "h2" => Some(2),
        "h3" => Some(3),
        "h4" => Some(4),
        "h5" => Some(5),
        "h6" => Some(6),
        _ => None,
    }
}

/// Accumulates visible text, collapsing whitespace and placing line breaks.
#[derive(Default)]
struct Writer {
    out: String,
    pending_space: bool,
    pending_breaks: usize,
}

impl Writer {
    fn request_break(&mut self, n: usize) {
        self.pending_breaks = self.pending_breaks.max(n);
    }

    fn trim_trailing_blanks(&mut self) {
        let len = self.out.trim_end_matches([' ', '\t']).len();
        self.out.truncate(len);
    }

    /// Apply pending separators before content is written.
    fn flush(&mut self) {
        if self.out.is_empty() {
            self.pending_breaks = 0;
            self.pending_space = false;
            return;
        }
        if self.pending_breaks > 0 {
            self.trim_trailing_blanks();
            let have = self.out.len() - self.out.trim_end_matches('\n').len();
            for _ in have..self.pending_breaks {
                self.out.push('\n');
            }
        } else if self.pending_space && !self.out.ends_with([' ', '\n', '\t']) {
            self.out.push(' ');
        }
        self.pending_breaks = 0;
        self.pending_space = false;
    }

    /// Write flowing text; returns the byte offset of the first character
    /// written, if any.
    fn inline(&mut self, s: &str) -> Option<usize> {
        let mut first = None;
        for c in s.chars() {
            if c == '¶' {
                continue;
            }
            if c.is_whitespace() {
                self.pending_space = true;
            } else {
                self.flush();
                first.get_or_insert(self.out.len());
                self.out.push(c);
            }
        }
        first
    }

    /// Write preformatted text as is.
    fn preformatted(&mut self, s: &str) -> Option<usize> {
        let s: String = s.chars().filter(|&c| c != '¶' && c != '\r').collect();
        if s.is_empty() {
            return None;
        }
        if self.out.is_empty() && s.trim().is_empty() {
            return None;
        }
        self.flush();
        let first = self.out.len();
        self.out.push_str(&s);
        Some(first)
    }

    /// `<br>`: a hard line break.
    fn line_break(&mut self) {
        if self.out.is_empty() {
            return;
        }
        self.flush();
        self.trim_trailing_blanks();
        self.out.push('\n');
        self.pending_space = false;
    }
}

/// The heading being read.
struct OpenHeading {
    level: u32,
    start: Option<usize>,
    title: String,
}

enum Work<N> {
    Open(N),
    Close(N),
}

/// Elements nested deeper than this are flattened before parsing: the
/// HTML parser's scope checks walk the stack of open elements, so 200,000
/// nested `<div>`s would take it hours.
const MAX_DEPTH: usize = 256;

/// Elements that never hold content or that the parser closes by itself
/// (a new `<p>` or `<li>` ends the last one): they add no nesting.
const NO_NESTING: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track",
    "wbr", "param", "keygen", "p", "li", "dt", "dd", "tr", "td", "th", "option", "optgroup", "rb",
    "rt", "rp", "thead", "tbody", "tfoot", "colgroup", "caption", "html", "head", "body",
];

/// Elements whose content is raw text (no tags inside).
const RAW_TEXT: &[&str] = &[
    "script",
    "style",
    "textarea",
    "title",
    "xmp",
    "iframe",
    "noembed",
    "noframes",
    "plaintext",
];

/// `src` with the start and end tags of elements nested past `max_depth`
/// removed (their text stays, in place), or `None` when nothing nests that
/// deep. A lexical pass: comments, doctype and raw-text elements are
/// stepped over; quoted attribute values may hold `>`.
fn bound_nesting(src: &str, max_depth: usize) -> Option<String> {
    let b = src.as_bytes();
    let find = |from: usize, pat: &[u8]| -> Option<usize> {
        b.get(from..)?
            .windows(pat.len())
            .position(|w| w.eq_ignore_ascii_case(pat))
            .map(|p| from + p)
    };
    let mut depth = 0usize;
    let mut dropped: std::collections::HashMap<String, usize> = Default::default();
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while let Some(off) = b.get(i..).and_then(memchr_lt) {
        let at = i + off;
        let rest = &b[at..];
        if rest.starts_with(b"<!--") {
            i = find(at + 4, b"-->").map_or(b.len(), |e| e + 3);
            continue;
        }
        if rest.starts_with(b"<!") || rest.starts_with(b"<?") {
            i = find(at, b">").map_or(b.len(), |e| e + 1);
            continue;
        }
        let closing = rest.get(1) == Some(&b'/');
        let name_start = at + 1 + closing as usize;
        let name_end = b[name_start..]
            .iter()
            .position(|c| !(c.is_ascii_alphanumeric() || *c == b'-' || *c == b':'))
            .map_or(b.len(), |p| name_start + p);
        if name_end == name_start {
            i = at + 1;
            continue;
        }
        let name = src[name_start..name_end].to_ascii_lowercase();
        // The tag's end: the first `>` outside quotes.
        let mut quote = None;
        let mut end = b.len();
        for (k, &c) in b[name_end..].iter().enumerate() {
            match (quote, c) {
                (None, b'"' | b'\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, b'>') => {
                    end = name_end + k + 1;
                    break;
                }
                _ => {}
            }
        }
        let self_closing = end >= 2 && b[end - 2] == b'/';
        if closing {
            match dropped.get_mut(&name) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    cuts.push((at, end));
                }
                _ if !NO_NESTING.contains(&name.as_str()) => depth = depth.saturating_sub(1),
                _ => {}
            }
        } else if RAW_TEXT.contains(&name.as_str()) {
            let close = format!("</{name}");
            i = find(end, close.as_bytes()).unwrap_or(b.len());
            continue;
        } else if !self_closing && !NO_NESTING.contains(&name.as_str()) {
            if depth >= max_depth {
                *dropped.entry(name).or_default() += 1;
                cuts.push((at, end));
            } else {
                depth += 1;
            }
        }
        i = end;
    }
    if cuts.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(src.len());
    let mut from = 0;
    for (a, z) in cuts {
        out.push_str(&src[from..a]);
        // Keep words apart where a block tag was.
        out.push(' ');
        from = z;
    }
    out.push_str(&src[from..]);
    Some(out)
}

fn memchr_lt(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'<')
}

/// Load HTML.
pub(crate) fn load(bytes: &[u8]) -> Document {
    let mut warnings = Vec::new();
    let mut source = decode(bytes, &mut warnings);
    if let Some(flat) = bound_nesting(&source, MAX_DEPTH) {
        warnings.push(format!(
            "elements nested more than {MAX_DEPTH} deep were flattened"
        ));
        source = flat;
    }
    let html = Html::parse_document(&source);
    let (text, sections) = extract(&html);
    Document {
        format: Format::Html,
        text,
        sections,
        warnings,
    }
}

fn extract(html: &Html) -> (String, Vec<cairn_core::Section>) {
    let root = html.tree.root();

    let mut title = None;
    for node in root.descendants() {
        let Some(el) = node.value().as_element() else {
            continue;
        };
        let in_head = || {
            node.parent()
                .and_then(|p| p.value().as_element().map(|e| e.name() == "head"))
                .unwrap_or(false)
        };
        if el.name() == "title" && in_head() {
            title = ElementRef::wrap(node)
                .map(|e| clean_title(&e.text().collect::<String>().replace('¶', "")));
            break;
        }
    }

    // The title is the outermost heading; a heading that repeats it (often
    // without the site's suffix) takes its place. Pages whose `<h1>`s are
    // their numbered sections keep their title above them.
    let mut builder = match title {
        Some(t) if !t.is_empty() => SectionBuilder::with_root(t),
        _ => SectionBuilder::new(),
    };
    let mut w = Writer::default();
    let mut pre_depth = 0usize;
    let mut heading: Option<OpenHeading> = None;

    // Iterative walk: documents can nest deeply.
    let mut stack = vec![Work::Open(root)];
    while let Some(work) = stack.pop() {
        match work {
            Work::Open(node) => match node.value() {
                Node::Text(t) => {
                    let first = if pre_depth > 0 {
                        w.preformatted(t)
                    } else {
                        w.inline(t)
                    };
                    if let Some(h) = heading.as_mut() {
                        if h.start.is_none() {
                            h.start = first;
                        }
                        h.title.push_str(t);
                    }
                }
                Node::Element(el) => {
                    if is_dropped(el) {
                        continue;
                    }
                    let name = el.name();
                    match name {
                        "br" => {
                            w.line_break();
                            if let Some(h) = heading.as_mut() {
                                h.title.push(' ');
                            }
                        }
                        "td" | "th" => w.pending_space = true,
                        _ if PARAGRAPH.contains(&name) => w.request_break(2),
                        _ if LINE.contains(&name) => w.request_break(1),
                        _ => {}
                    }
                    if name == "pre" {
                        pre_depth += 1;
                    }
                    if let Some(level) = heading_level(name) {
                        if heading.is_none() {
                            heading = Some(OpenHeading {
                                level,
                                start: None,
                                title: String::new(),
                            });
                        }
                    }
                    stack.push(Work::Close(node));
                    let children: Vec<_> = node.children().collect();
                    stack.extend(children.into_iter().rev().map(Work::Open));
                }
                Node::Document | Node::Fragment => {
                    let children: Vec<_> = node.children().collect();
                    stack.extend(children.into_iter().rev().map(Work::Open));
                }
                _ => {}
            },
            Work::Close(node) => {
                let Some(el) = node.value().as_element() else {
                    continue;
                };
                let name = el.name();
                if name == "pre" {
                    pre_depth = pre_depth.saturating_sub(1);
                }
                if let Some(level) = heading_level(name) {
                    if heading.as_ref().is_some_and(|h| h.level == level) {
                        if let Some(h) = heading.take() {
                            if let Some(start) = h.start {
                                let end = w.out.len();
                                let title = clean_title(&h.title.replace('¶', ""));
                                builder.heading(&w.out, h.level, title, start, end);
                            }
                        }
                    }
                }
                match name {
                    "td" | "th" => w.pending_space = true,
                    _ if PARAGRAPH.contains(&name) => w.request_break(2),
                    _ if LINE.contains(&name) => w.request_break(1),
                    _ => {}
                }
            }
        }
    }
    let mut text = w.out;
    let len = text.trim_end().len();
    text.truncate(len);
    let sections = builder.finish(&text);
    (text, sections)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_pages_are_not_rewritten() {
        let page = "<html><head><title>T</title><script>if (a<b) { x('<div>'); }</script></head>\
                    <body><!-- <div><div> --><div><p>one<p>two<ul><li>a<li>b</ul>\
                    <img src=x><br/><span title=\"a > b\">c</span></div></body></html>";
        assert_eq!(bound_nesting(page, 3), None);
        // Past the bound, the innermost tags go and their text stays.
        let deep = "<div><section><div><b>bold</b> text</div></section></div>";
        let flat = bound_nesting(deep, 2).unwrap();
        assert_eq!(flat, "<div><section>  bold  text </section></div>");
    }

    #[test]
    fn layout_of_blocks_inline_and_pre() {
        let doc = load(
            b"<html><body><p>Hello   <b>bold</b>\n world</p><p>Second &amp; last<br>line</p>\
              <pre>  keep\n    this</pre><ul><li>one</li><li>two</li></ul></body></html>",
        );
        assert_eq!(
            doc.text,
            "Hello bold world\n\nSecond & last\nline\n\n  keep\n    this\n\none\ntwo"
        );
    }

    #[test]
    fn title_is_outermost_heading_without_h1() {
        let doc = load(b"<title>My Page</title><p>intro</p><h2>Part</h2><p>body</p>");
        let paths: Vec<_> = doc
            .sections
            .iter()
            .map(|s| s.headings.join(" > "))
            .collect();
        assert_eq!(paths, ["My Page", "My Page > Part"]);
        assert!(!doc.text.contains("My Page"), "title is not body text");
    }

    #[test]
    fn a_title_repeated_by_the_first_heading_is_kept_once() {
        let doc = load(
            b"<title>3.2. Setup</title><h2>3.2. Setup</h2><p>intro</p>\
              <h3>3.2.1. Disks</h3><p>body</p>",
        );
        let paths: Vec<_> = doc
            .sections
            .iter()
            .map(|s| s.headings.join(" > "))
            .collect();
        assert_eq!(paths, ["3.2. Setup", "3.2. Setup > 3.2.1. Disks"]);
    }

    #[test]
    fn hidden_things_are_dropped() {
        let doc = load(
            b"<p>seen</p><div aria-hidden=\"true\">no1</div><div role=\"navigation\">no2</div>\
              <div hidden>no3</div><form><label>no4</label></form><noscript>no5</noscript>",
        );
        assert_eq!(doc.text, "seen");
    }
}
