//! Reading a PDF's pages in batches, one pass of `pdf-extract` per batch.
//!
//! `pdf-extract` builds every font a page uses again on every page (its font
//! table is keyed by the page's resource names, so it is emptied at each
//! page): on Texinfo manuals that was three quarters of the loader's time,
//! most of it parsing the same embedded Type 1 programs and ToUnicode maps
//! hundreds of times. Here consecutive pages whose resources agree (every
//! resource name that two of them use names the same object), whose media
//! boxes are equal and whose content streams are balanced (`q`/`Q`,
//! `BT`/`ET`) are shown as one page: their content streams one after the
//! other, each inside `q … Q`, with the union of their resources, so every
//! font is built once per batch. Between two pages the batch shows a marker
//! glyph ("M" at [`MARK_SIZE`] points in a font of its own), which
//! [`crate::pdf::PageText`] takes as a page break and never writes.
//!
//! A page that does not fit (its own resources conflict, a form XObject with
//! fonts of its own, which `pdf-extract` would look up by name across the
//! batch, an unbalanced or unreadable content stream, another media box) is
//! read alone, as before; so is every page of a batch that fails or does
//! not give back one text per page. A batch holds at most [`MAX_BATCH`]
//! pages and [`MAX_BATCH_BYTES`] of content. The document is changed only
//! while a batch is read (the first page's `Contents` and `Resources`) and
//! restored after.

use crate::pdf::{number, resolve, PageRead, PageText};
use lopdf::{Dictionary, Document, Object, ObjectId, Stream};
use std::collections::HashMap;

/// The font size of the marker between two pages of a batch (a size no
/// document sets; exact in binary).
pub(crate) const MARK_SIZE: f64 = 977.25;
/// The marker's glyph.
pub(crate) const MARK_GLYPH: &str = "M";
/// The marker font's resource name.
const MARK_FONT: &[u8] = b"CairnPageMark";
/// At most this many pages in one batch (a failing batch is read again
/// page by page).
const MAX_BATCH: usize = 64;
/// At most this many bytes of content streams in one batch (held twice
/// while it is read), so that a batch costs no more memory than a few large
/// pages read alone.
const MAX_BATCH_BYTES: usize = 16 << 20;
/// How deep form XObjects are searched for fonts of their own.
const MAX_FORM_DEPTH: usize = 4;

/// What a page brings to a batch.
struct Parts {
    content: Vec<u8>,
    resources: Dictionary,
    media_box: Vec<f64>,
}

/// How the pages of a document were read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Batching {
    /// Passes of `pdf-extract` over two pages or more.
    pub(crate) batches: usize,
    /// The pages those passes read.
    pub(crate) batched_pages: usize,
}

/// Each page's raw text (`None`: extraction failed), for `pages` (number,
/// object id) in order, and how they were read.
pub(crate) fn page_texts(
    doc: &mut Document,
    pages: &[(u32, ObjectId)],
) -> (Vec<Option<PageRead>>, Batching) {
    let mut stats = Batching::default();
    let mut texts: Vec<Option<PageRead>> = vec![None; pages.len()];
    let mut batch: Vec<usize> = Vec::new();
    let mut merged = Dictionary::new();
    let mut media: Vec<f64> = Vec::new();
    let mut contents: Vec<Vec<u8>> = Vec::new();
    let mut widths = HashMap::new();
    for (i, &(number, id)) in pages.iter().enumerate() {
        let Some(mut parts) = page_parts(doc, id) else {
            run_batch(
                doc, pages, &batch, &contents, &merged, &mut texts, &mut stats,
            );
            batch.clear();
            contents.clear();
            texts[i] = one_page(doc, number);
            continue;
        };
        // Glyphs placed one at a time, merged into runs (`pdf_runs`).
        let fonts = crate::pdf_runs::fonts(doc, &parts.resources, &mut widths);
        if let Some(merged) = crate::pdf_runs::merge(&parts.content, &fonts) {
            parts.content = merged;
        }
        let bytes: usize = contents.iter().map(Vec::len).sum();
        let fits = !batch.is_empty()
            && batch.len() < MAX_BATCH
            && bytes + parts.content.len() <= MAX_BATCH_BYTES
            && parts.media_box == media
            && agrees(doc, &merged, &parts.resources);
        if !fits {
            run_batch(
                doc, pages, &batch, &contents, &merged, &mut texts, &mut stats,
            );
            batch.clear();
            contents.clear();
            merged = Dictionary::new();
            media = parts.media_box.clone();
        }
        merge(doc, &mut merged, &parts.resources);
        batch.push(i);
        contents.push(parts.content);
    }
    run_batch(
        doc, pages, &batch, &contents, &merged, &mut texts, &mut stats,
    );
    (texts, stats)
}

/// One page read alone (a panic inside `pdf-extract` costs the page).
pub(crate) fn one_page(doc: &Document, number: u32) -> Option<PageRead> {
    let raw = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut out = PageText::new();
        pdf_extract::output_doc_page(doc, &mut out, number).map(|_| out.into_page())
    }));
    match raw {
        Ok(Ok(s)) => Some(s),
        _ => None,
    }
}

/// Read the pages `batch` (indices into `pages`) in one pass, or one by one
/// when there is only one or the pass fails.
fn run_batch(
    doc: &mut Document,
    pages: &[(u32, ObjectId)],
    batch: &[usize],
    contents: &[Vec<u8>],
    merged: &Dictionary,
    texts: &mut [Option<PageRead>],
    stats: &mut Batching,
) {
    if batch.len() > 1 {
        if let Some(got) = read_batch(doc, pages[batch[0]], contents, merged) {
            if got.len() == batch.len() {
                for (&i, text) in batch.iter().zip(got) {
                    texts[i] = Some(text);
                }
                stats.batches += 1;
                stats.batched_pages += batch.len();
                return;
            }
        }
    }
    for &i in batch {
        texts[i] = one_page(doc, pages[i].0);
    }
}

/// The batch's pages as one: `first`'s page object shows every content
/// stream in turn with the merged resources, then gets its own back.
fn read_batch(
    doc: &mut Document,
    first: (u32, ObjectId),
    contents: &[Vec<u8>],
    merged: &Dictionary,
) -> Option<Vec<PageRead>> {
    let mark = format!(
        "q BT /{} {MARK_SIZE} Tf ({MARK_GLYPH}) Tj ET Q\n",
        String::from_utf8_lossy(MARK_FONT)
    );
    let mut content = Vec::with_capacity(contents.iter().map(|c| c.len() + 64).sum());
    for c in contents {
        content.extend_from_slice(b"q\n");
        content.extend_from_slice(c);
        content.extend_from_slice(b"\nQ\n");
        content.extend_from_slice(mark.as_bytes());
    }
    let mut resources = merged.clone();
    let mut fonts = match resources.get(b"Font") {
        Ok(Object::Dictionary(d)) => d.clone(),
        _ => Dictionary::new(),
    };
    fonts.set(
        MARK_FONT.to_vec(),
        Object::Dictionary(Dictionary::from_iter(vec![
            ("Type", Object::Name(b"Font".to_vec())),
            ("Subtype", Object::Name(b"Type1".to_vec())),
            ("BaseFont", Object::Name(b"Helvetica".to_vec())),
        ])),
    );
    resources.set("Font", Object::Dictionary(fonts));

    let stream = doc.add_object(Stream::new(Dictionary::new(), content));
    let saved = {
        let page = doc.get_dictionary_mut(first.1).ok()?;
        let saved = (page.remove(b"Contents"), page.remove(b"Resources"));
        page.set("Contents", Object::Reference(stream));
        page.set("Resources", Object::Dictionary(resources));
        saved
    };
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut out = PageText::batch();
        pdf_extract::output_doc_page(doc, &mut out, first.0).map(|_| out)
    }));
    // Put the page back as it was, whatever happened.
    doc.objects.remove(&stream);
    if let Ok(page) = doc.get_dictionary_mut(first.1) {
        page.remove(b"Contents");
        page.remove(b"Resources");
        if let Some(c) = saved.0 {
            page.set("Contents", c);
        }
        if let Some(r) = saved.1 {
            page.set("Resources", r);
        }
    }
    let out = out.ok()?.ok()?;
    let (pages, rest) = out.into_pages();
    // Everything shown belongs to a page: nothing after the last marker.
    rest.trim().is_empty().then_some(pages)
}

/// A page's content, resources and media box, when it can join a batch.
fn page_parts(doc: &Document, page: ObjectId) -> Option<Parts> {
    let dict = doc.get_dictionary(page).ok()?;
    let resources = match inherited(doc, dict, b"Resources")? {
        Object::Dictionary(d) => d.clone(),
        _ => return None,
    };
    if resources.has(MARK_FONT) || forms_have_fonts(doc, &resources, 0) {
        return None;
    }
    let media_box: Vec<f64> = match inherited(doc, dict, b"MediaBox")? {
        Object::Array(a) => a
            .iter()
            .map(|o| resolve(doc, o).and_then(number))
            .collect::<Option<Vec<f64>>>()?,
        _ => return None,
    };
    if media_box.len() != 4 {
        return None;
    }
    let content = doc.get_page_content(page).ok()?;
    balanced(&content).then_some(Parts {
        content,
        resources,
        media_box,
    })
}

/// Whether a content stream's `q`/`Q` and `BT`/`ET` pairs balance (never
/// closing more than it opened; text objects not nested), so that it cannot
/// leave its state to the next page of a batch or pop the batch's own. A
/// scan of its tokens (strings, names and comments skipped), not a
/// parse: `pdf-extract` parses the stream anyway, and parsing it twice cost
/// more than batching saved on documents with simple fonts. Inline images
/// (`BI`…`EI`, binary data) and an unterminated string make it "no".
fn balanced(content: &[u8]) -> bool {
    let (mut saves, mut texts) = (0i64, 0i64);
    let mut i = 0;
    let n = content.len();
    while i < n {
        let c = content[i];
        match c {
            b'(' => match literal_end(content, i) {
                Some(end) => i = end,
                None => return false,
            },
            b'%' => {
                while i < n && content[i] != b'\n' && content[i] != b'\r' {
                    i += 1;
                }
            }
            b'/' => {
                // A name: never an operator.
                i += 1;
                while i < n && !is_white(content[i]) && !is_delimiter(content[i]) {
                    i += 1;
                }
            }
            b'<' | b'>' | b'[' | b']' | b'{' | b'}' => i += 1,
            _ if is_white(c) => i += 1,
            _ => {
                let start = i;
                while i < n && !is_white(content[i]) && !is_delimiter(content[i]) {
                    i += 1;
                }
                match &content[start..i] {
                    b"q" => saves += 1,
                    b"Q" => saves -= 1,
                    b"BT" => texts += 1,
                    b"ET" => texts -= 1,
                    b"BI" | b"ID" | b"EI" => return false,
                    _ => {}
                }
                if saves < 0 || !(0..=1).contains(&texts) {
                    return false;
                }
                if i == start {
                    i += 1;
                }
            }
        }
    }
    saves == 0 && texts == 0
}

/// Where the literal string starting at `s[start]` (an opening
/// parenthesis) ends: just past its closing one, parentheses balanced and
/// backslash escapes skipped; `None` when it never closes.
pub(crate) fn literal_end(s: &[u8], start: usize) -> Option<usize> {
    let mut depth = 1;
    let mut i = start + 1;
    while i < s.len() && depth > 0 {
        match s[i] {
            b'\\' => i += 1,
            b'(' => depth += 1,
            b')' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    (depth == 0).then_some(i)
}

pub(crate) fn is_white(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' | 0)
}

pub(crate) fn is_delimiter(c: u8) -> bool {
    matches!(
        c,
        b'(' | b')' | b'<' | b'>' | b'[' | b']' | b'{' | b'}' | b'/' | b'%'
    )
}

/// A page attribute of its own or of the nearest ancestor that has it,
/// dereferenced.
fn inherited<'a>(doc: &'a Document, mut node: &'a Dictionary, key: &[u8]) -> Option<&'a Object> {
    for _ in 0..64 {
        if let Ok(v) = node.get(key) {
            return resolve(doc, v);
        }
        node = match node.get(b"Parent").ok().and_then(|p| resolve(doc, p))? {
            Object::Dictionary(d) => d,
            _ => return None,
        };
    }
    None
}

/// A resource category (`Font`, `XObject`, …) of `res` as a dictionary.
fn category<'a>(doc: &'a Document, res: &'a Dictionary, key: &[u8]) -> Option<&'a Dictionary> {
    match resolve(doc, res.get(key).ok()?)? {
        Object::Dictionary(d) => Some(d),
        _ => None,
    }
}

/// Whether a form XObject among `res` (or nested in one) has fonts of its
/// own: `pdf-extract` would look them up by name in the batch's font table.
fn forms_have_fonts(doc: &Document, res: &Dictionary, depth: usize) -> bool {
    let Some(xobjects) = category(doc, res, b"XObject") else {
        return false;
    };
    for (_, x) in xobjects.iter() {
        let Some(Object::Stream(s)) = resolve(doc, x) else {
            continue;
        };
        let Some(own) = s
            .dict
            .get(b"Resources")
            .ok()
            .and_then(|r| resolve(doc, r))
            .and_then(|r| r.as_dict().ok())
        else {
            continue;
        };
        if depth >= MAX_FORM_DEPTH
            || category(doc, own, b"Font").is_some_and(|f| !f.is_empty())
            || forms_have_fonts(doc, own, depth + 1)
        {
            return true;
        }
    }
    false
}

/// Whether every name `res` defines in a category means in `merged` what
/// it means in `res` (or is not there yet).
fn agrees(doc: &Document, merged: &Dictionary, res: &Dictionary) -> bool {
    for (key, value) in res.iter() {
        let Some(Object::Dictionary(entries)) = resolve(doc, value) else {
            continue;
        };
        let Ok(Object::Dictionary(have)) = merged.get(key) else {
            continue;
        };
        for (name, obj) in entries.iter() {
            if have.get(name).is_ok_and(|h| h != obj) {
                return false;
            }
        }
    }
    true
}

/// Add `res`'s categories to `merged` (which [`agrees`] with them).
fn merge(doc: &Document, merged: &mut Dictionary, res: &Dictionary) {
    for (key, value) in res.iter() {
        match resolve(doc, value) {
            Some(Object::Dictionary(entries)) => {
                let mut have = match merged.get(key) {
                    Ok(Object::Dictionary(d)) => d.clone(),
                    _ => Dictionary::new(),
                };
                for (name, obj) in entries.iter() {
                    if !have.has(name) {
                        have.set(name.clone(), obj.clone());
                    }
                }
                merged.set(key.clone(), Object::Dictionary(have));
            }
            Some(other) if !merged.has(key) => merged.set(key.clone(), other.clone()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lopdf::dictionary;

    /// A font dictionary: Helvetica, or Helvetica whose code for "A" shows
    /// "Z" (so text decoded with the wrong one of the two reads otherwise).
    fn font(doc: &mut Document, a_is_z: bool) -> ObjectId {
        let mut d = dictionary! {
            "Type" => "Font",
            "Subtype" => "Type1",
            "BaseFont" => "Helvetica",
        };
        if a_is_z {
            d.set(
                "Encoding",
                dictionary! {
                    "Type" => "Encoding",
                    "BaseEncoding" => "WinAnsiEncoding",
                    "Differences" => vec![65.into(), Object::Name(b"Z".to_vec())],
                },
            );
        } else {
            d.set("Encoding", "WinAnsiEncoding");
        }
        doc.add_object(d)
    }

    /// A document whose pages show `content` (raw operators) with `/F1`
    /// bound to the given font, the page's own resources.
    fn document(pages: &[(&str, ObjectId)], doc: &mut Document) -> Vec<(u32, ObjectId)> {
        let pages_id = doc.new_object_id();
        let mut kids: Vec<Object> = Vec::new();
        for (content, font) in pages {
            let content_id =
                doc.add_object(Stream::new(dictionary! {}, content.as_bytes().to_vec()));
            let page_id = doc.add_object(dictionary! {
                "Type" => "Page",
                "Parent" => pages_id,
                "Contents" => content_id,
                "Resources" => dictionary! { "Font" => dictionary! { "F1" => *font } },
            });
            kids.push(page_id.into());
        }
        let count = kids.len() as i64;
        doc.objects.insert(
            pages_id,
            Object::Dictionary(dictionary! {
                "Type" => "Pages",
                "Kids" => kids,
                "Count" => count,
                "MediaBox" => vec![0.into(), 0.into(), 612.into(), 792.into()],
            }),
        );
        let catalog = doc.add_object(dictionary! { "Type" => "Catalog", "Pages" => pages_id });
        doc.trailer.set("Root", catalog);
        doc.get_pages().into_iter().collect()
    }

    fn show(text: &str) -> String {
        format!("BT /F1 12 Tf 72 700 Td ({text}) Tj 0 -20 Td (line two) Tj ET")
    }

    #[test]
    fn batches_read_what_pages_read_alone() {
        let mut doc = Document::with_version("1.5");
        let plain = font(&mut doc, false);
        let z = font(&mut doc, true);
        let (p1, p2, p3, p4, p5, p6) = (
            show("Alpha one"),
            show("Alpha two"),
            show("Alpha three"),
            show("Alpha four"),
            format!("q {}", show("Alpha five")),
            show("Alpha six"),
        );
        let pages = document(
            &[
                (&p1, plain),
                (&p2, plain),
                // `/F1` is another font here: a batch of its own.
                (&p3, z),
                (&p4, plain),
                // Unbalanced: read alone.
                (&p5, plain),
                (&p6, plain),
            ],
            &mut doc,
        );
        let before = doc.clone();
        let (texts, stats) = page_texts(&mut doc, &pages);
        let alone: Vec<Option<PageRead>> = pages.iter().map(|&(n, _)| one_page(&doc, n)).collect();
        // The same text, and the same lines with the same sizes.
        assert_eq!(texts, alone);
        assert_eq!(
            stats,
            Batching {
                batches: 1,
                batched_pages: 2
            },
            "pages 1-2 together; 3, 4, 5 and 6 alone (4 stops at 5, 6 is last)"
        );
        assert_eq!(
            texts[0].as_ref().unwrap().lines,
            [
                ("Alpha one".to_string(), 12.0),
                ("line two".to_string(), 12.0)
            ]
        );
        let texts: Vec<String> = texts.into_iter().map(|t| t.unwrap().text).collect();
        assert!(texts[0].contains("Alpha one") && texts[0].contains("line two"));
        assert!(texts[2].contains("Zlpha three"), "{:?}", texts[2]);
        assert!(texts[3].contains("Alpha four"), "{:?}", texts[3]);
        // The markers between pages are not text.
        assert!(texts.iter().all(|t| !t.contains('M')), "{texts:?}");
        // The document is as it was.
        assert_eq!(doc.objects, before.objects);
    }

    #[test]
    fn a_page_showing_the_marker_keeps_its_text() {
        let mut doc = Document::with_version("1.5");
        let plain = font(&mut doc, false);
        let odd = format!(
            "BT /F1 12 Tf 72 700 Td (Before) Tj /F1 {MARK_SIZE} Tf (M) Tj /F1 12 Tf (After) Tj ET"
        );
        let (a, c) = (show("Alpha one"), show("Alpha three"));
        let pages = document(&[(&a, plain), (&odd, plain), (&c, plain)], &mut doc);
        let (texts, stats) = page_texts(&mut doc, &pages);
        // The batch gives back four pages for three: read again one by one.
        assert_eq!(stats, Batching::default());
        let odd = texts[1].as_ref().unwrap().text.as_str();
        assert!(
            odd.contains("Before") && odd.contains('M') && odd.contains("After"),
            "{odd:?}"
        );
        assert!(texts[2].as_ref().unwrap().text.contains("Alpha three"));
    }

    #[test]
    fn long_runs_of_pages_batch_by_sixty_four() {
        let mut doc = Document::with_version("1.5");
        let plain = font(&mut doc, false);
        let contents: Vec<String> = (0..130).map(|i| show(&format!("Page body {i}"))).collect();
        let spec: Vec<(&str, ObjectId)> = contents.iter().map(|c| (c.as_str(), plain)).collect();
        let pages = document(&spec, &mut doc);
        let (texts, stats) = page_texts(&mut doc, &pages);
        assert_eq!(
            stats,
            Batching {
                batches: 3,
                batched_pages: 130
            }
        );
        for (i, t) in texts.iter().enumerate() {
            let t = t.as_ref().unwrap();
            assert!(t.text.starts_with(&format!("Page body {i}")), "{i}: {t:?}");
            assert_eq!(Some(t), one_page(&doc, pages[i].0).as_ref());
        }
    }

    #[test]
    fn balance_is_checked_in_order() {
        assert!(balanced(b"q BT (a) Tj ET Q"));
        assert!(balanced(b"q q Q BT ET BT ET Q"));
        assert!(!balanced(b"Q q"), "closes before it opens");
        assert!(!balanced(b"q BT ET"), "a state left saved");
        assert!(!balanced(b"BT BT ET ET"), "text objects do not nest");
        assert!(!balanced(b"BT (a) Tj"), "a text object left open");
        // Operators inside strings, names, comments and dictionaries are
        // not operators.
        assert!(balanced(
            b"BT (a Q ET \\) q \\( BT) Tj ET /Q 1 % Q ET\nq<</Q 1>>Q"
        ));
        assert!(balanced(b"q[(Q)-250(BT)]TJ Q"));
        assert!(!balanced(b"BT (open Tj ET"), "an unterminated string");
        assert!(!balanced(b"q BI /W 1 ID Q EI Q"), "inline image data");
    }
}
