//! Jupyter notebooks (nbformat 4, and 3's worksheets): the cells in order
//! as one Markdown text — Markdown cells as they are, code cells fenced in
//! the kernel's language, their text outputs after them — read by the
//! Markdown loader, so the notebook's own headings make the sections.

use crate::IngestError;
use cairn_core::{Document, Format};
use serde_json::Value;
use std::path::Path;

/// Characters kept of one output (a long table or log is cut, with a mark).
const MAX_OUTPUT_CHARS: usize = 4000;

/// A cell's `source` (or an output's `text`): a string or a list of lines.
fn joined(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(Value::as_str).collect(),
        _ => String::new(),
    }
}

fn output_text(out: &Value) -> Option<String> {
    let text = match out.get("output_type").and_then(Value::as_str)? {
        "stream" => joined(out.get("text")?),
        "execute_result" | "display_data" | "pyout" => {
            let data = out.get("data").unwrap_or(out);
            joined(data.get("text/plain").or_else(|| data.get("text"))?)
        }
        "error" | "pyerr" => {
            let name = out.get("ename").and_then(Value::as_str).unwrap_or("Error");
            let value = out.get("evalue").and_then(Value::as_str).unwrap_or("");
            format!("{name}: {value}")
        }
        _ => return None,
    };
    let text = text.trim_end();
    if text.trim().is_empty() {
        return None;
    }
    Some(match text.char_indices().nth(MAX_OUTPUT_CHARS) {
        Some((cut, _)) => format!("{}\n[output cut]", &text[..cut]),
        None => text.to_string(),
    })
}

/// A fence longer than any run of backticks in `body`.
fn fence(body: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in body.chars() {
        if c == '`' {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    "`".repeat((longest + 1).max(3))
}

pub(crate) fn load(path: &Path, bytes: &[u8]) -> Result<Document, IngestError> {
    let corrupt = |reason: String| IngestError::Corrupt {
        path: path.to_path_buf(),
        format: "notebook",
        reason,
    };
    let nb: Value = serde_json::from_slice(bytes).map_err(|e| corrupt(format!("not JSON: {e}")))?;
    let cells: Vec<&Value> = match nb.get("cells").and_then(Value::as_array) {
        Some(c) => c.iter().collect(),
        None => match nb.get("worksheets").and_then(Value::as_array) {
            Some(ws) => ws
                .iter()
                .filter_map(|w| w.get("cells").and_then(Value::as_array))
                .flatten()
                .collect(),
            None => return Err(corrupt("no \"cells\" (is it a Jupyter notebook?)".into())),
        },
    };
    let meta = nb.get("metadata");
    let lang = meta
        .and_then(|m| m.get("kernelspec"))
        .and_then(|k| k.get("language"))
        .or_else(|| {
            meta.and_then(|m| m.get("language_info"))
                .and_then(|l| l.get("name"))
        })
        .and_then(Value::as_str)
        .unwrap_or("")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '_'))
        .collect::<String>();
    let mut md = String::new();
    for cell in cells {
        let kind = cell.get("cell_type").and_then(Value::as_str).unwrap_or("");
        let source = joined(
            cell.get("source")
                .or_else(|| cell.get("input"))
                .unwrap_or(&Value::Null),
        );
        let source = source.trim_end();
        match kind {
            "markdown" | "heading" | "raw" if !source.trim().is_empty() => {
                if kind == "heading" {
                    let level = cell
                        .get("level")
                        .and_then(Value::as_u64)
                        .unwrap_or(1)
                        .clamp(1, 6);
                    md.push_str(&"#".repeat(level as usize));
                    md.push(' ');
                }
                md.push_str(source);
                md.push_str("\n\n");
            }
            "code" => {
                if !source.trim().is_empty() {
                    let f = fence(source);
                    md.push_str(&format!("{f}{lang}\n{source}\n{f}\n\n"));
                }
                for out in cell
                    .get("outputs")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(text) = output_text(out) {
                        let f = fence(&text);
                        md.push_str(&format!("Output:\n\n{f}text\n{text}\n{f}\n\n"));
                    }
                }
            }
            _ => {}
        }
    }
    let mut doc = crate::markdown::load(md.as_bytes());
    doc.format = Format::Notebook;
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_become_markdown_with_fenced_code() {
        let nb = serde_json::json!({
            "nbformat": 4,
            "metadata": {"kernelspec": {"language": "python", "name": "python3"}},
            "cells": [
                {"cell_type": "markdown", "source": ["# Loading data\n", "We read the file."]},
                {"cell_type": "code", "source": "# not a heading\nprint(1)", "outputs": [
                    {"output_type": "stream", "name": "stdout", "text": ["1\n"]},
                    {"output_type": "error", "ename": "ValueError", "evalue": "bad", "traceback": []}
                ]},
                {"cell_type": "markdown", "source": "## Plotting\nA chart."}
            ]
        });
        let doc = load(Path::new("a.ipynb"), nb.to_string().as_bytes()).unwrap();
        assert_eq!(doc.format, Format::Notebook);
        assert!(
            doc.text
                .contains("```python\n# not a heading\nprint(1)\n```"),
            "{}",
            doc.text
        );
        assert!(doc.text.contains("ValueError: bad"));
        let paths: Vec<String> = doc
            .sections
            .iter()
            .map(|s| s.headings.join(" > "))
            .collect();
        assert_eq!(paths, ["Loading data", "Loading data > Plotting"]);
        let err = load(Path::new("b.ipynb"), b"{\"x\": 1}").unwrap_err();
        assert!(
            err.to_string()
                .contains("b.ipynb: corrupt notebook: no \"cells\""),
            "{err}"
        );
    }
}
