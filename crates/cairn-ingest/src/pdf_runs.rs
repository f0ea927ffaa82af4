//! Glyphs a producer places one at a time, merged into runs before
//! pdf-extract reads them. Chromium (and so every browser's "Save as
//! PDF") writes each glyph as its own `dx 0 Td <gid> Tj`, where `dx` is the
//! glyph before's advance: 81,727 `Tj` on 36 pages of the datetime docs,
//! and lopdf's content parser, which makes an object of every operand, spent
//! half the loader's time on them. A glyph whose `Td` moves the pen by no
//! more than the glyph before's advance (within [`TOLERANCE`] of an em)
//! joins that glyph's string, so `<0047> Tj 16.05 0 Td <0044> Tj` becomes
//! `<00470044> Tj`; the next operator that positions from the line's start
//! gets back the displacement the merged `Td`s held, so everything after a
//! run is where it was.
//!
//! Only strings of Type 0 fonts with the `Identity-H` encoding are merged
//! (two bytes a glyph, the glyph's width from the font's `W`), and only in
//! streams that set no character or word spacing, scaling or rise; anything
//! else is left as it is.

use crate::pdf::{number, resolve, CidWidths};
use crate::pdf_batch::{is_delimiter, is_white, literal_end};
use lopdf::{Dictionary, Document, Object, ObjectId};
use std::collections::HashMap;

/// How far a `Td` may differ from the glyph before's advance, in ems, and
/// still continue the run (a gap a tenth of an em wide is a space to the
/// page reader: far above this).
const TOLERANCE: f64 = 0.02;

/// The glyph widths (thousandths of an em) of a font whose strings can be
/// merged.
#[derive(Debug, Clone)]
pub(crate) struct Widths {
    widths: HashMap<u32, f64>,
    default: f64,
}

impl Widths {
    fn of(&self, code: u32) -> f64 {
        self.widths.get(&code).copied().unwrap_or(self.default)
    }
}

/// Widths of the fonts of one page's resources by resource name, for the
/// fonts whose strings can be merged; built once per font object.
pub(crate) fn fonts(
    doc: &Document,
    resources: &Dictionary,
    cache: &mut HashMap<ObjectId, Option<std::rc::Rc<Widths>>>,
) -> HashMap<Vec<u8>, std::rc::Rc<Widths>> {
    let mut out = HashMap::new();
    let Some(Object::Dictionary(fonts)) = resources.get(b"Font").ok().and_then(|f| resolve(doc, f))
    else {
        return out;
    };
    for (name, font) in fonts.iter() {
        let widths = match font {
            Object::Reference(id) => cache
                .entry(*id)
                .or_insert_with(|| identity_widths(doc, font).map(std::rc::Rc::new))
                .clone(),
            direct => identity_widths(doc, direct).map(std::rc::Rc::new),
        };
        if let Some(w) = widths {
            out.insert(name.clone(), w);
        }
    }
    out
}

/// A Type 0 font with the `Identity-H` encoding: its descendant's widths.
fn identity_widths(doc: &Document, font: &Object) -> Option<Widths> {
    let font = resolve(doc, font)?.as_dict().ok()?;
    if font.get(b"Subtype").ok()?.as_name().ok()? != b"Type0"
        || font.get(b"Encoding").ok()?.as_name().ok()? != b"Identity-H"
    {
        return None;
    }
    let descendants = resolve(doc, font.get(b"DescendantFonts").ok()?)?
        .as_array()
        .ok()?;
    let cid = resolve(doc, descendants.first()?)?.as_dict().ok()?;
    let default = cid
        .get(b"DW")
        .ok()
        .and_then(|o| resolve(doc, o))
        .and_then(number)
        .unwrap_or(1000.0);
    let mut widths = HashMap::new();
    if let Some(w) = cid.get(b"W").ok().and_then(|w| resolve(doc, w)) {
        let (entries, malformed) = crate::pdf::cid_width_entries(doc, w.as_array().ok()?);
        if malformed {
            return None;
        }
        for e in entries {
            match e {
                CidWidths::List {
                    first,
                    widths: list,
                } => {
                    let first = u32::try_from(first).ok()?;
                    for (k, o) in list.iter().enumerate() {
                        widths.insert(first.checked_add(k as u32)?, number(o)?);
                    }
                }
                CidWidths::Range { first, last, width } => {
                    let (first, last) = (u32::try_from(first).ok()?, u32::try_from(last).ok()?);
                    for c in first..=last.min(first.saturating_add(65_535)) {
                        widths.insert(c, width);
                    }
                }
            }
            // A hostile file's many wide ranges: not a font to merge.
            if widths.len() > 65_536 {
                return None;
            }
        }
    }
    Some(Widths { widths, default })
}

/// One token of a content stream, as a byte range.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Token {
    Number(f64),
    Name(usize, usize),
    /// A hex string: the range inside the angle brackets.
    Hex(usize, usize),
    /// A literal string, array, dictionary or anything else not looked at.
    Other,
    Operator(usize, usize),
}

/// The tokens of `s` with each one's byte range; `None` on what this
/// reader does not follow (unbalanced strings, inline images).
fn tokens(s: &[u8]) -> Option<Vec<(Token, usize, usize)>> {
    let mut out = Vec::new();
    let (mut i, n) = (0, s.len());
    // Nesting of arrays and dictionaries: their contents are one `Other`.
    let mut depth = 0usize;
    let mut open = 0usize;
    while i < n {
        let c = s[i];
        let start = i;
        let token = match c {
            _ if is_white(c) => {
                i += 1;
                continue;
            }
            b'%' => {
                while i < n && s[i] != b'\n' && s[i] != b'\r' {
                    i += 1;
                }
                continue;
            }
            b'(' => {
                i = literal_end(s, i)?;
                Token::Other
            }
            // An array or a dictionary opens, or closes.
            b'[' | b'<' if c == b'[' || s.get(i + 1) == Some(&b'<') => {
                i += if c == b'[' { 1 } else { 2 };
                if depth == 0 {
                    open = start;
                }
                depth += 1;
                continue;
            }
            b']' | b'>' if c == b']' || s.get(i + 1) == Some(&b'>') => {
                i += if c == b']' { 1 } else { 2 };
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    out.push((Token::Other, open, i));
                }
                continue;
            }
            b'<' => {
                let end = start + 1 + s[start + 1..].iter().position(|&b| b == b'>')?;
                i = end + 1;
                Token::Hex(start + 1, end)
            }
            b'/' => {
                i += 1;
                while i < n && !is_white(s[i]) && !is_delimiter(s[i]) {
                    i += 1;
                }
                Token::Name(start + 1, i)
            }
            b'>' | b')' | b'{' | b'}' => {
                i += 1;
                Token::Other
            }
            _ => {
                while i < n && !is_white(s[i]) && !is_delimiter(s[i]) {
                    i += 1;
                }
                let word = &s[start..i];
                match std::str::from_utf8(word)
                    .ok()
                    .and_then(|w| w.parse::<f64>().ok())
                {
                    Some(v) if !word[0].is_ascii_alphabetic() => Token::Number(v),
                    _ => {
                        if matches!(word, b"BI" | b"ID" | b"EI") {
                            return None;
                        }
                        Token::Operator(start, i)
                    }
                }
            }
        };
        if depth == 0 {
            out.push((token, start, i));
        }
    }
    (depth == 0).then_some(out)
}

/// The glyph codes of a hex string of two-byte codes (`None` when it is not
/// one).
fn codes(hex: &[u8]) -> Option<Vec<u32>> {
    let digits: Vec<u8> = hex.iter().copied().filter(|b| !is_white(*b)).collect();
    if !digits.len().is_multiple_of(4) || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    digits
        .chunks(4)
        .map(|d| u32::from_str_radix(std::str::from_utf8(d).ok()?, 16).ok())
        .collect()
}

/// Operators that only draw or mark: paths and their painting and
/// clipping, colours, line styles, marked content. None of them moves text
/// or changes a font (`cm`, `q`/`Q`, `gs` and `Do` do, and stay).
fn draws_only(op: &[u8]) -> bool {
    matches!(
        op,
        b"m" | b"l"
            | b"c"
            | b"v"
            | b"y"
            | b"h"
            | b"re"
            | b"S"
            | b"s"
            | b"f"
            | b"F"
            | b"f*"
            | b"B"
            | b"B*"
            | b"b"
            | b"b*"
            | b"n"
            | b"W"
            | b"W*"
            | b"g"
            | b"G"
            | b"rg"
            | b"RG"
            | b"k"
            | b"K"
            | b"cs"
            | b"CS"
            | b"sc"
            | b"SC"
            | b"scn"
            | b"SCN"
            | b"w"
            | b"J"
            | b"j"
            | b"M"
            | b"d"
            | b"ri"
            | b"i"
            | b"BMC"
            | b"BDC"
            | b"EMC"
            | b"MP"
            | b"DP"
    )
}

/// A merged string being built: its hex digits and the advance of its
/// glyphs in text space.
struct Run {
    hex: Vec<u8>,
    advance: f64,
}

/// `content` with glyph-by-glyph runs merged (see the module), or `None`
/// when nothing was merged or the stream is one this does not follow.
pub(crate) fn merge(
    content: &[u8],
    fonts: &HashMap<Vec<u8>, std::rc::Rc<Widths>>,
) -> Option<Vec<u8>> {
    if fonts.is_empty() {
        return None;
    }
    let toks = tokens(content)?;
    // Spacing, scaling and rise change advances: leave such streams alone.
    for &(t, a, b) in &toks {
        if let Token::Operator(..) = t {
            if matches!(&content[a..b], b"Tc" | b"Tw" | b"Tz" | b"Ts") {
                return None;
            }
        }
    }
    let mut out = Vec::with_capacity(content.len());
    let mut copied = 0; // content[..copied] is in `out` or replaced
    let mut merged_any = false;
    let mut font: Option<(std::rc::Rc<Widths>, f64)> = None;
    // Displacement that merged `Td`s held, owed to the next operator that
    // positions from the line's start.
    let mut owed = 0.0f64;
    let mut run: Option<(Run, usize)> = None; // and where its first `Tj` started
    let mut operands_start = 0; // index into toks of the current operands
    let flush =
        |out: &mut Vec<u8>, run: &mut Option<(Run, usize)>, copied: &mut usize, end: usize| {
            if let Some((r, _)) = run.take() {
                out.push(b'<');
                out.extend_from_slice(&r.hex);
                out.extend_from_slice(b"> Tj\n");
                *copied = end;
            }
        };
    let mut k = 0;
    while k < toks.len() {
        let (t, a, b) = toks[k];
        let Token::Operator(..) = t else {
            k += 1;
            continue;
        };
        let op = &content[a..b];
        let operands = &toks[operands_start..k];
        let first = operands.first().map_or(a, |o| o.1);
        match op {
            b"Tj" => {
                let glyphs = match (operands, &font) {
                    ([(Token::Hex(h0, h1), ..)], Some((w, size))) => {
                        codes(&content[*h0..*h1]).map(|c| (c, w.clone(), *size, (*h0, *h1)))
                    }
                    _ => None,
                };
                match glyphs {
                    Some((codes, w, size, (h0, h1))) => {
                        let advance: f64 =
                            codes.iter().map(|&c| w.of(c)).sum::<f64>() / 1000.0 * size;
                        let digits = content[h0..h1].iter().copied().filter(|b| !is_white(*b));
                        match &mut run {
                            Some((r, _)) => {
                                r.hex.extend(digits);
                                r.advance += advance;
                            }
                            None => {
                                out.extend_from_slice(&content[copied..first]);
                                run = Some((
                                    Run {
                                        hex: digits.collect(),
                                        advance,
                                    },
                                    first,
                                ));
                            }
                        }
                        copied = b;
                    }
                    None => {
                        let at = copied;
                        flush(&mut out, &mut run, &mut copied, at);
                    }
                }
            }
            b"Td" => {
                let joins = match (operands, &run, &font) {
                    (
                        [(Token::Number(dx), ..), (Token::Number(dy), ..)],
                        Some((r, _)),
                        Some((_, size)),
                    ) => *dy == 0.0 && (dx - r.advance).abs() <= TOLERANCE * size.abs(),
                    _ => false,
                };
                // The next token must be a string this run can take.
                let next_is_glyph = matches!(toks.get(k + 1), Some((Token::Hex(..), ..)))
                    && matches!(toks.get(k + 2), Some((Token::Operator(x, y), ..)) if &content[*x..*y] == b"Tj");
                if joins && next_is_glyph {
                    if let ([(Token::Number(dx), ..), ..], Some((r, _))) = (operands, &mut run) {
                        owed += dx;
                        r.advance = 0.0;
                    }
                    copied = b;
                    merged_any = true;
                } else {
                    flush(&mut out, &mut run, &mut copied, first);
                    if owed != 0.0 {
                        if let [(Token::Number(dx), ..), (Token::Number(dy), ..)] = operands {
                            out.extend_from_slice(&content[copied..first]);
                            out.extend_from_slice(format!("{} {} Td", dx + owed, dy).as_bytes());
                            copied = b;
                            owed = 0.0;
                        }
                    }
                }
            }
            _ if draws_only(op) => {
                // Nothing pdf-extract reads for text: left out, operands
                // and all.
                flush(&mut out, &mut run, &mut copied, first);
                out.extend_from_slice(&content[copied..first]);
                copied = b;
                merged_any = true;
            }
            _ => {
                flush(&mut out, &mut run, &mut copied, first);
                match op {
                    b"Tf" => {
                        font = match operands {
                            [(Token::Name(n0, n1), ..), (Token::Number(size), ..)] => {
                                fonts.get(&content[*n0..*n1]).map(|w| (w.clone(), *size))
                            }
                            _ => None,
                        };
                    }
                    b"BT" | b"ET" | b"Tm" => owed = 0.0,
                    b"TD" | b"T*" | b"'" | b"\"" if owed != 0.0 => {
                        // Put the line's start back where the last merged
                        // glyph was, then let the operator run as written.
                        out.extend_from_slice(&content[copied..first]);
                        out.extend_from_slice(format!("{owed} 0 Td\n").as_bytes());
                        copied = first;
                        owed = 0.0;
                    }
                    _ => {}
                }
            }
        }
        operands_start = k + 1;
        k += 1;
    }
    flush(&mut out, &mut run, &mut copied, content.len());
    if !merged_any {
        return None;
    }
    out.extend_from_slice(&content[copied..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/F1`: glyph 0x41 600 thousandths wide, everything else 500.
    fn f1() -> HashMap<Vec<u8>, std::rc::Rc<Widths>> {
        let widths = Widths {
            widths: HashMap::from([(0x41, 600.0)]),
            default: 500.0,
        };
        HashMap::from([(b"F1".to_vec(), std::rc::Rc::new(widths))])
    }

    fn merged(content: &str) -> Option<String> {
        merge(content.as_bytes(), &f1()).map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn glyphs_placed_one_by_one_become_one_string() {
        // At 10 points: 0x41 advances 6, the others 5; the last Td is a
        // real gap (8 after a 5 advance), so the run ends there, and that
        // Td gets back the 11.001 the merged ones held.
        let got = merged(
            "BT /F1 10 Tf 1 0 0 -1 0 43 Tm <0041> Tj 6 0 Td <0042> Tj 5.001 0 Td <0043> Tj 8 0 Td <0044> Tj ET",
        )
        .unwrap();
        assert_eq!(
            got,
            "BT /F1 10 Tf 1 0 0 -1 0 43 Tm <004100420043> Tj\n19.001 0 Td <0044> Tj\nET"
        );
        // A line move after a run is put back where the last glyph was.
        let got = merged("BT /F1 10 Tf 12 TL <0041> Tj 6 0 Td <0042> Tj T* <0043> Tj ET").unwrap();
        assert_eq!(
            got,
            "BT /F1 10 Tf 12 TL <00410042> Tj\n6 0 Td\nT* <0043> Tj\nET"
        );
    }

    #[test]
    fn drawing_goes_and_what_text_needs_stays() {
        let got = merged(
            "q 1 0 0 1 5 5 cm /NonStruct <</MCID 0 >>BDC 0 0 1 RG 0 97 742 1 re f EMC\nBT /F1 10 Tf <0041> Tj 6 0 Td <0042> Tj ET Q",
        )
        .unwrap();
        assert_eq!(
            got,
            "q 1 0 0 1 5 5 cm     \nBT /F1 10 Tf <00410042> Tj\nET Q"
        );
    }

    #[test]
    fn what_it_cannot_follow_is_left_as_it_is() {
        // Character spacing changes advances.
        assert_eq!(
            merged("BT 1 Tc /F1 10 Tf <0041> Tj 6 0 Td <0042> Tj ET"),
            None
        );
        // A font it has no widths for, a literal string, an odd hex string.
        assert_eq!(merged("BT /F2 10 Tf <0041> Tj 6 0 Td <0042> Tj ET"), None);
        assert_eq!(merged("BT /F1 10 Tf (A) Tj 6 0 Td (B) Tj ET"), None);
        assert_eq!(merged("BT /F1 10 Tf <041> Tj 6 0 Td <042> Tj ET"), None);
        // A vertical move is never merged; inline images stop the reader.
        assert_eq!(merged("BT /F1 10 Tf <0041> Tj 6 -12 Td <0042> Tj ET"), None);
        assert_eq!(
            merged("BI /W 1 ID x EI BT /F1 10 Tf <0041> Tj 6 0 Td <0042> Tj ET"),
            None
        );
        assert_eq!(merge(b"BT <0041> Tj ET", &HashMap::new()), None);
    }
}
