//! Token-aware chunking.
//!
//! Each section of a document is split with `text-splitter`, sized by the
//! embedding model's own tokenizer, so that the text later embedded — the
//! heading path, a blank line, then the chunk (see
//! [`cairn_core::embedding_text`]) — fits the model's window including its
//! special tokens. Markdown is split along its structure, code along its
//! syntax tree (Rust, Python, JavaScript, Go), everything else along
//! paragraphs, lines, sentences and words.

use crate::code::definition_heading;
use crate::{IngestError, Result};
use cairn_core::{ChunkDraft, CodeLang, Document, Format};
use text_splitter::{ChunkConfig, ChunkSizer, CodeSplitter, MarkdownSplitter, TextSplitter};
use tokenizers::Tokenizer;

/// Splits documents into chunks that fit an embedding model's token window.
#[derive(Clone)]
pub struct Chunker {
    tokenizer: Tokenizer,
    max_tokens: usize,
    overlap_tokens: usize,
    /// Tokens the model adds around every input (`[CLS]`, `[SEP]` for BERT).
    special_tokens: usize,
}

impl std::fmt::Debug for Chunker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunker")
            .field("max_tokens", &self.max_tokens)
            .field("overlap_tokens", &self.overlap_tokens)
            .field("special_tokens", &self.special_tokens)
            .finish_non_exhaustive()
    }
}

/// Sizes text in tokens of the model's tokenizer, without special tokens.
#[derive(Clone, Copy)]
struct TokenSizer<'a>(&'a Tokenizer);

impl ChunkSizer for TokenSizer<'_> {
    fn size(&self, chunk: &str) -> usize {
        count(self.0, chunk)
    }
}

/// Sizes slices of one body by its tokens, tokenised once: the splitter asks
/// for the size of many candidate slices of the same text, and counting the
/// tokens whose byte spans overlap a slice (two binary searches) replaces
/// re-encoding each candidate. A slice cut inside a word may tokenise
/// slightly differently on its own, so [`Chunker::split`] checks every
/// finished piece with the exact [`TokenSizer`] and re-splits the rare piece
/// that does not fit. Strings that are not slices of the body are encoded.
struct IndexedSizer<'a> {
    tokenizer: &'a Tokenizer,
    body: &'a str,
    /// Byte spans of the body's tokens, in order.
    spans: Vec<(usize, usize)>,
}

impl<'a> IndexedSizer<'a> {
    fn new(tokenizer: &'a Tokenizer, body: &'a str) -> Option<IndexedSizer<'a>> {
        // `encode` (not `encode_fast`, which does not track offsets) gives
        // byte offsets into `body`.
        let enc = tokenizer.encode(body, false).ok()?;
        let spans: Vec<(usize, usize)> = enc
            .get_offsets()
            .iter()
            .copied()
            .filter(|(a, b)| b > a)
            .collect();
        // Offsets must be increasing byte spans inside the body for the
        // binary searches to be right; anything else falls back to encoding.
        let ordered = spans
            .windows(2)
            .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1)
            && spans.last().is_none_or(|&(_, e)| e <= body.len());
        (ordered && spans.len() == enc.len()).then_some(IndexedSizer {
            tokenizer,
            body,
            spans,
        })
    }
}

impl ChunkSizer for IndexedSizer<'_> {
    fn size(&self, chunk: &str) -> usize {
        let base = self.body.as_ptr() as usize;
        let p = chunk.as_ptr() as usize;
        if p < base || p + chunk.len() > base + self.body.len() {
            return count(self.tokenizer, chunk);
        }
        let (start, end) = (p - base, p - base + chunk.len());
        let first = self.spans.partition_point(|&(_, e)| e <= start);
        let last = self.spans.partition_point(|&(s, _)| s < end);
        last.saturating_sub(first)
    }
}

fn count(tokenizer: &Tokenizer, text: &str) -> usize {
    match tokenizer.encode_fast(text, false) {
        Ok(enc) => enc.len(),
        // Cannot happen with vocabularies that have an unknown token; if it
        // does, a character count over-estimates and stays safe.
        Err(_) => text.chars().count(),
    }
}

/// Whether `body[start..start + len]` neither starts nor ends inside a word
/// (letters or digits on both sides of a cut).
fn at_word_boundaries(body: &str, start: usize, len: usize) -> bool {
    let word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    let end = start + len;
    let (before, first) = (
        body[..start].chars().next_back(),
        body[start..].chars().next(),
    );
    let (last, after) = (body[..end].chars().next_back(), body[end..].chars().next());
    !(word(before) && word(first) || word(last) && word(after))
}

/// Which splitter a section gets.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Markdown,
    Code(CodeLang),
}

/// Converts increasing byte offsets into character offsets without
/// rescanning the text from the start each time.
struct CharCursor<'a> {
    text: &'a str,
    byte: usize,
    chars: u64,
}

impl<'a> CharCursor<'a> {
    fn new(text: &'a str) -> Self {
        CharCursor {
            text,
            byte: 0,
            chars: 0,
        }
    }

    fn at(&mut self, byte: usize) -> u64 {
        if byte >= self.byte {
            let n = self
                .text
                .get(self.byte..byte)
                .map_or(0, |s| s.chars().count());
            self.chars += n as u64;
        } else {
            let n = self
                .text
                .get(byte..self.byte)
                .map_or(0, |s| s.chars().count());
            self.chars -= n as u64;
        }
        self.byte = byte;
        self.chars
    }
}

impl Chunker {
    /// A chunker for `tokenizer` (the embedding model's own).
    ///
    /// `max_tokens` is the largest chunk in tokens, heading prefix and special
    /// tokens included; `overlap_tokens` (less than `max_tokens`) is how much
    /// consecutive chunks of a section may share. Truncation and padding are
    /// switched off on the chunker's copy of the tokenizer.
    pub fn new(
        mut tokenizer: Tokenizer,
        max_tokens: usize,
        overlap_tokens: usize,
    ) -> Result<Chunker> {
        let bad = |reason: String| IngestError::ChunkerConfig { reason };
        tokenizer
            .with_truncation(None)
            .map_err(|e| bad(format!("cannot disable truncation: {e}")))?;
        tokenizer.with_padding(None);
        let special_tokens = tokenizer
            .encode_fast("", true)
            .map(|e| e.len())
            .unwrap_or(2);
        if max_tokens < special_tokens + 2 {
            return Err(bad(format!(
                "max_tokens ({max_tokens}) must exceed the tokenizer's {special_tokens} special tokens by at least 2"
            )));
        }
        if overlap_tokens >= max_tokens {
            return Err(bad(format!(
                "overlap_tokens ({overlap_tokens}) must be less than max_tokens ({max_tokens})"
            )));
        }
        Ok(Chunker {
            tokenizer,
            max_tokens,
            overlap_tokens,
            special_tokens,
        })
    }

    /// The largest chunk, in tokens, as given to [`Chunker::new`].
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// The overlap, in tokens, as given to [`Chunker::new`].
    pub fn overlap_tokens(&self) -> usize {
        self.overlap_tokens
    }

    /// Tokens the model would see for `text`, special tokens included.
    pub fn count_tokens(&self, text: &str) -> usize {
        count(&self.tokenizer, text) + self.special_tokens
    }

    /// Tokens of the heading prefix (`heading` + blank line).
    fn heading_tokens(&self, heading: &str) -> usize {
        if heading.is_empty() {
            0
        } else {
            count(&self.tokenizer, &format!("{heading}\n\n"))
        }
    }

    /// The most tokens a heading prefix may take: the chunk keeps at least
    /// half the window.
    fn heading_cap(&self) -> usize {
        self.max_tokens
            .saturating_sub(self.special_tokens)
            .saturating_sub(self.max_tokens / 2)
    }

    /// `heading`, shortened (with an ellipsis) if its prefix would take more
    /// than [`Self::heading_cap`] tokens.
    fn fit_heading(&self, heading: String) -> String {
        let cap = self.heading_cap();
        if self.heading_tokens(&heading) <= cap {
            return heading;
        }
        let chars: Vec<char> = heading.chars().collect();
        let candidate = |k: usize| format!("{}…", chars[..k].iter().collect::<String>().trim_end());
        // Largest prefix that fits; the token count grows with the prefix.
        let (mut lo, mut hi) = (0usize, chars.len());
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if self.heading_tokens(&candidate(mid)) <= cap {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        if lo == 0 {
            String::new()
        } else {
            candidate(lo)
        }
    }

    /// Token budget of the chunk text when its heading prefix takes
    /// `heading_tokens`.
    fn budget(&self, heading_tokens: usize) -> usize {
        self.max_tokens
            .saturating_sub(self.special_tokens + heading_tokens)
            .max(1)
    }

    /// Split `body` into `(byte offset, piece)` pairs of at most `budget` tokens.
    fn split<'t>(&self, kind: Kind, body: &'t str, budget: usize) -> Vec<(usize, &'t str)> {
        let Some(fast) = IndexedSizer::new(&self.tokenizer, body) else {
            return self.split_with(kind, body, budget, TokenSizer(&self.tokenizer));
        };
        let mut out = Vec::new();
        // With a pre-tokenizer that splits words on whitespace and
        // punctuation (BERT's), a piece that starts and ends at word
        // boundaries tokenises exactly as its share of the whole body, so
        // only pieces cut inside a word need the exact check.
        let word_local = matches!(
            self.tokenizer.get_pre_tokenizer(),
            Some(tokenizers::PreTokenizerWrapper::BertPreTokenizer(_))
        );
        for (offset, piece) in self.split_with(kind, body, budget, &fast) {
            let clean = word_local && at_word_boundaries(body, offset, piece.len());
            if clean || count(&self.tokenizer, piece) <= budget {
                out.push((offset, piece));
            } else {
                // Cut inside a word where the slice tokenises to more than
                // its share of the whole: split it again, exactly.
                for (o, p) in self.split_with(kind, piece, budget, TokenSizer(&self.tokenizer)) {
                    out.push((offset + o, p));
                }
            }
        }
        out
    }

    fn split_with<'t, S: ChunkSizer + Copy>(
        &self,
        kind: Kind,
        body: &'t str,
        budget: usize,
        sizer: S,
    ) -> Vec<(usize, &'t str)> {
        let overlap = self.overlap_tokens.min(budget.saturating_sub(1) / 2);
        let config = || {
            let base = ChunkConfig::new(budget).with_sizer(sizer);
            match base.with_overlap(overlap) {
                Ok(c) => c,
                Err(_) => ChunkConfig::new(budget).with_sizer(sizer),
            }
        };
        match kind {
            Kind::Markdown => MarkdownSplitter::new(config())
                .chunk_indices(body)
                .collect(),
            Kind::Code(lang) => {
                let splitter = match lang {
                    CodeLang::Rust => CodeSplitter::new(tree_sitter_rust::LANGUAGE, config()),
                    CodeLang::Python => CodeSplitter::new(tree_sitter_python::LANGUAGE, config()),
                    CodeLang::JavaScript => {
                        CodeSplitter::new(tree_sitter_javascript::LANGUAGE, config())
                    }
                    CodeLang::Go => CodeSplitter::new(tree_sitter_go::LANGUAGE, config()),
                    _ => return TextSplitter::new(config()).chunk_indices(body).collect(),
                };
                match splitter {
                    Ok(s) => s.chunk_indices(body).collect(),
                    Err(e) => {
                        tracing::warn!("tree-sitter grammar unusable ({e}); splitting as text");
                        TextSplitter::new(config()).chunk_indices(body).collect()
                    }
                }
            }
            Kind::Text => TextSplitter::new(config()).chunk_indices(body).collect(),
        }
    }

    /// Cut `doc` into chunks, in document order, numbered from 0.
    ///
    /// Every chunk's text is exactly `doc.text` between its character offsets
    /// `start..end`; whitespace-only pieces are dropped. Sections whose byte
    /// span is not valid in `doc.text` are skipped.
    pub fn chunk(&self, doc: &Document) -> Vec<ChunkDraft> {
        let text = doc.text.as_str();
        let mut cursor = CharCursor::new(text);
        let mut out = Vec::new();
        for section in &doc.sections {
            let Some(body) = text.get(section.start..section.end) else {
                tracing::warn!(
                    start = section.start,
                    end = section.end,
                    "section span is not valid in the document text; skipped"
                );
                continue;
            };
            if body.trim().is_empty() {
                continue;
            }
            match doc.format {
                Format::Code(lang) => {
                    self.chunk_code(lang, section.start, body, &mut cursor, &mut out)
                }
                format => {
                    let heading = self.fit_heading(section.headings.join(" > "));
                    let budget = self.budget(self.heading_tokens(&heading));
                    let kind = if format == Format::Markdown {
                        Kind::Markdown
                    } else {
                        Kind::Text
                    };
                    for (offset, piece) in self.split(kind, body, budget) {
                        push(
                            &mut out,
                            &mut cursor,
                            section.start + offset,
                            piece,
                            &heading,
                        );
                    }
                }
            }
        }
        out
    }

    /// Code: split along the syntax tree; each chunk is headed by the nearest
    /// definition line at or before its start.
    fn chunk_code(
        &self,
        lang: CodeLang,
        base: usize,
        body: &str,
        cursor: &mut CharCursor<'_>,
        out: &mut Vec<ChunkDraft>,
    ) {
        // Definition lines: (byte offset in body, heading).
        let mut defs: Vec<(usize, String)> = Vec::new();
        let mut offset = 0;
        for line in body.split_inclusive('\n') {
            if let Some(h) = definition_heading(line) {
                defs.push((offset, self.fit_heading(h)));
            }
            offset += line.len();
        }
        // Reserve room for the longest heading any chunk may get.
        let reserve = defs
            .iter()
            .map(|(_, h)| self.heading_tokens(h))
            .max()
            .unwrap_or(0);
        let budget = self.budget(reserve);
        let kind = if crate::has_grammar(lang) {
            Kind::Code(lang)
        } else {
            Kind::Text
        };
        for (offset, piece) in self.split(kind, body, budget) {
            let i = defs.partition_point(|(o, _)| *o <= offset);
            let heading = if i == 0 { "" } else { defs[i - 1].1.as_str() };
            push(out, cursor, base + offset, piece, heading);
        }
    }
}

fn push(
    out: &mut Vec<ChunkDraft>,
    cursor: &mut CharCursor<'_>,
    byte_start: usize,
    piece: &str,
    heading: &str,
) {
    if piece.trim().is_empty() {
        return;
    }
    let start = cursor.at(byte_start);
    let end = start + piece.chars().count() as u64;
    out.push(ChunkDraft {
        ord: out.len() as u32,
        text: piece.to_string(),
        start,
        end,
        heading: heading.to_string(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_core::Section;
    use std::str::FromStr;

    /// A real, tiny tokenizer: every word or punctuation run is one token,
    /// and it adds no special tokens.
    fn word_tokenizer() -> Tokenizer {
        Tokenizer::from_str(
            r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[],
                "normalizer":null,"pre_tokenizer":{"type":"Whitespace"},"post_processor":null,
                "decoder":null,"model":{"type":"WordLevel","vocab":{"[UNK]":0},"unk_token":"[UNK]"}}"#,
        )
        .unwrap()
    }

    fn char_slice(s: &str, a: u64, b: u64) -> String {
        s.chars().skip(a as usize).take((b - a) as usize).collect()
    }

    #[test]
    fn cursor_moves_both_ways() {
        let s = "añb😀c";
        let mut c = CharCursor::new(s);
        assert_eq!(c.at(s.find('b').unwrap()), 2);
        assert_eq!(c.at(s.find('c').unwrap()), 4);
        assert_eq!(c.at(1), 1);
        assert_eq!(c.at(s.len()), 5);
    }

    #[test]
    fn word_budget_and_exact_spans() {
        let unit = "Größe eins zwei drei vier fünf sechs sieben acht neun zehn. ";
        let text = unit.repeat(20);
        let mid = unit.len() * 10;
        let doc = Document {
            format: Format::Text,
            text: text.clone(),
            sections: vec![
                Section {
                    start: 0,
                    end: mid,
                    headings: vec!["A".into()],
                },
                Section {
                    start: mid,
                    end: text.len(),
                    headings: vec![],
                },
            ],
            warnings: vec![],
        };
        let tok = word_tokenizer();
        let chunker = Chunker::new(tok.clone(), 10, 0).unwrap();
        assert_eq!(chunker.special_tokens, 0);
        let chunks = chunker.chunk(&doc);
        assert!(chunks.len() > 10);
        for c in &chunks {
            assert_eq!(char_slice(&text, c.start, c.end), c.text);
            let n = count(&tok, &c.embedding_text());
            assert!(n <= 10, "{n}: {:?}", c.embedding_text());
        }
        assert!(chunks.iter().any(|c| c.heading == "A"));
        assert!(chunks.iter().any(|c| c.heading.is_empty()));
    }

    #[test]
    fn invalid_sections_are_skipped_not_panicking() {
        let doc = Document {
            format: Format::Text,
            text: "héllo world".into(),
            sections: vec![
                Section {
                    start: 2,
                    end: 5,
                    headings: vec![],
                }, // inside 'é'
                Section {
                    start: 0,
                    end: 999,
                    headings: vec![],
                },
                Section {
                    start: 7,
                    end: 12,
                    headings: vec![],
                },
            ],
            warnings: vec![],
        };
        let chunks = Chunker::new(word_tokenizer(), 10, 0).unwrap().chunk(&doc);
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].text, "world");
        assert_eq!((chunks[0].start, chunks[0].end), (6, 11));
    }

    #[test]
    fn headings_are_shortened_to_leave_half_the_window() {
        let chunker = Chunker::new(word_tokenizer(), 20, 0).unwrap();
        let long = "one two three four five six seven eight nine ten eleven twelve".to_string();
        let fitted = chunker.fit_heading(long);
        assert!(fitted.ends_with('…'));
        assert!(chunker.heading_tokens(&fitted) <= 10, "{fitted}");
        assert_eq!(chunker.fit_heading("short one".into()), "short one");
    }

    #[test]
    fn rejects_overlap_not_below_max() {
        assert!(matches!(
            Chunker::new(word_tokenizer(), 10, 10),
            Err(IngestError::ChunkerConfig { .. })
        ));
        assert!(Chunker::new(word_tokenizer(), 10, 9).is_ok());
    }
}
