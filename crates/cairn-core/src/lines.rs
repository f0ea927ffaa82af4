//! Line fingerprints: the unit of cross-document boilerplate detection.
//!
//! A document's text is cut into lines; each line with at least one letter
//! or digit is normalised (whitespace collapsed, lower-cased) and hashed to a
//! 64-bit key. The catalog keeps, for every key, how many documents contain
//! it (`line_df`), and the ingest pipeline uses those counts to leave out
//! blocks repeated across many documents of a collection (navigation,
//! headers, footers, tables of contents). The hash is FNV-1a, fixed here so
//! that keys stored in a catalog mean the same thing on every machine and in
//! every version.

use std::ops::Range;

/// The key of a line: FNV-1a 64 over its normalised form, or `None` for a
/// line with no letter or digit (blank lines, `}`, `----`).
pub fn line_key(line: &str) -> Option<u64> {
    if !line.chars().any(char::is_alphanumeric) {
        return None;
    }
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    let mut h = OFFSET;
    let mut first = true;
    for word in line.split_whitespace() {
        if !first {
            h ^= u64::from(b' ');
            h = h.wrapping_mul(PRIME);
        }
        first = false;
        for c in word.chars().flat_map(char::to_lowercase) {
            let mut buf = [0u8; 4];
            for &b in c.encode_utf8(&mut buf).as_bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(PRIME);
            }
        }
    }
    Some(h)
}

/// The lines of `text` with their byte ranges (without the `\n`).
pub fn lines_with_ranges(text: &str) -> impl Iterator<Item = (Range<usize>, &str)> {
    let mut start = 0;
    text.split('\n').map(move |line| {
        let r = start..start + line.len();
        start = r.end + 1;
        (r, line)
    })
}

/// The distinct keys of a document's lines, sorted: what one document
/// contributes to the collection's line counts.
pub fn document_line_keys(text: &str) -> Vec<u64> {
    let mut keys: Vec<u64> = text.split('\n').filter_map(line_key).collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_ignore_case_and_spacing_but_not_words() {
        assert_eq!(line_key("Prev  Up\tHome"), line_key("  prev up home "));
        assert_ne!(line_key("Prev Up Home"), line_key("Prev Up Home Next"));
        assert_ne!(line_key("ab c"), line_key("a bc"));
        assert_eq!(line_key("  ---  "), None);
        assert_eq!(line_key(""), None);
        // Fixed forever: catalogs store these.
        assert_eq!(line_key("a"), Some(0xaf63_dc4c_8601_ec8c));
    }

    #[test]
    fn ranges_cover_each_line() {
        let text = "one\n\ntwo three\nfour";
        let got: Vec<_> = lines_with_ranges(text)
            .map(|(r, l)| (text[r].to_string(), l.to_string()))
            .collect();
        assert_eq!(got.len(), 4);
        assert!(got.iter().all(|(a, b)| a == b));
        assert_eq!(got[2].0, "two three");
    }

    #[test]
    fn document_keys_are_distinct() {
        let keys = document_line_keys("a\nb\nA\n\n}\nb");
        assert_eq!(keys.len(), 2);
    }
}
