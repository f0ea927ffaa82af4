//! Zip containers (PPTX, XLSX, ODT, EPUB): parts read by name, with one
//! inflate budget for the whole file, so that a decompression bomb, or many
//! parts each under the cap, cost the budget and not the machine's memory;
//! and the XML helpers their loaders share.

use crate::{IngestError, LoadLimits};
use quick_xml::events::BytesStart;
use std::io::{Cursor, Read};
use std::path::Path;

pub(crate) struct Package<'a> {
    path: &'a Path,
    format: &'static str,
    archive: zip::ZipArchive<Cursor<&'a [u8]>>,
    /// Bytes that parts may still inflate to.
    budget: u64,
    cap: u64,
    pub(crate) warnings: Vec<String>,
}

impl<'a> Package<'a> {
    pub(crate) fn open(
        path: &'a Path,
        bytes: &'a [u8],
        format: &'static str,
        limits: &LoadLimits,
    ) -> Result<Package<'a>, IngestError> {
        let archive = zip::ZipArchive::new(Cursor::new(bytes))
            .map_err(|e| corrupt(path, format, format!("not a zip archive: {e}")))?;
        Ok(Package {
            path,
            format,
            archive,
            budget: limits.max_inflate_bytes,
            cap: limits.max_inflate_bytes,
            warnings: Vec::new(),
        })
    }

    /// An error about this file's structure.
    pub(crate) fn corrupt(&self, reason: impl Into<String>) -> IngestError {
        corrupt(self.path, self.format, reason.into())
    }

    /// Names of the parts, in the archive's order.
    pub(crate) fn names(&self) -> Vec<String> {
        self.archive.file_names().map(str::to_string).collect()
    }

    /// A part's bytes, or `None` when there is no such part. A part is read
    /// up to what is left of the budget; one cut there is returned as far as
    /// it was read, with a warning, and `true`.
    pub(crate) fn read_bytes(
        &mut self,
        name: &str,
    ) -> Result<Option<(Vec<u8>, bool)>, IngestError> {
        let mut part = match self.archive.by_name(name) {
            Ok(p) => p,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => {
                return Err(corrupt(
                    self.path,
                    self.format,
                    format!("cannot open {name}: {e}"),
                ))
            }
        };
        let allowed = self.budget;
        if allowed == 0 {
            // Spent: said once, when the part that spent it was cut.
            return Ok(Some((Vec::new(), true)));
        }
        let mut raw = Vec::new();
        (&mut part)
            .take(allowed.saturating_add(1))
            .read_to_end(&mut raw)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::OutOfMemory => IngestError::OutOfMemory {
                    path: self.path.to_path_buf(),
                    what: format!("inflating {name}"),
                },
                _ => corrupt(
                    self.path,
                    self.format,
                    format!("cannot inflate {name}: {e}"),
                ),
            })?;
        drop(part);
        let cut = raw.len() as u64 > allowed;
        if cut {
            raw.truncate(allowed as usize);
            self.warnings.push(format!(
                "the parts of this file inflate past {} MiB in all; {name} was read only that far and later parts were left out (ingest.max_inflate_mb)",
                self.cap >> 20
            ));
        }
        self.budget -= raw.len() as u64;
        Ok(Some((raw, cut)))
    }

    /// A part as text (invalid UTF-8 replaced, with a warning; a part cut
    /// by the budget ends at a whole character).
    pub(crate) fn read(&mut self, name: &str) -> Result<Option<(String, bool)>, IngestError> {
        let Some((mut raw, cut)) = self.read_bytes(name)? else {
            return Ok(None);
        };
        if cut {
            while !raw.is_empty()
                && std::str::from_utf8(&raw).is_err_and(|e| e.error_len().is_none())
            {
                raw.pop();
            }
        }
        let text = match String::from_utf8(raw) {
            Ok(s) => s,
            Err(e) => {
                self.warnings
                    .push(format!("{name}: {}", crate::text::LOSSY_WARNING));
                String::from_utf8_lossy(e.as_bytes()).into_owned()
            }
        };
        Ok(Some((text, cut)))
    }

    /// Whether the budget is spent (later parts would be empty).
    pub(crate) fn exhausted(&self) -> bool {
        self.budget == 0
    }

    /// A required part, or an error naming it.
    pub(crate) fn require(&mut self, name: &str) -> Result<(String, bool), IngestError> {
        match self.read(name)? {
            Some(p) => Ok(p),
            None => Err(self.corrupt(format!("no {name} in the archive"))),
        }
    }

    /// The relationships of a part (`dir/_rels/file.rels`): id → target
    /// resolved against the part's directory, with the type.
    pub(crate) fn relationships(&mut self, part: &str) -> Result<Vec<Relationship>, IngestError> {
        let (dir, file) = match part.rsplit_once('/') {
            Some((d, f)) => (d, f),
            None => ("", part),
        };
        let rels = if dir.is_empty() {
            format!("_rels/{file}.rels")
        } else {
            format!("{dir}/_rels/{file}.rels")
        };
        let Some((xml, _)) = self.read(&rels)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let _ = walk(&xml, |ev| {
            if let XmlEvent::Open(e) | XmlEvent::Empty(e) = ev {
                if local(e) == "Relationship" {
                    let id = attr(e, "Id").unwrap_or_default();
                    let target = attr(e, "Target").unwrap_or_default();
                    let kind = attr(e, "Type").unwrap_or_default();
                    let external = attr(e, "TargetMode").is_some_and(|m| m == "External");
                    if !external {
                        out.push(Relationship {
                            id,
                            target: resolve(dir, &target),
                            kind,
                        });
                    }
                }
            }
        });
        Ok(out)
    }
}

/// [`IngestError::Corrupt`] for `path` (a free function: it is needed while
/// the archive is borrowed).
fn corrupt(path: &Path, format: &'static str, reason: String) -> IngestError {
    IngestError::Corrupt {
        path: path.to_path_buf(),
        format,
        reason,
    }
}

pub(crate) struct Relationship {
    pub(crate) id: String,
    pub(crate) target: String,
    pub(crate) kind: String,
}

/// A part name from a reference relative to `dir` (`..` and `.` resolved;
/// a leading `/` is the package root; a `#fragment` dropped).
pub(crate) fn resolve(dir: &str, target: &str) -> String {
    let target = target.split('#').next().unwrap_or_default();
    let target = percent_decode(target);
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        dir.split('/').filter(|p| !p.is_empty()).collect()
    };
    for seg in target.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    parts.join("/")
}

/// `%20` and the like in a reference (EPUB hrefs are URLs).
fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An element's local name (`a:t` → `t`).
pub(crate) fn local(e: &BytesStart<'_>) -> String {
    e.local_name().as_ref().to_string()
}

/// The value of an attribute by local name (`r:id` matches `id`; an exact
/// qualified name matches first), unescaped.
pub(crate) fn attr(e: &BytesStart<'_>, name: &str) -> Option<String> {
    let mut by_local = None;
    for a in e.attributes().flatten() {
        let key: &str = a.key.as_ref();
        let value = || {
            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map(|v| v.into_owned())
                .unwrap_or_else(|_| a.value.to_string())
        };
        if key == name {
            return Some(value());
        }
        if by_local.is_none() && key.rsplit(':').next() == Some(name) {
            by_local = Some(value());
        }
    }
    by_local
}

/// What [`walk`] reports, in document order.
pub(crate) enum XmlEvent<'e, 'x> {
    Open(&'e BytesStart<'x>),
    Empty(&'e BytesStart<'x>),
    /// The local name of a closed element.
    Close(&'e str),
    Text(&'e str),
}

/// The character of one of XML's five predefined entities.
pub(crate) fn resolve_entity(name: &str) -> Option<char> {
    Some(match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "apos" => '\'',
        "quot" => '"',
        _ => return None,
    })
}

/// Walk an XML document, calling `f` for every element and text (entity
/// and character references resolved). Stops at the first XML error and
/// returns it (what came before it was reported): a part cut by the
/// inflate budget ends mid-element.
pub(crate) fn walk(xml: &str, mut f: impl FnMut(XmlEvent<'_, '_>)) -> Result<(), quick_xml::Error> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    loop {
        match reader.read_event()? {
            Event::Start(e) => f(XmlEvent::Open(&e)),
            Event::Empty(e) => f(XmlEvent::Empty(&e)),
            Event::End(e) => {
                let name = e.local_name().as_ref().to_string();
                f(XmlEvent::Close(&name))
            }
            Event::Text(t) => f(XmlEvent::Text(&t.xml10_content())),
            Event::CData(t) => f(XmlEvent::Text(&t.xml10_content())),
            Event::GeneralRef(r) => {
                let c = match r.resolve_char_ref() {
                    Ok(Some(c)) => Some(c),
                    _ => resolve_entity(&r),
                };
                if let Some(c) = c {
                    let mut buf = [0u8; 4];
                    f(XmlEvent::Text(c.encode_utf8(&mut buf)));
                }
            }
            Event::Eof => return Ok(()),
            _ => {}
        }
    }
}

/// Walk a part that may have been cut by the budget: an XML error is
/// tolerated when the part was cut (what came before it stands), and is
/// the file's error otherwise.
pub(crate) fn walk_part(
    pkg: &Package<'_>,
    name: &str,
    xml: &str,
    cut: bool,
    f: impl FnMut(XmlEvent<'_, '_>),
) -> Result<(), IngestError> {
    match walk(xml, f) {
        Ok(()) => Ok(()),
        Err(_) if cut => Ok(()),
        Err(e) => Err(pkg.corrupt(format!("bad {name}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_resolve_against_the_part() {
        assert_eq!(
            resolve("ppt/slides", "../notesSlides/n1.xml"),
            "ppt/notesSlides/n1.xml"
        );
        assert_eq!(
            resolve("xl", "worksheets/sheet1.xml"),
            "xl/worksheets/sheet1.xml"
        );
        assert_eq!(
            resolve("xl", "/xl/worksheets/sheet2.xml"),
            "xl/worksheets/sheet2.xml"
        );
        assert_eq!(
            resolve("OEBPS", "text/ch%201.xhtml#top"),
            "OEBPS/text/ch 1.xhtml"
        );
        assert_eq!(resolve("", "./a/../b.xml"), "b.xml");
        assert_eq!(resolve("a", "../../../x"), "x");
    }

    #[test]
    fn walk_resolves_references_and_reports_errors() {
        let mut text = String::new();
        walk("<a><b>x &amp; &#233;</b></a>", |e| {
            if let XmlEvent::Text(t) = e {
                text.push_str(t)
            }
        })
        .unwrap();
        assert_eq!(text, "x & é");
        assert!(walk("<a><b>x</a>", |_| {}).is_err());
    }
}
