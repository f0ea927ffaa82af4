//! PPTX: each slide in the presentation's order, as a section headed
//! `Slide N: title` (the title placeholder's text), holding the slide's
//! text (paragraphs of its shapes; table rows with cells joined by ` | `)
//! and then its speaker notes.

use crate::compose::Composer;
use crate::package::{attr, local, walk_part, Package, XmlEvent};
use crate::{IngestError, LoadLimits};
use cairn_core::{Document, Format};
use std::path::Path;

/// The text of one slide (or notes page): the title placeholder's text and
/// the other paragraphs, in order.
#[derive(Default, Debug, PartialEq)]
struct SlideText {
    title: String,
    body: Vec<String>,
}

/// Placeholder types whose text is not content (slide number, date, the
/// slide's picture on a notes page, header and footer).
fn skipped_placeholder(kind: &str) -> bool {
    matches!(kind, "sldNum" | "dt" | "sldImg" | "hdr" | "ftr")
}

fn slide_text(
    pkg: &Package<'_>,
    name: &str,
    xml: &str,
    cut: bool,
) -> Result<SlideText, IngestError> {
    let mut out = SlideText::default();
    // Inside a shape: its placeholder type, once seen.
    let mut shape_kind: Option<String> = None;
    let mut in_shape = 0u32;
    let mut para: Option<String> = None;
    let mut in_text = false;
    // A table row being read: its cells, and the cell being read.
    let mut row: Option<Vec<String>> = None;
    let mut cell: Option<String> = None;
    walk_part(pkg, name, xml, cut, |ev| match ev {
        XmlEvent::Open(e) | XmlEvent::Empty(e) => {
            let is_open = matches!(ev, XmlEvent::Open(_));
            match local(e).as_str() {
                "sp" if is_open => {
                    in_shape += 1;
                    shape_kind = None;
                }
                "ph" if in_shape > 0 => {
                    shape_kind = Some(attr(e, "type").unwrap_or_else(|| "body".into()));
                }
                "tr" if is_open => row = Some(Vec::new()),
                "tc" if is_open => cell = Some(String::new()),
                "p" if is_open => para = Some(String::new()),
                "t" if is_open => in_text = true,
                "br" => {
                    if let Some(p) = para.as_mut() {
                        p.push('\n');
                    }
                }
                "tab" => {
                    if let Some(p) = para.as_mut() {
                        p.push('\t');
                    }
                }
                _ => {}
            }
        }
        XmlEvent::Close(name) => match name {
            "sp" => {
                in_shape = in_shape.saturating_sub(1);
                shape_kind = None;
            }
            "t" => in_text = false,
            "p" => {
                let Some(p) = para.take() else { return };
                let p = p.trim().to_string();
                if p.is_empty() {
                    return;
                }
                if let Some(c) = cell.as_mut() {
                    if !c.is_empty() {
                        c.push(' ');
                    }
                    c.push_str(&p);
                    return;
                }
                match shape_kind.as_deref() {
                    Some(k) if skipped_placeholder(k) => {}
                    Some("title" | "ctrTitle") => {
                        if !out.title.is_empty() {
                            out.title.push(' ');
                        }
                        out.title.push_str(&p);
                    }
                    _ => out.body.push(p),
                }
            }
            "tc" => {
                if let (Some(r), Some(c)) = (row.as_mut(), cell.take()) {
                    r.push(c);
                }
            }
            "tr" => {
                if let Some(r) = row.take() {
                    let line: Vec<String> = r.into_iter().filter(|c| !c.is_empty()).collect();
                    if !line.is_empty() {
                        out.body.push(line.join(" | "));
                    }
                }
            }
            _ => {}
        },
        XmlEvent::Text(t) if in_text => {
            if let Some(p) = para.as_mut() {
                p.push_str(t);
            }
        }
        XmlEvent::Text(_) => {}
    })?;
    Ok(out)
}

/// The slides' part names in the presentation's order (`p:sldIdLst`), or,
/// when that cannot be read, every `ppt/slides/slideN.xml` by N.
fn slide_order(pkg: &mut Package<'_>) -> Result<Vec<String>, IngestError> {
    let mut order = Vec::new();
    if let Some((xml, cut)) = pkg.read("ppt/presentation.xml")? {
        let rels = pkg.relationships("ppt/presentation.xml")?;
        let mut ids = Vec::new();
        walk_part(pkg, "ppt/presentation.xml", &xml, cut, |ev| {
            if let XmlEvent::Open(e) | XmlEvent::Empty(e) = ev {
                if local(e) == "sldId" {
                    if let Some(id) = attr(e, "r:id").or_else(|| attr(e, "id")) {
                        ids.push(id);
                    }
                }
            }
        })?;
        for id in ids {
            if let Some(r) = rels.iter().find(|r| r.id == id) {
                order.push(r.target.clone());
            }
        }
    }
    if order.is_empty() {
        let mut found: Vec<(u32, String)> = pkg
            .names()
            .into_iter()
            .filter_map(|n| {
                let num = n.strip_prefix("ppt/slides/slide")?.strip_suffix(".xml")?;
                Some((num.parse().ok()?, n))
            })
            .collect();
        found.sort();
        order = found.into_iter().map(|(_, n)| n).collect();
    }
    Ok(order)
}

pub(crate) fn load(
    path: &Path,
    bytes: &[u8],
    limits: &LoadLimits,
) -> Result<Document, IngestError> {
    let mut pkg = Package::open(path, bytes, "PPTX", limits)?;
    let slides = slide_order(&mut pkg)?;
    if slides.is_empty() {
        return Err(pkg.corrupt("no slides (ppt/slides/slideN.xml)"));
    }
    let mut doc = Composer::new();
    for (i, name) in slides.iter().enumerate() {
        if pkg.exhausted() {
            break;
        }
        let Some((xml, cut)) = pkg.read(name)? else {
            pkg.warnings.push(format!("{name} is listed but missing"));
            continue;
        };
        let slide = slide_text(&pkg, name, &xml, cut)?;
        let notes = match pkg
            .relationships(name)?
            .into_iter()
            .find(|r| r.kind.ends_with("/notesSlide"))
        {
            Some(r) => match pkg.read(&r.target)? {
                Some((xml, cut)) => slide_text(&pkg, &r.target, &xml, cut)?.body,
                None => Vec::new(),
            },
            None => Vec::new(),
        };
        let heading = if slide.title.is_empty() {
            format!("Slide {}", i + 1)
        } else {
            format!(
                "Slide {}: {}",
                i + 1,
                slide.title.split_whitespace().collect::<Vec<_>>().join(" ")
            )
        };
        let mut text = heading.clone();
        for p in &slide.body {
            text.push('\n');
            text.push_str(p);
        }
        if !notes.is_empty() {
            text.push_str("\nNotes:");
            for p in &notes {
                text.push('\n');
                text.push_str(p);
            }
        }
        doc.push_text(&[heading], &text);
    }
    doc.warnings.append(&mut pkg.warnings);
    Ok(doc.finish(Format::Pptx))
}
