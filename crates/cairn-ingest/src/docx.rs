//! DOCX: the paragraphs of `word/document.xml`, with `Title`/`HeadingN`
//! paragraph styles (or outline levels) starting heading-path sections.

use crate::package::resolve_entity;
use crate::sections::from_paragraphs;
use crate::IngestError;
use cairn_core::{Document, Format};
use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use std::io::{Cursor, Read};
use std::path::Path;

fn attr_val(e: &BytesStart<'_>) -> Option<String> {
    e.attributes().flatten().find_map(|a| {
        let key: &str = a.key.as_ref();
        let local = key.rsplit(':').next().unwrap_or(key);
        if local == "val" {
            // Style ids and levels never hold entity references.
            Some(a.value.to_string())
        } else {
            None
        }
    })
}

/// Heading level of a paragraph style id: `Title` → 0, `Heading1`/`heading 2` → N.
fn style_level(style: &str) -> Option<u32> {
    let s = style.to_ascii_lowercase().replace([' ', '_', '-'], "");
    if s == "title" {
        return Some(0);
    }
    let n = s.strip_prefix("heading")?;
    let n: u32 = n.parse().ok()?;
    (1..=9).contains(&n).then_some(n)
}

#[derive(Default)]
struct Paragraph {
    text: String,
    level: Option<u32>,
}

/// Load a DOCX file: `word/document.xml` inflated up to
/// `limits.max_inflate_bytes` (a larger part is read that far, with a
/// warning: a zip bomb costs its cap, not the machine's memory).
pub(crate) fn load(
    path: &Path,
    bytes: &[u8],
    limits: &crate::LoadLimits,
) -> Result<Document, IngestError> {
    let corrupt = |reason: String| IngestError::Corrupt {
        path: path.to_path_buf(),
        format: "DOCX",
        reason,
    };
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| corrupt(format!("not a zip archive: {e}")))?;
    let cap = limits.max_inflate_bytes;
    let mut raw = Vec::new();
    {
        let part = archive
            .by_name("word/document.xml")
            .map_err(|e| corrupt(format!("cannot open word/document.xml: {e}")))?;
        part.take(cap.saturating_add(1))
            .read_to_end(&mut raw)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::OutOfMemory => IngestError::OutOfMemory {
                    path: path.to_path_buf(),
                    what: "inflating word/document.xml".into(),
                },
                _ => corrupt(format!("cannot inflate word/document.xml: {e}")),
            })?;
    }
    let mut warnings = Vec::new();
    let truncated = raw.len() as u64 > cap;
    if truncated {
        raw.truncate(cap as usize);
        // Keep whole UTF-8 characters.
        while !raw.is_empty() && std::str::from_utf8(&raw).is_err_and(|e| e.error_len().is_none()) {
            raw.pop();
        }
        warnings.push(format!(
            "word/document.xml inflates past {} MiB; only its first {} MiB were read (ingest.max_inflate_mb)",
            cap >> 20,
            cap >> 20
        ));
    }
    let xml = match String::from_utf8(raw) {
        Ok(s) => s,
        Err(e) => {
            warnings.push(crate::text::LOSSY_WARNING.to_string());
            String::from_utf8_lossy(e.as_bytes()).into_owned()
        }
    };
    let paragraphs = match paragraphs(&xml) {
        Ok(p) => p,
        // A part cut at the cap ends mid-element: keep what came before.
        Err((p, _)) if truncated => p,
        Err((_, e)) => return Err(corrupt(format!("bad word/document.xml: {e}"))),
    };

    Ok(from_paragraphs(
        Format::Docx,
        paragraphs.into_iter().map(|p| (p.text, p.level)),
        warnings,
    ))
}

/// The paragraphs of `word/document.xml`; on an XML error, those read
/// before it with the error.
fn paragraphs(xml: &str) -> Result<Vec<Paragraph>, (Vec<Paragraph>, quick_xml::Error)> {
    let mut reader = Reader::from_str(xml);
    let mut out = Vec::new();
    let mut para: Option<Paragraph> = None;
    let mut in_text = false; // inside <w:t>
    let mut in_ppr = false; // inside <w:pPr> (tab stops there are not tabs)
    loop {
        let event = match reader.read_event() {
            Ok(e) => e,
            Err(e) => return Err((out, e)),
        };
        match &event {
            Event::Start(e) | Event::Empty(e) => {
                let is_start = matches!(event, Event::Start(_));
                let name = e.local_name();
                let name: &str = name.as_ref();
                match name {
                    "p" => {
                        // A paragraph nested in a text box ends the outer text run.
                        if let Some(p) = para.take() {
                            out.push(p);
                        }
                        if is_start {
                            para = Some(Paragraph::default());
                        }
                    }
                    "pPr" if is_start => in_ppr = true,
                    "pStyle" if in_ppr => {
                        if let (Some(p), Some(style)) = (para.as_mut(), attr_val(e)) {
                            if let Some(level) = style_level(&style) {
                                p.level = Some(level);
                            }
                        }
                    }
                    "outlineLvl" if in_ppr => {
                        if let Some(p) = para.as_mut() {
                            let lvl = attr_val(e).and_then(|v| v.parse::<u32>().ok());
                            if let (None, Some(l)) = (p.level, lvl) {
                                if l < 9 {
                                    p.level = Some(l + 1);
                                }
                            }
                        }
                    }
                    "t" if is_start => in_text = true,
                    "tab" if !in_ppr => {
                        if let Some(p) = para.as_mut() {
                            p.text.push('\t');
                        }
                    }
                    "br" | "cr" if !in_ppr => {
                        if let Some(p) = para.as_mut() {
                            p.text.push('\n');
                        }
                    }
                    _ => {}
                }
            }
            Event::End(e) => {
                let name = e.local_name();
                let name: &str = name.as_ref();
                match name {
                    "p" => {
                        if let Some(p) = para.take() {
                            out.push(p);
                        }
                    }
                    "pPr" => in_ppr = false,
                    "t" => in_text = false,
                    _ => {}
                }
            }
            Event::Text(t) if in_text => {
                if let Some(p) = para.as_mut() {
                    p.text.push_str(&t.xml10_content());
                }
            }
            Event::CData(t) if in_text => {
                if let Some(p) = para.as_mut() {
                    p.text.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) if in_text => {
                if let Some(p) = para.as_mut() {
                    let c = match r.resolve_char_ref() {
                        Ok(Some(c)) => Some(c),
                        _ => resolve_entity(r),
                    };
                    if let Some(c) = c {
                        p.text.push(c);
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if let Some(p) = para.take() {
        out.push(p);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn style_levels() {
        assert_eq!(style_level("Title"), Some(0));
        assert_eq!(style_level("Heading1"), Some(1));
        assert_eq!(style_level("heading 3"), Some(3));
        assert_eq!(style_level("Heading10"), None);
        assert_eq!(style_level("Normal"), None);
    }

    #[test]
    fn runs_tabs_breaks_entities() {
        let xml = r#"<w:document xmlns:w="x"><w:body>
          <w:p><w:pPr><w:tabs><w:tab w:val="left" w:pos="720"/></w:tabs></w:pPr>
            <w:r><w:t>a &amp; b</w:t></w:r><w:r><w:tab/><w:t xml:space="preserve"> c</w:t><w:br/><w:t>d&#233;</w:t></w:r></w:p>
          <w:p><w:pPr><w:pStyle w:val="Heading2"/></w:pPr><w:r><w:t>Head</w:t></w:r></w:p>
        </w:body></w:document>"#;
        let ps = paragraphs(xml).map_err(|(_, e)| e).unwrap();
        assert_eq!(ps.len(), 2);
        assert_eq!(ps[0].text, "a & b\t c\ndé");
        assert_eq!(ps[0].level, None);
        assert_eq!((ps[1].text.as_str(), ps[1].level), ("Head", Some(2)));
    }
}
