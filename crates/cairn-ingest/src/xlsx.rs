//! XLSX: each worksheet in the workbook's order, as a section headed by
//! the sheet's name, holding its rows written with their header row's
//! names ([`crate::table::rows_as_text`]). Cell values are what the file
//! stores: shared and inline strings, numbers as written (a date is the
//! number Excel keeps for it), booleans as TRUE/FALSE, a formula's cached
//! result.

use crate::compose::Composer;
use crate::package::{attr, local, walk_part, Package, XmlEvent};
use crate::table::rows_as_text;
use crate::{IngestError, LoadLimits};
use cairn_core::{Document, Format};
use std::path::Path;

/// The shared string table: each `<si>`'s text (its runs joined; phonetic
/// runs left out).
fn shared_strings(pkg: &mut Package<'_>) -> Result<Vec<String>, IngestError> {
    let name = "xl/sharedStrings.xml";
    let Some((xml, cut)) = pkg.read(name)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    let (mut in_t, mut in_phonetic) = (false, false);
    walk_part(pkg, name, &xml, cut, |ev| match ev {
        XmlEvent::Open(e) => match local(e).as_str() {
            "si" => cur = Some(String::new()),
            "t" => in_t = true,
            "rPh" => in_phonetic = true,
            _ => {}
        },
        XmlEvent::Empty(e) => {
            if local(e) == "si" {
                out.push(String::new());
            }
        }
        XmlEvent::Close(n) => match n {
            "si" => out.push(cur.take().unwrap_or_default()),
            "t" => in_t = false,
            "rPh" => in_phonetic = false,
            _ => {}
        },
        XmlEvent::Text(t) => {
            if let (true, false, Some(c)) = (in_t, in_phonetic, cur.as_mut()) {
                c.push_str(t);
            }
        }
    })?;
    Ok(out)
}

/// Column index (0-based) of a cell reference such as `BC12`.
fn column(reference: &str) -> Option<usize> {
    let letters: String = reference
        .chars()
        .take_while(|c| c.is_ascii_alphabetic())
        .collect();
    if letters.is_empty() || letters.len() > 3 {
        return None;
    }
    let mut n = 0usize;
    for c in letters.chars() {
        n = n * 26 + (c.to_ascii_uppercase() as usize - 'A' as usize + 1);
    }
    Some(n - 1)
}

/// Columns past this are not laid out (a stray cell at `XFD1` would make
/// every row sixteen thousand cells wide).
const MAX_COLUMNS: usize = 1024;

fn sheet_rows(
    pkg: &Package<'_>,
    name: &str,
    xml: &str,
    cut: bool,
    shared: &[String],
) -> Result<Vec<Vec<String>>, IngestError> {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut row: Option<Vec<String>> = None;
    // The cell being read: column, type, value.
    let mut cell: Option<(usize, String, String)> = None;
    let mut in_value = false;
    let mut next_col = 0usize;
    walk_part(pkg, name, xml, cut, |ev| match ev {
        XmlEvent::Open(e) | XmlEvent::Empty(e) => {
            let open = matches!(ev, XmlEvent::Open(_));
            match local(e).as_str() {
                "row" => {
                    row = Some(Vec::new());
                    next_col = 0;
                    if !open {
                        rows.push(Vec::new());
                        row = None;
                    }
                }
                "c" => {
                    let col = attr(e, "r").and_then(|r| column(&r)).unwrap_or(next_col);
                    next_col = col + 1;
                    let kind = attr(e, "t").unwrap_or_default();
                    if open {
                        cell = Some((col, kind, String::new()));
                    }
                }
                "v" | "t" if open && cell.is_some() => in_value = true,
                _ => {}
            }
        }
        XmlEvent::Close(n) => match n {
            "v" | "t" => in_value = false,
            "c" => {
                let (Some((col, kind, raw)), Some(r)) = (cell.take(), row.as_mut()) else {
                    return;
                };
                if col >= MAX_COLUMNS {
                    return;
                }
                let value = match kind.as_str() {
                    "s" => raw
                        .trim()
                        .parse::<usize>()
                        .ok()
                        .and_then(|i| shared.get(i).cloned())
                        .unwrap_or_default(),
                    "b" => match raw.trim() {
                        "1" => "TRUE".into(),
                        "0" => "FALSE".into(),
                        other => other.to_string(),
                    },
                    _ => raw,
                };
                if r.len() <= col {
                    r.resize(col + 1, String::new());
                }
                r[col] = value;
            }
            "row" => {
                if let Some(r) = row.take() {
                    rows.push(r);
                }
            }
            _ => {}
        },
        XmlEvent::Text(t) => {
            if let (true, Some((_, _, v))) = (in_value, cell.as_mut()) {
                v.push_str(t);
            }
        }
    })?;
    if let Some(r) = row.take() {
        rows.push(r);
    }
    Ok(rows)
}

pub(crate) fn load(
    path: &Path,
    bytes: &[u8],
    limits: &LoadLimits,
) -> Result<Document, IngestError> {
    let mut pkg = Package::open(path, bytes, "XLSX", limits)?;
    let workbook = "xl/workbook.xml";
    let (xml, cut) = pkg.require(workbook)?;
    let rels = pkg.relationships(workbook)?;
    let mut sheets: Vec<(String, String)> = Vec::new();
    walk_part(&pkg, workbook, &xml, cut, |ev| {
        if let XmlEvent::Open(e) | XmlEvent::Empty(e) = ev {
            if local(e) == "sheet" {
                let name = attr(e, "name").unwrap_or_default();
                if let Some(r) = attr(e, "r:id")
                    .or_else(|| attr(e, "id"))
                    .and_then(|id| rels.iter().find(|r| r.id == id))
                {
                    sheets.push((name, r.target.clone()));
                }
            }
        }
    })?;
    if sheets.is_empty() {
        return Err(pkg.corrupt("no worksheets listed in xl/workbook.xml"));
    }
    let shared = shared_strings(&mut pkg)?;
    let mut doc = Composer::new();
    for (i, (name, part)) in sheets.iter().enumerate() {
        if pkg.exhausted() {
            break;
        }
        let Some((xml, cut)) = pkg.read(part)? else {
            pkg.warnings
                .push(format!("sheet {name:?} ({part}) is listed but missing"));
            continue;
        };
        let rows = sheet_rows(&pkg, part, &xml, cut, &shared)?;
        let title = if name.trim().is_empty() {
            format!("Sheet {}", i + 1)
        } else {
            name.trim().to_string()
        };
        let body = rows_as_text(&rows);
        if body.trim().is_empty() {
            continue;
        }
        doc.push_text(std::slice::from_ref(&title), &format!("{title}\n{body}"));
    }
    doc.warnings.append(&mut pkg.warnings);
    Ok(doc.finish(Format::Xlsx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_references() {
        assert_eq!(column("A1"), Some(0));
        assert_eq!(column("Z9"), Some(25));
        assert_eq!(column("AA3"), Some(26));
        assert_eq!(column("XFD1048576"), Some(16383));
        assert_eq!(column("12"), None);
    }
}
