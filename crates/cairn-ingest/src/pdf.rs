//! PDF: the text layer of each page (via `pdf-extract`), one section per page
//! headed "Page N".

use crate::IngestError;
use cairn_core::{Document, Format, Section};
use std::path::Path;

/// Tidy one page's extracted text: LF line ends, no trailing blanks on lines,
/// at most one blank line in a row, no leading/trailing blank lines.
fn tidy_page(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut blank_run = 0usize;
    for line in raw.replace("\r\n", "\n").replace('\r', "\n").split('\n') {
        let line: String = line
            .trim_end()
            .chars()
            .filter(|c| !c.is_control() || *c == '\t')
            .collect();
        if line.trim().is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_run > 0 { "\n\n" } else { "\n" });
        }
        blank_run = 0;
        out.push_str(&line);
    }
    out
}

/// Load a PDF.
pub(crate) fn load(path: &Path, bytes: &[u8]) -> Result<Document, IngestError> {
    let corrupt = |reason: String| IngestError::CorruptPdf {
        path: path.to_path_buf(),
        reason,
    };
    let parsed = std::panic::catch_unwind(|| lopdf::Document::load_mem(bytes))
        .map_err(|_| corrupt("the PDF parser gave up on this file".into()))?
        .map_err(|e| corrupt(e.to_string()))?;
    if parsed.is_encrypted() {
        return Err(IngestError::EncryptedPdf {
            path: path.to_path_buf(),
        });
    }
    let page_count = parsed.get_pages().len();
    drop(parsed);

    // pdf-extract panics on some malformed files; contain that.
    let pages = std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem_by_pages(bytes))
        .map_err(|_| corrupt("text extraction failed (the extractor panicked)".into()))?
        .map_err(|e| corrupt(format!("text extraction failed: {e}")))?;
    if pages.len() < page_count {
        tracing::debug!(
            path = %path.display(),
            extracted = pages.len(),
            pages = page_count,
            "text extraction stopped early"
        );
    }

    let mut text = String::new();
    let mut sections = Vec::new();
    let mut warnings = Vec::new();
    for (i, raw) in pages.iter().enumerate() {
        let page = tidy_page(raw);
        if page.is_empty() {
            continue;
        }
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        let start = text.len();
        text.push_str(&page);
        sections.push(Section {
            start,
            end: text.len(),
            headings: vec![format!("Page {}", i + 1)],
        });
    }
    if text.is_empty() {
        return Err(IngestError::NoTextLayer {
            path: path.to_path_buf(),
        });
    }
    if pages.len() < page_count {
        warnings.push(format!(
            "text extracted from {} of {} pages",
            pages.len(),
            page_count
        ));
    }
    Ok(Document {
        format: Format::Pdf,
        text,
        sections,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tidy_collapses_blank_runs() {
        assert_eq!(tidy_page("\n\n a  \r\n\n\n\nb\n\n"), " a\n\nb");
        assert_eq!(tidy_page("x\ny"), "x\ny");
        assert_eq!(tidy_page(" \n \n"), "");
    }

    #[test]
    fn garbage_is_corrupt() {
        let err = load(Path::new("junk.pdf"), b"this is not a pdf at all").unwrap_err();
        assert!(matches!(err, IngestError::CorruptPdf { .. }), "{err}");
        assert!(
            err.to_string().starts_with("junk.pdf: corrupt PDF: "),
            "{err}"
        );
    }
}
