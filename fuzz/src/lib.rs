//! What every fuzz target shares: load an input as a file of a given name
//! with tight limits, turn a loader panic that Cairn caught into a crash the
//! fuzzer reports, and check the loaded document's invariants.

use cairn_core::Document;
use cairn_ingest::{IngestError, LoadLimits};
use std::path::Path;

/// Limits small enough that one input stays fast: a bomb is cut at 8 MiB,
/// a PDF read up to 20 pages, and no OCR program started (an image or a
/// scanned page is reported as needing OCR, after its header is read).
pub fn limits() -> LoadLimits {
    let d = LoadLimits::default();
    LoadLimits {
        max_inflate_bytes: 8 << 20,
        max_pdf_pages: 20,
        ocr: cairn_ingest::OcrLimits {
            enabled: false,
            ..d.ocr.clone()
        },
        ..d
    }
}

/// Panics stay panics: libfuzzer-sys aborts in its panic hook, which would
/// report the panics that Cairn catches on purpose (pdf-extract's, page by
/// page) as crashes. The default hook prints and unwinds; a panic that
/// escapes still aborts (libfuzzer-sys catches it at the top).
pub fn init() {
    let _ = std::panic::take_hook();
}

/// Load `data` as a file named `name`; a panic Cairn caught in a loader is
/// raised again (a bug to fix, not a bad file); a loaded document must
/// hold its invariants.
pub fn load(name: &str, data: &[u8]) -> Option<Document> {
    match cairn_ingest::load_with(Path::new(name), data, &limits()) {
        Ok(doc) => {
            check(&doc);
            Some(doc)
        }
        Err(e @ IngestError::Panicked { .. }) => panic!("{e}"),
        Err(_) => None,
    }
}

/// Sections lie inside the text, on character boundaries, in order and
/// without overlap.
pub fn check(doc: &Document) {
    let mut last = 0;
    for s in &doc.sections {
        assert!(s.start <= s.end && s.end <= doc.text.len(), "{s:?} in {} bytes", doc.text.len());
        assert!(doc.text.is_char_boundary(s.start) && doc.text.is_char_boundary(s.end), "{s:?}");
        assert!(s.start >= last, "sections out of order: {:?}", doc.sections);
        last = s.end;
    }
}
