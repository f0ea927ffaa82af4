//! ODT (OpenDocument text): the paragraphs and headings of `content.xml`;
//! `text:h` headings (with their outline level) start heading-path
//! sections, table rows are written with their cells joined by ` | `, and
//! footnotes follow the paragraph that cites them.

use crate::package::{attr, local, walk_part, Package, XmlEvent};
use crate::sections::from_paragraphs;
use crate::{IngestError, LoadLimits};
use cairn_core::{Document, Format};
use std::path::Path;

struct Block {
    text: String,
    /// The outline level of a heading.
    level: Option<u32>,
}

pub(crate) fn load(
    path: &Path,
    bytes: &[u8],
    limits: &LoadLimits,
) -> Result<Document, IngestError> {
    let mut pkg = Package::open(path, bytes, "ODT", limits)?;
    let name = "content.xml";
    let (xml, cut) = pkg.require(name)?;
    let mut blocks: Vec<Block> = Vec::new();
    // Open paragraphs and headings, innermost last (a footnote's paragraphs
    // sit inside the citing one).
    let mut open: Vec<Block> = Vec::new();
    let mut row: Option<Vec<String>> = None;
    let mut cell: Option<String> = None;
    // Depth inside elements whose text is not content (a footnote's
    // citation mark, annotations, tracked deletions).
    let mut skip = 0u32;
    // Footnote paragraphs, held until the citing paragraph is done.
    let mut notes: Vec<Block> = Vec::new();
    walk_part(&pkg, name, &xml, cut, |ev| match ev {
        XmlEvent::Open(e) | XmlEvent::Empty(e) => {
            let is_open = matches!(ev, XmlEvent::Open(_));
            let tag = local(e);
            if is_open
                && matches!(
                    tag.as_str(),
                    "note-citation" | "annotation" | "tracked-changes"
                )
            {
                skip += 1;
                return;
            }
            if skip > 0 {
                return;
            }
            match tag.as_str() {
                "p" | "h" if is_open => {
                    let level = (tag == "h").then(|| {
                        attr(e, "text:outline-level")
                            .and_then(|l| l.parse::<u32>().ok())
                            .unwrap_or(1)
                            .clamp(1, 9)
                    });
                    open.push(Block {
                        text: String::new(),
                        level,
                    });
                }
                "s" => {
                    let n = attr(e, "text:c")
                        .and_then(|c| c.parse::<usize>().ok())
                        .unwrap_or(1);
                    if let Some(b) = open.last_mut() {
                        b.text.push_str(&" ".repeat(n.min(64)));
                    }
                }
                "tab" => {
                    if let Some(b) = open.last_mut() {
                        b.text.push('\t');
                    }
                }
                "line-break" => {
                    if let Some(b) = open.last_mut() {
                        b.text.push('\n');
                    }
                }
                "table-row" if is_open => row = Some(Vec::new()),
                "table-cell" if is_open => cell = Some(String::new()),
                _ => {}
            }
        }
        XmlEvent::Close(tag) => {
            if matches!(tag, "note-citation" | "annotation" | "tracked-changes") {
                skip = skip.saturating_sub(1);
                return;
            }
            if skip > 0 {
                return;
            }
            match tag {
                "p" | "h" => {
                    let Some(b) = open.pop() else { return };
                    if b.text.trim().is_empty() {
                        return;
                    }
                    if !open.is_empty() {
                        notes.push(b);
                    } else if let Some(c) = cell.as_mut() {
                        if !c.is_empty() {
                            c.push(' ');
                        }
                        c.push_str(b.text.trim());
                    } else {
                        blocks.push(b);
                        blocks.append(&mut notes);
                    }
                }
                "table-cell" => {
                    if let (Some(r), Some(c)) = (row.as_mut(), cell.take()) {
                        r.push(c);
                    }
                }
                "table-row" => {
                    if let Some(r) = row.take() {
                        let cells: Vec<String> = r.into_iter().filter(|c| !c.is_empty()).collect();
                        if !cells.is_empty() {
                            blocks.push(Block {
                                text: cells.join(" | "),
                                level: None,
                            });
                        }
                    }
                }
                _ => {}
            }
        }
        XmlEvent::Text(t) => {
            if skip == 0 {
                if let Some(b) = open.last_mut() {
                    b.text.push_str(t);
                }
            }
        }
    })?;
    blocks.append(&mut notes);
    Ok(from_paragraphs(
        Format::Odt,
        blocks.into_iter().map(|b| (b.text, b.level)),
        pkg.warnings,
    ))
}
