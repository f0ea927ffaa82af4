//! PDF: the text layer of each page (via `pdf-extract`), one section per page
//! headed by the bookmarks in force on it — or, in a PDF without bookmarks,
//! a section from each line set larger than the body text
//! ([`crate::pdf_headings`]) — then "Page N". A page whose text layer is
//! empty or nearly so and that shows an image (a scan) is read by OCR
//! ([`crate::ocr`]) and takes its place among the others.

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

/// A page as its glyphs showed it: the text, and each non-blank line of it
/// (trimmed) with the size most of its glyphs were set in, which is how a
/// PDF without bookmarks shows its headings ([`crate::pdf_headings`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct PageRead {
    pub(crate) text: String,
    pub(crate) lines: Lines,
}

/// A page's lines: each one's text and size in points.
pub(crate) type Lines = Vec<Line>;

/// One line of a page: its text and the size most of its glyphs share.
pub(crate) type Line = (String, f32);

/// One page's text from its glyphs: a space where the gap from the last
/// glyph's end is wider than a tenth of the font size — checked at every
/// glyph, not only where a text-showing operator starts, so that words a
/// typesetter placed by moving the pen (groff, many TeX outputs) stay
/// apart — and a line break where the pen moves down. A batch of pages
/// read as one ([`crate::pdf_batch`]) separates them by a marker glyph,
/// which ends a page here and is not written.
pub(crate) struct PageText {
    out: String,
    /// Whether this reads a batch (only then is the marker a page break: a
    /// page read alone keeps every glyph it shows).
    batch: bool,
    /// The pages a marker ended, in order.
    pages: Vec<PageRead>,
    /// The current page's finished lines.
    lines: Lines,
    /// Where the current line starts in `out`.
    line_start: usize,
    /// The current line's glyph sizes (tenths of a point) and how many
    /// glyphs of each.
    sizes: Vec<(u32, u32)>,
    height: f64,
    last_end: f64,
    last_y: f64,
    started: bool,
    /// Whether the last glyph written is a spacing accent (`¨`, `¸`, …)
    /// that the next letter may be set under.
    accent: bool,
}

/// The combining mark of a spacing accent as TeX sets them: a glyph of its
/// own, placed over (or under) the letter that follows it or that it
/// follows ("na¨ive", "Fran¸cois").
fn combining(accent: char) -> Option<char> {
    Some(match accent {
        '\u{60}' => '\u{300}',
        '\u{B4}' => '\u{301}',
        '\u{5E}' | '\u{2C6}' => '\u{302}',
        '\u{7E}' | '\u{2DC}' => '\u{303}',
        '\u{AF}' => '\u{304}',
        '\u{2D8}' => '\u{306}',
        '\u{2D9}' => '\u{307}',
        '\u{A8}' => '\u{308}',
        '\u{2DA}' => '\u{30A}',
        '\u{2DD}' => '\u{30B}',
        '\u{2C7}' => '\u{30C}',
        '\u{B8}' => '\u{327}',
        '\u{2DB}' => '\u{328}',
        _ => return None,
    })
}

/// One character when `ch` is one.
fn single(ch: &str) -> Option<char> {
    let mut cs = ch.chars();
    let c = cs.next()?;
    cs.next().is_none().then_some(c)
}

impl PageText {
    /// Set a spacing accent and a letter that overlap as one letter: the
    /// letter with the accent's combining mark, composed (NFC) where
    /// Unicode has the letter. The accent is the last character written
    /// when `accent_first`, else `ch` is the accent and the letter is.
    fn compose(&mut self, ch: char, accent_first: bool) -> bool {
        let Some(last) = self.out.chars().next_back() else {
            return false;
        };
        let (letter, accent) = if accent_first { (ch, last) } else { (last, ch) };
        let Some(mark) = combining(accent) else {
            return false;
        };
        if !letter.is_alphabetic() {
            return false;
        }
        use unicode_normalization::UnicodeNormalization;
        self.out.pop();
        self.out.extend([letter, mark].into_iter().nfc());
        true
    }

    /// The output for one page read alone.
    pub(crate) fn new() -> PageText {
        PageText {
            out: String::new(),
            batch: false,
            pages: Vec::new(),
            lines: Vec::new(),
            line_start: 0,
            sizes: Vec::new(),
            height: 0.0,
            last_end: 0.0,
            last_y: 0.0,
            started: false,
            accent: false,
        }
    }

    /// The output for a batch of pages separated by markers.
    pub(crate) fn batch() -> PageText {
        PageText {
            batch: true,
            ..PageText::new()
        }
    }

    /// End the current line: keep it, with its size, unless it is blank.
    fn end_line(&mut self) {
        let line = self.out[self.line_start..].trim();
        if !line.is_empty() {
            // The size most glyphs share; of equals, the larger.
            let size = self
                .sizes
                .iter()
                .max_by_key(|&&(size, count)| (count, size))
                .map_or(0.0, |&(size, _)| size as f32 / 10.0);
            self.lines.push((line.to_string(), size));
        }
        self.sizes.clear();
        self.line_start = self.out.len();
    }

    /// End the current line and start the next after `sep` (a line or a
    /// paragraph break).
    fn break_line(&mut self, sep: &str) {
        self.end_line();
        self.out.push_str(sep);
        self.line_start = self.out.len();
    }

    /// End the current page.
    fn take_page(&mut self) -> PageRead {
        self.end_line();
        self.line_start = 0;
        PageRead {
            text: std::mem::take(&mut self.out),
            lines: std::mem::take(&mut self.lines),
        }
    }

    /// The text of a page read alone.
    pub(crate) fn into_page(mut self) -> PageRead {
        self.take_page()
    }

    /// The pages the markers ended, and what came after the last marker.
    pub(crate) fn into_pages(self) -> (Vec<PageRead>, String) {
        (self.pages, self.out)
    }
}

impl pdf_extract::OutputDev for PageText {
    fn begin_page(
        &mut self,
        _page: u32,
        media_box: &pdf_extract::MediaBox,
        _art_box: Option<(f64, f64, f64, f64)>,
    ) -> Result<(), pdf_extract::OutputError> {
        self.height = media_box.ury - media_box.lly;
        self.started = false;
        Ok(())
    }

    fn end_page(&mut self) -> Result<(), pdf_extract::OutputError> {
        Ok(())
    }

    fn output_character(
        &mut self,
        trm: &pdf_extract::Transform,
        width: f64,
        spacing: f64,
        font_size: f64,
        ch: &str,
    ) -> Result<(), pdf_extract::OutputError> {
        if self.batch
            && font_size == crate::pdf_batch::MARK_SIZE
            && ch == crate::pdf_batch::MARK_GLYPH
        {
            let page = self.take_page();
            self.pages.push(page);
            self.started = false;
            return Ok(());
        }
        // The glyph's size and place on the page (y grows downwards).
        let size = font_size * (trm.m11 * trm.m22 - trm.m12 * trm.m21).abs().sqrt();
        let (x, y) = (trm.m31, self.height - trm.m32);
        // An accent and a letter set over each other: the pen went back.
        let overlaps =
            self.started && (y - self.last_y).abs() < size * 0.5 && x < self.last_end - size * 0.15;
        let one = single(ch);
        if overlaps {
            if let Some(c) = one {
                let accent_first = self.accent;
                if (accent_first || combining(c).is_some()) && self.compose(c, accent_first) {
                    self.accent = false;
                    self.last_end = self.last_end.max(x + width * size);
                    return Ok(());
                }
            }
        }
        // A space the word spacing takes back (groff through ps2pdf sets
        // one inside words, "neg ative", with a spacing of minus its
        // width): it moves the pen by nothing, so it is not a space.
        if ch == " " && font_size > 0.0 {
            let advance = width * size + spacing * size / font_size;
            if advance < size * 0.1 {
                return Ok(());
            }
        }
        self.accent = one.and_then(combining).is_some();
        if self.started {
            let dy = (y - self.last_y).abs();
            let blank =
                self.out.ends_with(char::is_whitespace) || ch.starts_with(char::is_whitespace);
            if dy > size * 1.5 {
                self.break_line("\n\n");
            } else if (x < self.last_end - size && dy > size * 0.5) || dy > size * 0.8 {
                self.break_line("\n");
            } else if x > self.last_end + size * 0.1 && !blank {
                self.out.push(' ');
            }
        }
        self.out.push_str(ch);
        if !ch.trim().is_empty() {
            let tenths = (size * 10.0).round().clamp(0.0, 1e6) as u32;
            match self.sizes.iter_mut().find(|(s, _)| *s == tenths) {
                Some((_, n)) => *n += 1,
                None => self.sizes.push((tenths, 1)),
            }
        }
        self.started = true;
        self.last_y = y;
        self.last_end = x + width * size;
        Ok(())
    }

    fn begin_word(&mut self) -> Result<(), pdf_extract::OutputError> {
        Ok(())
    }

    fn end_word(&mut self) -> Result<(), pdf_extract::OutputError> {
        Ok(())
    }

    fn end_line(&mut self) -> Result<(), pdf_extract::OutputError> {
        Ok(())
    }
}

/// The bookmarks (outline) in force on each of `pages`: the path of the
/// last entry at each level that starts on or before the page, so that a
/// page's passages are headed "3 Basic Shell Features > 3.2 Shell
/// Commands > Page 15". Empty without an outline (or with a broken one).
fn outline_paths(
    doc: &lopdf::Document,
    pages: &[u32],
) -> std::collections::HashMap<u32, Vec<String>> {
    const MAX_DEPTH: usize = 6;
    const MAX_TITLE: usize = 200;
    let mut out = std::collections::HashMap::new();
    let toc = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| doc.get_toc())) {
        Ok(Ok(toc)) => toc,
        _ => return out,
    };
    // By page, then in the outline's order.
    let mut entries: Vec<(usize, usize, usize, String)> = toc
        .toc
        .into_iter()
        .enumerate()
        .filter_map(|(i, e)| {
            let title: String = e
                .title
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .chars()
                .filter(|c| !c.is_control())
                .take(MAX_TITLE)
                .collect();
            (!title.is_empty()).then_some((e.page, i, e.level, title))
        })
        .collect();
    entries.sort();
    let mut sorted: Vec<u32> = pages.to_vec();
    sorted.sort_unstable();
    let mut stack: Vec<(usize, String)> = Vec::new();
    let mut next = entries.into_iter().peekable();
    for page in sorted {
        while let Some((_, _, level, title)) = next.next_if(|e| e.0 <= page as usize) {
            while stack.last().is_some_and(|(l, _)| *l >= level) {
                stack.pop();
            }
            if stack.len() < MAX_DEPTH {
                stack.push((level, title));
            }
        }
        if !stack.is_empty() {
            out.insert(page, stack.iter().map(|(_, t)| t.clone()).collect());
        }
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

/// A page with fewer letters and digits than this in its text layer is
/// "without text": a scan, perhaps with a page number or a stamp.
const NEAR_EMPTY: usize = 16;

fn near_empty(text: &str) -> bool {
    text.chars()
        .filter(|c| c.is_alphanumeric())
        .take(NEAR_EMPTY)
        .count()
        < NEAR_EMPTY
}

/// A dictionary entry, following one reference.
pub(crate) fn resolve<'a>(
    doc: &'a lopdf::Document,
    obj: &'a lopdf::Object,
) -> Option<&'a lopdf::Object> {
    match obj {
        lopdf::Object::Reference(id) => doc.get_object(*id).ok(),
        o => Some(o),
    }
}

/// The most glyph widths a CID font's `W` array is spelled out to, over
/// all its range entries (a CID is at most 65,535): a hostile file's many
/// wide ranges cannot make it large.
const MAX_WIDTH_RUN: i64 = 65_536;

/// Rewrite every CID font's glyph widths (`W`) into the one form
/// pdf-extract reads: `c [w1 w2 …]`. It misreads the other form the PDF
/// specification allows, `c_first c_last w` (one width for a range of
/// CIDs, what monospaced fonts use: Chromium writes `[0 97 602]`), as an
/// empty range, so every glyph of such a font had width 0 and the text
/// came out with a space between every two letters ("v e n v"). Entries
/// given by reference are resolved too. Returns the fonts rewritten.
fn spell_out_cid_widths(doc: &mut lopdf::Document) -> usize {
    use lopdf::Object;
    let fonts: Vec<lopdf::ObjectId> = doc
        .objects
        .iter()
        .filter_map(|(&id, o)| {
            let d = o.as_dict().ok()?;
            let cid = matches!(
                d.get(b"Subtype").and_then(Object::as_name),
                Ok(b"CIDFontType0") | Ok(b"CIDFontType2")
            );
            (cid && d.has(b"W")).then_some(id)
        })
        .collect();
    let mut rewritten = 0;
    for id in fonts {
        let Some(w) = doc
            .get_dictionary(id)
            .ok()
            .and_then(|d| d.get(b"W").ok())
            .and_then(|w| resolve(doc, w))
            .and_then(|w| w.as_array().ok())
        else {
            continue;
        };
        let (entries, _) = cid_width_entries(doc, w);
        let mut out = Vec::with_capacity(w.len());
        let mut consumed = 0;
        let mut changed = false;
        let mut spelled = 0i64;
        for e in entries {
            match e {
                CidWidths::List { first, widths } => {
                    out.push(Object::Integer(first));
                    out.push(Object::Array(widths));
                    consumed += 2;
                }
                CidWidths::Range { first, last, width } => {
                    let run = last
                        .saturating_sub(first)
                        .saturating_add(1)
                        .clamp(0, MAX_WIDTH_RUN - spelled);
                    spelled += run;
                    out.push(Object::Integer(first));
                    out.push(Object::Array(vec![
                        Object::Real(width as f32);
                        run as usize
                    ]));
                    changed = true;
                    consumed += 3;
                }
            }
        }
        if changed || consumed != w.len() {
            if let Ok(d) = doc.get_dictionary_mut(id) {
                d.set("W", Object::Array(out));
                rewritten += 1;
            }
        }
    }
    rewritten
}

/// One entry of a CID font's `W` array (PDF 32000, 9.7.4.3).
pub(crate) enum CidWidths {
    /// `c [w1 w2 …]`: the widths of the CIDs from `first` on, each
    /// resolved (a reference followed).
    List {
        first: i64,
        widths: Vec<lopdf::Object>,
    },
    /// `c_first c_last w`: one width for every CID of the range.
    Range { first: i64, last: i64, width: f64 },
}

/// The entries of a `W` array in order, with references followed, and
/// whether it stopped at a malformed entry (a lone trailing number is not
/// one: it is left out). The one reader of `W`, for rewriting it here and
/// for merging glyph runs (`pdf_runs`).
pub(crate) fn cid_width_entries(
    doc: &lopdf::Document,
    w: &[lopdf::Object],
) -> (Vec<CidWidths>, bool) {
    use lopdf::Object;
    let entries: Vec<Object> = w
        .iter()
        .map(|o| resolve(doc, o).cloned().unwrap_or(Object::Null))
        .collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 1 < entries.len() {
        let Ok(first) = entries[i].as_i64() else {
            return (out, true);
        };
        match &entries[i + 1] {
            Object::Array(widths) => {
                let widths = widths
                    .iter()
                    .map(|o| resolve(doc, o).cloned().unwrap_or(Object::Null))
                    .collect();
                out.push(CidWidths::List { first, widths });
                i += 2;
            }
            last => {
                let (Ok(last), Some(width)) = (last.as_i64(), entries.get(i + 2).and_then(number))
                else {
                    return (out, true);
                };
                out.push(CidWidths::Range { first, last, width });
                i += 3;
            }
        }
    }
    (out, false)
}

/// A PDF number (real or integer) as f64.
pub(crate) fn number(o: &lopdf::Object) -> Option<f64> {
    o.as_float()
        .ok()
        .map(f64::from)
        .or_else(|| o.as_i64().ok().map(|i| i as f64))
}

/// Whether a page shows an image: an XObject in its resources (its own or
/// inherited), or an inline image in its content.
fn shows_image(doc: &lopdf::Document, page: lopdf::ObjectId) -> bool {
    let Ok((own, inherited)) = doc.get_page_resources(page) else {
        return false;
    };
    let dicts = own.into_iter().chain(
        inherited
            .iter()
            .filter_map(|id| doc.get_dictionary(*id).ok()),
    );
    for res in dicts {
        let xobjects = res
            .get(b"XObject")
            .ok()
            .and_then(|o| resolve(doc, o))
            .and_then(|o| o.as_dict().ok());
        if xobjects.is_some_and(|x| !x.is_empty()) {
            return true;
        }
    }
    doc.get_page_content(page).is_ok_and(|c| {
        c.windows(4)
            .any(|w| w == b"\nBI " || w == b" BI\n" || w == b"\nBI\n")
    })
}

/// A page's size in inches, from its MediaBox (its own or inherited) and
/// UserUnit; `None` when it has none that reads.
fn page_inches(doc: &lopdf::Document, page: lopdf::ObjectId) -> Option<(f64, f64)> {
    let mut node = doc.get_dictionary(page).ok()?;
    for _ in 0..64 {
        if let Some(lopdf::Object::Array(b)) =
            node.get(b"MediaBox").ok().and_then(|o| resolve(doc, o))
        {
            let n: Vec<f64> = b
                .iter()
                .filter_map(|o| resolve(doc, o))
                .filter_map(number)
                .collect();
            if n.len() != 4 {
                return None;
            }
            let unit = node
                .get(b"UserUnit")
                .ok()
                .and_then(number)
                .filter(|u| u.is_finite() && *u > 0.0)
                .unwrap_or(1.0);
            let w = (n[2] - n[0]).abs() * unit / 72.0;
            let h = (n[3] - n[1]).abs() * unit / 72.0;
            return (w.is_finite() && h.is_finite()).then_some((w, h));
        }
        let parent = node.get(b"Parent").ok()?.as_reference().ok()?;
        node = doc.get_dictionary(parent).ok()?;
    }
    None
}

/// The resolution a page is rendered at for OCR: the configured one, or
/// less when that would make more pixels than the OCR cap (0: too large
/// to render at all).
fn ocr_dpi(ocr: &crate::OcrLimits, inches: Option<(f64, f64)>) -> u32 {
    let Some((w, h)) = inches else {
        return ocr.dpi;
    };
    let area = (w * h).max(1e-9);
    // A little under the cap: pdftoppm rounds sizes up.
    let fits = ((ocr.max_pixels as f64 * 0.98) / area).sqrt().floor();
    if fits >= f64::from(ocr.dpi) {
        ocr.dpi
    } else {
        fits.max(0.0) as u32
    }
}

/// "page 3", "pages 2, 5 and 9".
fn page_list(pages: &[u32]) -> String {
    let n: Vec<String> = pages.iter().map(u32::to_string).collect();
    match n.as_slice() {
        [one] => format!("page {one}"),
        [rest @ .., last] => format!("pages {} and {last}", rest.join(", ")),
        [] => String::new(),
    }
}

/// Load a PDF: the text of its first `limits.max_pdf_pages` pages, with
/// streams that would inflate past `limits.max_inflate_bytes` left out, and
/// the pages without a text layer read by OCR (at most
/// `limits.ocr.max_pages` of them, within three quarters of the file's
/// time).
pub(crate) fn load(
    path: &Path,
    bytes: &[u8],
    limits: &crate::LoadLimits,
) -> Result<Document, IngestError> {
    let budget = crate::ocr::Budget::start(limits);
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
    spell_out_cid_widths(&mut parsed);
    if emptied > 0 {
        warnings.push(format!(
            "{emptied} stream(s) inflating past {} MiB left out (ingest.max_inflate_mb)",
            limits.max_inflate_bytes >> 20
        ));
    }
    let page_ids = parsed.get_pages();
    let pages: Vec<u32> = page_ids.keys().copied().collect();
    let page_count = pages.len();
    let read = page_count.min(limits.max_pdf_pages as usize);
    if read < page_count {
        warnings.push(format!(
            "text read from the first {read} of {page_count} pages (ingest.max_pdf_pages)"
        ));
    }

    // Each page's text layer (None: extraction failed), read in batches of
    // pages that share their fonts (`pdf_batch`).
    let numbered: Vec<(u32, lopdf::ObjectId)> = page_ids
        .iter()
        .take(read)
        .map(|(n, id)| (*n, *id))
        .collect();
    let (texts, batching) = crate::pdf_batch::page_texts(&mut parsed, &numbered);
    tracing::debug!(
        path = %path.display(),
        pages = read,
        batches = batching.batches,
        batched_pages = batching.batched_pages,
        "PDF pages read"
    );
    let (mut texts, lines): (Vec<Option<String>>, Vec<Option<Lines>>) = texts
        .into_iter()
        .map(|t| match t {
            Some(PageRead { text, lines }) => (Some(tidy_page(&text)), Some(lines)),
            None => (None, None),
        })
        .unzip();

    // Scans: pages with (nearly) no text that show an image.
    let scanned: Vec<usize> = (0..read)
        .filter(|&i| texts[i].as_deref().is_none_or(near_empty))
        .filter(|&i| {
            page_ids
                .get(&pages[i])
                .is_some_and(|&id| shows_image(&parsed, id))
        })
        .collect();
    let mut unavailable = None;
    if !scanned.is_empty() {
        let ocr = &limits.ocr;
        let take = scanned.len().min(ocr.max_pages as usize);
        if take < scanned.len() {
            warnings.push(format!(
                "OCR read the first {take} of {} pages without a text layer (ingest.ocr_max_pages)",
                scanned.len()
            ));
        }
        let mut jobs = Vec::new();
        let mut too_large = Vec::new();
        for &i in &scanned[..take] {
            let number = pages[i];
            let inches = page_ids
                .get(&number)
                .and_then(|&id| page_inches(&parsed, id));
            match ocr_dpi(ocr, inches) {
                d if d < 1 => too_large.push(number),
                d => jobs.push((i, number, d)),
            }
        }
        if !too_large.is_empty() {
            warnings.push(format!(
                "{} too large to render for OCR under ingest.ocr_max_megapixels ({})",
                page_list(&too_large),
                ocr.max_pixels / 1_000_000
            ));
        }
        let order: Vec<(u32, u32)> = jobs.iter().map(|&(_, n, d)| (n, d)).collect();
        let results = crate::ocr::pdf_pages(ocr, bytes, &order, &budget);
        let mut ocr_failed = Vec::new();
        let mut done = 0usize;
        for (&(i, number, _), result) in jobs.iter().zip(results) {
            match result {
                Ok(out) => {
                    done += 1;
                    let page = crate::ocr::paragraphs(&out).join("\n\n");
                    if !page.is_empty() {
                        texts[i] = Some(page);
                    }
                }
                Err(crate::ocr::OcrError::Unavailable(reason)) => unavailable = Some(reason),
                Err(crate::ocr::OcrError::Timeout) => {
                    warnings.push(format!(
                        "OCR read {done} of {} pages without a text layer before the file's time ran out (ingest.load_timeout_secs: {} s)",
                        jobs.len(),
                        limits.timeout_secs
                    ));
                }
                Err(crate::ocr::OcrError::Failed(reason)) => {
                    ocr_failed.push(number);
                    tracing::debug!(path = %path.display(), page = number, %reason, "OCR failed");
                    if ocr_failed.len() == 1 {
                        warnings.push(format!("OCR failed: {reason}"));
                    }
                }
            }
        }
        if ocr_failed.len() > 1 {
            warnings.push(format!("OCR failed on {}", page_list(&ocr_failed)));
        }
        if let Some(reason) = &unavailable {
            let not_read: Vec<u32> = scanned.iter().map(|&i| pages[i]).collect();
            warnings.push(format!(
                "{} without a text layer not read by OCR: {reason}",
                page_list(&not_read)
            ));
        }
    }

    // What the page layout adds that is not the document's text: running
    // headers and footers, page numbers, words split at line ends,
    // ligatures, decomposed accents.
    crate::pdf_clean::strip_running_lines(&mut texts);
    for page in texts.iter_mut().flatten() {
        if let std::borrow::Cow::Owned(plain) = crate::pdf_clean::normalise(page) {
            *page = plain;
        }
    }
    let vocabulary = crate::pdf_clean::Vocabulary::of(texts.iter().flatten().map(String::as_str));
    for page in texts.iter_mut().flatten() {
        *page = crate::pdf_clean::join_hyphenated(page, &vocabulary);
    }

    // Headings: the bookmarks when there are any, else the lines set
    // larger than the body text (each page split where one starts).
    let outline = outline_paths(&parsed, &pages[..read]);
    let by_size = if outline.is_empty() {
        let shown: Vec<Option<&[Line]>> = lines.iter().map(Option::as_deref).collect();
        crate::pdf_headings::detect(&shown)
    } else {
        vec![Vec::new(); read]
    };
    let mut trail: Vec<(usize, String)> = Vec::new();
    let mut text = String::new();
    let mut sections = Vec::new();
    let mut failed = 0usize;
    for ((&number, page), found) in pages[..read].iter().zip(&texts).zip(&by_size) {
        let Some(page) = page else {
            failed += 1;
            continue;
        };
        if page.is_empty() {
            continue;
        }
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        let start = text.len();
        text.push_str(page);
        let located = crate::pdf_headings::locate(page, found);
        let mut cuts: Vec<usize> = located.iter().map(|&(at, _)| at).collect();
        cuts.insert(0, 0);
        cuts.push(page.len());
        let mut heads = located.into_iter();
        for piece in cuts.windows(2) {
            if piece[0] > 0 || heads.as_slice().first().is_some_and(|&(at, _)| at == 0) {
                if let Some((_, h)) = heads.next() {
                    trail.retain(|&(level, _)| level < h.level);
                    trail.push((h.level, h.text.clone()));
                }
            }
            if page[piece[0]..piece[1]].trim().is_empty() {
                continue;
            }
            let mut headings = match outline.get(&number) {
                Some(steps) => steps.clone(),
                None => trail.iter().map(|(_, t)| t.clone()).collect(),
            };
            headings.push(format!("Page {number}"));
            sections.push(Section {
                start: start + piece[0],
                end: start + piece[1],
                headings,
            });
        }
    }
    if failed == read && read > 0 {
        return Err(corrupt("text extraction failed on every page".into()));
    }
    if text.is_empty() {
        return Err(match unavailable {
            Some(reason) => IngestError::OcrUnavailable {
                path: path.to_path_buf(),
                reason: format!("PDF has no text layer and was not read by OCR: {reason}"),
            },
            None => IngestError::NoTextLayer {
                path: path.to_path_buf(),
            },
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
    fn scanned_pages_render_under_the_pixel_cap() {
        let ocr = crate::LoadLimits::default().ocr;
        assert_eq!((ocr.dpi, ocr.max_pixels), (300, 40_000_000));
        // Letter at 300 dpi: 8.4 megapixels.
        assert_eq!(ocr_dpi(&ocr, Some((8.5, 11.0))), 300);
        assert_eq!(ocr_dpi(&ocr, None), 300);
        // A poster: as many dots per inch as fit in 40 megapixels.
        let dpi = ocr_dpi(&ocr, Some((85.0, 110.0)));
        assert_eq!(dpi, 64);
        assert!(85.0 * 110.0 * f64::from(dpi * dpi) <= 40e6);
        // A page a mile wide renders at nothing.
        assert_eq!(ocr_dpi(&ocr, Some((63_360.0, 63_360.0))), 0);
        assert!(near_empty(" 12 \n") && !near_empty("Sixteen letters here"));
        assert_eq!(page_list(&[2]), "page 2");
        assert_eq!(page_list(&[2, 5, 9]), "pages 2, 5 and 9");
    }

    /// Glyphs shown at (x, baseline y) in a 10-point font, each `width`
    /// ems wide, on a letter-size page read alone.
    fn shown(glyphs: &[(&str, f64, f64, f64)]) -> PageRead {
        let spaced: Vec<_> = glyphs
            .iter()
            .map(|&(c, x, y, w)| (c, x, y, w, 0.0))
            .collect();
        shown_spaced(&spaced)
    }

    /// [`shown`], each glyph with its character and word spacing.
    fn shown_spaced(glyphs: &[(&str, f64, f64, f64, f64)]) -> PageRead {
        use pdf_extract::OutputDev;
        let mut out = PageText::new();
        let media = pdf_extract::MediaBox {
            llx: 0.0,
            lly: 0.0,
            urx: 612.0,
            ury: 792.0,
        };
        out.begin_page(1, &media, None).unwrap();
        for &(ch, x, y, width, spacing) in glyphs {
            let trm = pdf_extract::Transform::create_translation(x, y);
            out.output_character(&trm, width, spacing, 10.0, ch)
                .unwrap();
        }
        out.into_page()
    }

    #[test]
    fn accents_set_over_letters_become_accented_letters() {
        // TeX: "na" then a spacing diaeresis, then an "i" set back under
        // it; "Fran", a cedilla, then the "c" set back over it.
        let page = shown(&[
            ("n", 100.0, 700.0, 0.5),
            ("a", 105.0, 700.0, 0.5),
            ("\u{A8}", 110.5, 700.0, 0.5),
            ("i", 110.0, 700.0, 0.3),
            ("v", 113.0, 700.0, 0.5),
            ("e", 118.0, 700.0, 0.5),
            ("F", 100.0, 680.0, 0.6),
            ("r", 106.0, 680.0, 0.4),
            ("a", 110.0, 680.0, 0.5),
            ("n", 115.0, 680.0, 0.5),
            ("\u{B8}", 121.0, 680.0, 0.4),
            ("c", 120.0, 680.0, 0.45),
            ("o", 124.5, 680.0, 0.5),
            ("i", 129.5, 680.0, 0.3),
            ("s", 132.5, 680.0, 0.4),
            // A caret that stands beside its letter is a caret ("^C").
            ("\u{2C6}", 100.0, 660.0, 0.5),
            ("C", 105.0, 660.0, 0.7),
            // A letter, then an acute set back over it.
            ("e", 100.0, 640.0, 0.5),
            ("\u{B4}", 101.0, 640.0, 0.3),
        ]);
        assert_eq!(page.text, "naïve\n\nFrançois\n\nˆC\n\né");
        assert_eq!(page.lines[0], ("naïve".to_string(), 10.0));
    }

    #[test]
    fn a_space_the_word_spacing_takes_back_is_not_a_space() {
        // groff through ps2pdf: "neg", a space of 2.5 points with a word
        // spacing of -2.4, "ative"; then "so", a space widened by +0.2.
        let page = shown_spaced(&[
            ("n", 100.0, 700.0, 0.5, 0.0),
            ("e", 105.0, 700.0, 0.45, 0.0),
            ("g", 109.5, 700.0, 0.5, 0.0),
            (" ", 114.5, 700.0, 0.25, -2.4),
            ("a", 114.6, 700.0, 0.45, 0.0),
            ("t", 119.1, 700.0, 0.28, 0.0),
            ("s", 100.0, 688.0, 0.4, 0.0),
            ("o", 104.0, 688.0, 0.5, 0.0),
            (" ", 109.0, 688.0, 0.25, 0.2),
            ("i", 111.7, 688.0, 0.28, 0.0),
        ]);
        assert_eq!(page.text, "negat\nso i");
    }

    #[test]
    fn cid_widths_are_spelled_out_per_glyph() {
        use lopdf::{dictionary, Object};
        let mut doc = lopdf::Document::with_version("1.5");
        let listed = doc.add_object(Object::Array(vec![Object::Integer(700)]));
        let w = vec![
            Object::Integer(0),
            Object::Array(vec![Object::Integer(500), Object::Real(612.5)]),
            Object::Integer(3),
            Object::Integer(5),
            Object::Integer(250),
            Object::Integer(9),
            Object::Reference(listed),
        ];
        let font = doc.add_object(dictionary! {
            "Type" => "Font",
            "Subtype" => "CIDFontType2",
            "W" => w,
        });
        let simple = doc.add_object(dictionary! {
            "Type" => "Font",
            "Subtype" => "TrueType",
            "W" => vec![Object::Integer(1), Object::Integer(2), Object::Integer(3)],
        });
        assert_eq!(spell_out_cid_widths(&mut doc), 1);
        let got = doc.get_dictionary(font).unwrap().get(b"W").unwrap().clone();
        assert_eq!(
            got,
            Object::Array(vec![
                Object::Integer(0),
                Object::Array(vec![Object::Integer(500), Object::Real(612.5)]),
                Object::Integer(3),
                Object::Array(vec![Object::Real(250.0); 3]),
                Object::Integer(9),
                Object::Array(vec![Object::Integer(700)]),
            ])
        );
        // Only CID fonts are touched; a second pass changes nothing.
        assert_eq!(
            doc.get_dictionary(simple).unwrap().get(b"W").unwrap(),
            &Object::Array(vec![
                Object::Integer(1),
                Object::Integer(2),
                Object::Integer(3)
            ])
        );
        assert_eq!(spell_out_cid_widths(&mut doc), 0);

        // Many wide ranges, and ones whose ends overflow: 65,536 widths in
        // all, at most.
        let mut w = Vec::new();
        for r in 0..20i64 {
            w.extend([
                Object::Integer(r * 70_000),
                Object::Integer(r * 70_000 + 69_999),
                Object::Integer(500),
            ]);
        }
        w.extend([
            Object::Integer(i64::MIN),
            Object::Integer(i64::MAX),
            Object::Integer(1),
        ]);
        let hostile = doc.add_object(dictionary! {
            "Type" => "Font",
            "Subtype" => "CIDFontType0",
            "W" => w,
        });
        assert_eq!(spell_out_cid_widths(&mut doc), 1);
        let spelled: usize = doc
            .get_dictionary(hostile)
            .unwrap()
            .get(b"W")
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|o| o.as_array().ok())
            .map(Vec::len)
            .sum();
        assert_eq!(spelled, 65_536);
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
