//! Plain text: decoded (lossily if need be), line endings normalised, one
//! section.

use cairn_core::{Document, Format, Section};

/// Warning recorded when bytes were not valid UTF-8.
pub(crate) const LOSSY_WARNING: &str = "invalid UTF-8 replaced with U+FFFD";

/// Decode bytes as UTF-8 (replacing invalid sequences and recording a warning),
/// drop a leading byte-order mark and turn CRLF into LF.
pub(crate) fn decode(bytes: &[u8], warnings: &mut Vec<String>) -> String {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => {
            warnings.push(LOSSY_WARNING.to_string());
            String::from_utf8_lossy(bytes).into_owned()
        }
    };
    normalize_newlines(text)
}

/// CRLF → LF.
pub(crate) fn normalize_newlines(text: String) -> String {
    if text.contains("\r\n") {
        text.replace("\r\n", "\n")
    } else {
        text
    }
}

/// A document of `format` with one section spanning the whole text.
pub(crate) fn single_section(format: Format, text: String, warnings: Vec<String>) -> Document {
    let sections = vec![Section {
        start: 0,
        end: text.len(),
        headings: Vec::new(),
    }];
    Document {
        format,
        text,
        sections,
        warnings,
    }
}

/// Load plain text.
pub(crate) fn load(bytes: &[u8]) -> Document {
    let mut warnings = Vec::new();
    let text = decode(bytes, &mut warnings);
    single_section(Format::Text, text, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_and_single_section() {
        let doc = load(b"one\r\ntwo\r\n");
        assert_eq!(doc.text, "one\ntwo\n");
        assert_eq!(doc.sections.len(), 1);
        assert_eq!((doc.sections[0].start, doc.sections[0].end), (0, 8));
        assert!(doc.sections[0].headings.is_empty());
        assert!(doc.warnings.is_empty());
    }

    #[test]
    fn invalid_utf8_is_replaced_with_warning() {
        let doc = load(b"caf\xe9 au lait");
        assert_eq!(doc.text, "caf\u{FFFD} au lait");
        assert_eq!(doc.warnings, vec![LOSSY_WARNING.to_string()]);
    }

    #[test]
    fn bom_is_dropped() {
        assert_eq!(load(b"\xEF\xBB\xBFhi").text, "hi");
    }
}
