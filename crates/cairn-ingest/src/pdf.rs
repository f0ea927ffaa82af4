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

/// Inflate `input` (zlib, or raw deflate when the zlib header is bad, as
/// lopdf does) into at most `cap` bytes; `None` when it inflates to more.
fn inflated_len(input: &[u8], cap: u64) -> Option<u64> {
    use std::io::Read;
    let count = |r: &mut dyn Read| -> Option<u64> {
        let n = std::io::copy(&mut r.take(cap + 1), &mut std::io::sink()).unwrap_or(0);
        (n <= cap).then_some(n)
    };
    let n = count(&mut flate2::read::ZlibDecoder::new(input))?;
    if n == 0 && input.len() > 2 {
        return count(&mut flate2::read::DeflateDecoder::new(&input[2..]));
    }
    Some(n)
}

/// LZW output length, up to `cap`.
fn lzw_len(input: &[u8], cap: u64) -> Option<u64> {
    struct Capped(u64, u64);
    impl std::io::Write for Capped {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            if self.0 > self.1 {
                return Err(std::io::Error::other("past the cap"));
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut out = Capped(0, cap);
    let mut dec = weezl::decode::Decoder::with_tiff_size_switch(weezl::BitOrder::Msb, 8);
    let _ = dec.into_stream(&mut out).decode_all(input);
    (out.0 <= cap).then_some(out.0)
}

/// Decompression bombs: every stream that inflates (Flate or LZW as its
/// first filter) is measured against `cap` before any extractor inflates
/// it; a stream over the cap, or any stream once the file's streams
/// together pass four caps, is emptied. Images are left alone: the text
/// extractor never inflates them. Returns how many streams were emptied.
fn defuse_streams(doc: &mut lopdf::Document, cap: u64) -> usize {
    let budget = cap.saturating_mul(4);
    let mut total = 0u64;
    let mut emptied = 0;
    for obj in doc.objects.values_mut() {
        let lopdf::Object::Stream(stream) = obj else {
            continue;
        };
        let is_image = stream
            .dict
            .get(b"Subtype")
            .and_then(lopdf::Object::as_name)
            .is_ok_and(|n| n == b"Image");
        if is_image {
            continue;
        }
        let first = match stream.filters() {
            Ok(f) if !f.is_empty() => f[0].to_vec(),
            _ => continue,
        };
        let len = match first.as_slice() {
            b"FlateDecode" | b"Fl" => inflated_len(&stream.content, cap),
            b"LZWDecode" | b"LZW" => lzw_len(&stream.content, cap),
            _ => continue,
        };
        match len {
            Some(n) if total.saturating_add(n) <= budget => total += n,
            _ => {
                stream.set_plain_content(Vec::new());
                emptied += 1;
            }
        }
    }
    emptied
}

/// Load a PDF: the text of its first `limits.max_pdf_pages` pages, with
/// streams that would inflate past `limits.max_inflate_bytes` left out.
pub(crate) fn load(
    path: &Path,
    bytes: &[u8],
    limits: &crate::LoadLimits,
) -> Result<Document, IngestError> {
    let corrupt = |reason: String| IngestError::Corrupt {
        path: path.to_path_buf(),
        format: "PDF",
        reason,
    };
    let mut parsed = std::panic::catch_unwind(|| lopdf::Document::load_mem(bytes))
        .map_err(|_| corrupt("the PDF parser gave up on this file".into()))?
        .map_err(|e| corrupt(e.to_string()))?;
    if parsed.is_encrypted() {
        return Err(IngestError::EncryptedPdf {
            path: path.to_path_buf(),
        });
    }
    let mut warnings = Vec::new();
    let emptied = defuse_streams(&mut parsed, limits.max_inflate_bytes);
    if emptied > 0 {
        warnings.push(format!(
            "{emptied} stream(s) inflating past {} MiB left out (ingest.max_inflate_mb)",
            limits.max_inflate_bytes >> 20
        ));
    }
    let pages: Vec<u32> = parsed.get_pages().keys().copied().collect();
    let page_count = pages.len();
    let read = page_count.min(limits.max_pdf_pages as usize);
    if read < page_count {
        warnings.push(format!(
            "text read from the first {read} of {page_count} pages (ingest.max_pdf_pages)"
        ));
    }

    let mut text = String::new();
    let mut sections = Vec::new();
    let mut failed = 0usize;
    for &number in &pages[..read] {
        // pdf-extract panics on some malformed pages; that costs the page.
        let raw = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut s = String::new();
            let done = {
                let mut out = pdf_extract::PlainTextOutput::new(&mut s);
                pdf_extract::output_doc_page(&parsed, &mut out, number)
            };
            done.map(|_| s)
        }));
        let raw = match raw {
            Ok(Ok(s)) => s,
            _ => {
                failed += 1;
                continue;
            }
        };
        let page = tidy_page(&raw);
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
            headings: vec![format!("Page {number}")],
        });
    }
    if failed == read && read > 0 {
        return Err(corrupt("text extraction failed on every page".into()));
    }
    if text.is_empty() {
        return Err(IngestError::NoTextLayer {
            path: path.to_path_buf(),
        });
    }
    if failed > 0 {
        warnings.push(format!(
            "text extraction failed on {failed} of {read} pages"
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
        let err = load(
            Path::new("junk.pdf"),
            b"this is not a pdf at all",
            &crate::LoadLimits::default(),
        )
        .unwrap_err();
        assert!(
            matches!(err, IngestError::Corrupt { format: "PDF", .. }),
            "{err}"
        );
        assert!(
            err.to_string().starts_with("junk.pdf: corrupt PDF: "),
            "{err}"
        );
    }
}
