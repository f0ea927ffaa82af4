//! Tables as text: every row written with its header row's names
//! (`Name: Ada; Born: 1815`), so that a chunk holding a row says what each
//! value is. CSV and TSV files are read here; XLSX sheets use
//! [`rows_as_text`] too.

use crate::text::decode;
use cairn_core::{Document, Format};
use std::path::Path;

/// Rows of cells as lines of text. The first row with any non-empty cell is
/// the header; each later row is written `header: value` for its non-empty
/// cells (a column without a header name is named by its number), joined by
/// `; `. A table of one row, or of one column, is written as it is.
pub(crate) fn rows_as_text(rows: &[Vec<String>]) -> String {
    let rows: Vec<&Vec<String>> = rows
        .iter()
        .filter(|r| r.iter().any(|c| !c.trim().is_empty()))
        .collect();
    let Some((header, body)) = rows.split_first() else {
        return String::new();
    };
    let width = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut out = String::new();
    if body.is_empty() || width < 2 {
        for r in &rows {
            out.push_str(&plain_row(r));
            out.push('\n');
        }
        return out;
    }
    let names: Vec<String> = (0..width)
        .map(|i| {
            let h = header.get(i).map(|h| clean(h)).unwrap_or_default();
            if h.is_empty() {
                format!("column {}", i + 1)
            } else {
                h
            }
        })
        .collect();
    out.push_str(&plain_row(header));
    out.push('\n');
    for r in body {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.trim().is_empty())
            .map(|(i, c)| format!("{}: {}", names[i], clean(c)))
            .collect();
        out.push_str(&cells.join("; "));
        out.push('\n');
    }
    out
}

fn clean(cell: &str) -> String {
    cell.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn plain_row(r: &[String]) -> String {
    r.iter()
        .map(|c| clean(c))
        .filter(|c| !c.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Parse delimited text (RFC 4180: quoted fields may hold the delimiter,
/// newlines and doubled quotes).
pub(crate) fn parse_delimited(text: &str, delim: char) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut at_field_start = true;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    field.push('"');
                    chars.next();
                } else {
                    quoted = false;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            '"' if at_field_start => {
                quoted = true;
                at_field_start = false;
            }
            c if c == delim => {
                row.push(std::mem::take(&mut field));
                at_field_start = true;
            }
            '\n' => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
                at_field_start = true;
            }
            '\r' => {}
            c => {
                field.push(c);
                at_field_start = false;
            }
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

/// The delimiter of a file: a tab for `.tsv`/`.tab`; otherwise the one of
/// `,`, `;`, tab and `|` that splits the first lines into the same number
/// (more than one) of fields most often.
fn delimiter(path: &Path, text: &str) -> char {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if matches!(ext.as_deref(), Some("tsv" | "tab")) {
        return '\t';
    }
    let sample: String = text.lines().take(20).collect::<Vec<_>>().join("\n");
    let mut best = (',', 0usize);
    for d in [',', ';', '\t', '|'] {
        let rows = parse_delimited(&sample, d);
        let Some(first) = rows.first() else { continue };
        let n = first.len();
        if n < 2 {
            continue;
        }
        let agree = rows.iter().filter(|r| r.len() == n).count();
        if agree > best.1 {
            best = (d, agree);
        }
    }
    best.0
}

/// Load a CSV or TSV file: one section of rows written with their headers.
pub(crate) fn load_csv(path: &Path, bytes: &[u8]) -> Document {
    let mut warnings = Vec::new();
    let raw = decode(bytes, &mut warnings);
    let rows = parse_delimited(&raw, delimiter(path, &raw));
    crate::text::single_section(Format::Csv, rows_as_text(&rows), warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_fields_and_headers() {
        let csv = "name,born,note\r\nAda,1815,\"wrote the \"\"first\"\" program, in notes\"\nAlan,1912,\n";
        let doc = load_csv(Path::new("people.csv"), csv.as_bytes());
        assert_eq!(
            doc.text,
            "name | born | note\nname: Ada; born: 1815; note: wrote the \"first\" program, in notes\nname: Alan; born: 1912\n"
        );
        assert_eq!(doc.format, Format::Csv);
    }

    #[test]
    fn delimiters_are_sniffed() {
        let semi = "a;b;c\n1;2,5;3\n4;5;6\n";
        assert_eq!(delimiter(Path::new("x.csv"), semi), ';');
        assert_eq!(delimiter(Path::new("x.tsv"), "a,b\n"), '\t');
        let rows = parse_delimited("x\t\"y\nz\"\n1\t2", '\t');
        assert_eq!(rows, vec![vec!["x", "y\nz"], vec!["1", "2"]]);
    }

    #[test]
    fn one_column_or_one_row_is_plain() {
        assert_eq!(
            rows_as_text(&[vec!["only".into()], vec!["x".into()]]),
            "only\nx\n"
        );
        assert_eq!(rows_as_text(&[vec!["a".into(), "b".into()]]), "a | b\n");
        let gap = rows_as_text(&[vec!["k".into(), "".into()], vec!["1".into(), "2".into()]]);
        assert_eq!(gap, "k\nk: 1; column 2: 2\n");
    }
}
