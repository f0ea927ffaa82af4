//! Markdown: the source is kept as the text; headings (ATX and setext, as
//! pulldown-cmark sees them, so a `#` inside a code fence is not one) split
//! it into sections carrying heading paths.

use crate::sections::{clean_title, SectionBuilder};
use crate::text::decode;
use cairn_core::{Document, Format};
use pulldown_cmark::{Event, HeadingLevel, Options, Parser, Tag, TagEnd};

fn level_number(level: HeadingLevel) -> u32 {
    match level {
        HeadingLevel::H1 => 1,
        HeadingLevel::H2 => 2,
        HeadingLevel::H3 => 3,
        HeadingLevel::H4 => 4,
        HeadingLevel::H5 => 5,
        HeadingLevel::H6 => 6,
    }
}

/// Load Markdown.
pub(crate) fn load(bytes: &[u8]) -> Document {
    let mut warnings = Vec::new();
    let text = decode(bytes, &mut warnings);
    let sections = sections(&text);
    Document {
        format: Format::Markdown,
        text,
        sections,
        warnings,
    }
}

fn sections(text: &str) -> Vec<cairn_core::Section> {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_YAML_STYLE_METADATA_BLOCKS
        | Options::ENABLE_PLUSES_DELIMITED_METADATA_BLOCKS;
    let mut builder = SectionBuilder::new();
    // The heading being read: (level, start byte, title so far).
    let mut open: Option<(u32, usize, String)> = None;
    for (event, range) in Parser::new_ext(text, options).into_offset_iter() {
        match event {
            Event::Start(Tag::Heading { level, .. }) => {
                open = Some((level_number(level), range.start, String::new()));
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some((level, start, title)) = open.take() {
                    builder.heading(text, level, clean_title(&title), start, range.end);
                }
            }
            Event::Text(t) | Event::Code(t) | Event::InlineMath(t) | Event::DisplayMath(t) => {
                if let Some((_, _, title)) = open.as_mut() {
                    title.push_str(&t);
                }
            }
            Event::SoftBreak | Event::HardBreak => {
                if let Some((_, _, title)) = open.as_mut() {
                    title.push(' ');
                }
            }
            _ => {}
        }
    }
    builder.finish(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(doc: &Document) -> Vec<(String, String)> {
        doc.sections
            .iter()
            .map(|s| {
                (
                    s.headings.join(" > "),
                    doc.text[s.start..s.end].trim().to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn atx_setext_and_fences() {
        let src = "preface\n\n# Guide\n\nintro\n\nInstall\n-------\n\nrun it\n\n```sh\n# not a heading\n```\n\n### Deep *one*\n\ndeep\n\n## Use\n\nuse it\n\nOther\n=====\n\nlast\n";
        let doc = load(src.as_bytes());
        assert_eq!(doc.text, src);
        let p = paths(&doc);
        assert_eq!(
            p,
            vec![
                ("".to_string(), "preface".to_string()),
                ("Guide".into(), "intro".into()),
                (
                    "Guide > Install".into(),
                    "run it\n\n```sh\n# not a heading\n```".into()
                ),
                ("Guide > Install > Deep one".into(), "deep".into()),
                ("Guide > Use".into(), "use it".into()),
                ("Other".into(), "last".into()),
            ]
        );
        // The heading line is not inside its section.
        assert!(!doc.text[doc.sections[1].start..doc.sections[1].end].contains("# Guide"));
    }

    #[test]
    fn crlf_and_front_matter() {
        let doc = load(b"---\ntitle: x\n---\n\n# A\r\n\r\nbody\r\n");
        assert_eq!(doc.sections.last().unwrap().headings, vec!["A".to_string()]);
        assert!(!doc.text.contains('\r'));
    }
}
